package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/upload"
)

// sender uploads sealed batches and digests to their destinations: upload.Clients.
type sender interface {
	// Put uploads body, b's object as read and checked, whose base64 SHA-256 is sum; it returns the version
	// S3 gave the object ("" unversioned).
	Put(ctx context.Context, d conf.Destination, b *buffer.Batch, body []byte, sum string) (string, error)
	// PutDigest uploads a signed digest to d, its signature in the user metadata under metaKey.
	PutDigest(ctx context.Context, d conf.Destination, key string, body []byte, metaKey, signature string) error
	// MayReassume reports whether d's role session may be dropped at now; Reassume drops it, unless that is
	// no longer allowed.
	MayReassume(d conf.Destination, now time.Time) bool
	Reassume(d conf.Destination, now time.Time) bool
}

// uploader takes due batches while take lasts and uploads them under requests, which can end sooner or later.
// The ledger lines of the objects S3 stored are written in groups (stored.go): when an attempt's end makes
// them due, and whenever no batch is due.
func (in *Instance) uploader(take, requests context.Context) {
	for {
		it, ok := in.queue.pop(take, in.recordStored)
		if !ok {
			in.recordStored()
			return
		}
		if in.uploadOne(requests, it) {
			in.recordStored()
		}
	}
}

// uploadOne makes an attempt at a batch and ends it in the queue, or leaves it with the lines to record when
// S3 stored it; it reports whether the lines pending are due to be recorded. When the attempt panics, the
// batch goes back to its lane, due as after a failed attempt.
func (in *Instance) uploadOne(ctx context.Context, it *item) (recordNow bool) {
	how, ended := requeued, false
	var s storedObject
	in.attempting()
	in.stored.begin()
	defer func() {
		if !ended {
			o := decide(facts{step: panicked, now: in.now(), attempts: it.attempts, jitter: in.jitter()}, in.policy)
			it.attempts, it.due = o.attempts, o.at
		}
		if how != storedIt {
			in.queue.done(it, how == requeued)
		}
		recordNow = in.stored.end(how == storedIt, s, in.now())
	}()
	how, s = in.attempt(ctx, it)
	ended = true
	return false
}

// ending is how an attempt ends.
type ending int

const (
	requeued  ending = iota // the batch stays queued, due at item.due
	leftQueue               // the batch left the queue
	storedIt                // S3 stored the batch: it leaves the queue once its ledger line is recorded
)

// attempt takes one batch through the steps decide chooses, doing each: the store, S3 and the log. It
// reports how the attempt ended, and what S3 stored when it did.
func (in *Instance) attempt(ctx context.Context, it *item) (ending, storedObject) {
	b := it.batchOf(in.store)
	d, held := in.dests.resolve(b)
	var err error      // why the step failed
	var version string // of the object S3 stored
	var body *[]byte   // the object as read and checked, until it is sent
	var sums objectSums
	if it.sent != nil {
		d, version = it.sent.dest, it.sent.version // where S3 stored it, whatever the destinations say now
	}
	f := factsOf(it, b, in.now())
	f.held, f.wrongKey = held, held == "" && destKey(d, b, b.KeyMs) != b.Key
	for {
		o := decide(f, in.policy)
		it.attempts = o.attempts
		if line := in.health.decided(b.Org, o.do, b.Records, f.now); line != "" {
			in.log.limitedf(LevelInfo, "recovered\x00"+conf.OrgKey(b.Org), f.now, "%s", line)
		}
		switch o.do {
		case check:
			if b.InLog() {
				if body, sums, err = in.composeObject(b); err != nil {
					f = in.failedStep(f, composeFailed(err), b)
					continue
				}
				f.step, f.altered = checked, ""
				continue
			}
			if body, sums, err = readObject(b); err != nil {
				f = in.failedStep(f, readFailed, b)
				continue
			}
			f.step, f.altered = checked, altered(b.Manifest, sums)
		case spill:
			objectBuffers.Put(body)
			body = nil
			gone, err := in.spill(b, f.now)
			if err != nil {
				f = in.failedStep(f, spillFailed, b)
				continue
			}
			if gone {
				return leftQueue, storedObject{}
			}
			f.inLog = false
		case send:
			start := in.now()
			version, err = in.send.Put(ctx, d, b, *body, sums.sha256)
			if err == nil {
				// Only after a 200 is the body known to be read whole: after an error the HTTP transport may
				// still be writing it, so that buffer is left to the collector.
				objectBuffers.Put(body)
			}
			body = nil
			if err != nil && ctx.Err() != nil {
				return requeued, storedObject{} // shutting down: the batch stays on disk
			}
			in.uploadSeconds.Observe(in.now().Sub(start).Seconds())
			if err == nil {
				f.step, f.now = uploaded, in.now()
				in.health.uploaded(b.Org, d, f.now, nil, 0)
				continue
			}
			f = in.putFailed(f, d, b, err)
			in.health.uploaded(b.Org, d, f.now, err, f.class)
		case moveKey:
			if err := in.store.Rekey(b, destKey(d, b, b.KeyMs), b.KeyMs); err != nil {
				in.log.limitedf(LevelError, "rekey\x00"+b.Org, f.now, "cannot move %s to the key of its destination: %v", b.Key, err)
				f = in.failedStep(f, rekeyFailed, b)
				continue
			}
			f.wrongKey = false
		case done, finish:
			in.crash(CrashAfterUpload)
			return storedIt, storedObject{it: it, b: b, d: d, version: version, at: f.now}
		case nextKey:
			if err := in.record(ledger.Unconfirmed, d, b, "", f.now); err != nil {
				f = in.failedStep(f, recordFailed, b)
				continue
			}
			old, ms := b.Key, in.store.NextMs(b.Stream())
			if err := in.store.Rekey(b, destKey(d, b, ms), ms); err != nil {
				in.log.limitedf(LevelError, "rekey\x00"+b.Org, f.now, "%s exists in S3 and the batch cannot take a new key: %v", old, err)
				f = in.failedStep(f, rekeyFailed, b)
				continue
			}
			in.conflicts.Add(1)
			it.due = f.now
			in.log.limitedf(LevelWarn, "412\x00"+d.Bucket, f.now, "%s already exists in S3 (another writer, or an earlier attempt whose answer was lost); uploading the batch as %s instead", old, b.Key)
			return requeued, storedObject{}
		case reassume:
			if !in.send.Reassume(d, f.now) {
				f.mayReassume = false // another upload dropped the session meanwhile
				continue
			}
			in.reassumed.Add(1)
			it.due = f.now
			in.log.limitedf(LevelWarn, "credentials\x00"+d.RoleARN, f.now, "the role's credentials were refused for %s; assuming the role again: %s", b.Key, upload.Explain(err, d, in.cfg))
			return requeued, storedObject{}
		case quarantine:
			age := f.now.Sub(f.refusedSince()).Round(time.Second)
			if qerr := in.store.Quarantine(b); qerr != nil {
				if errors.Is(qerr, buffer.ErrQuarantineFull) {
					qerr = fmt.Errorf("%w: raise Quarantine_Limit_Size or move quarantined batches away", qerr)
				}
				in.log.limitedf(LevelError, "quarantine\x00"+b.Org, f.now, "upload of %s refused for %s and it cannot be quarantined (%v); keeping it in the upload path, next try in %s: %s",
					b.Key, age, qerr, in.cfg.HoldRetryInterval, upload.Explain(err, d, in.cfg))
				f = in.failedStep(f, quarantineFailed, b)
				continue
			}
			in.quarantined.Add(1)
			in.checkUsage()
			object, manifest := b.Files()
			in.log.limitedf(LevelError, "quarantined\x00"+b.Org, f.now, "upload of %s (%d records) refused for %s: moved to quarantine (%s, %s); to replay it after fixing the cause, stop Fluent Bit, run wivaudit store requeue %s and start it again. Cause: %s",
				b.Key, b.Records, age, object, manifest, in.cfg.StoreDir, upload.Explain(err, d, in.cfg))
			return leftQueue, storedObject{}
		case setAside:
			objectBuffers.Put(body)
			body = nil
			if qerr := in.store.Quarantine(b); qerr != nil {
				in.log.limitedf(LevelError, "quarantine\x00"+b.Org, f.now, "batch %s was altered in Store_Dir since it was sealed (%s) and it cannot be quarantined (%v); not sent, next look in %s",
					b.Key, f.altered, qerr, in.cfg.HoldRetryInterval)
				f = in.failedStep(f, quarantineFailed, b)
				continue
			}
			in.corrupt.Add(1)
			in.quarantined.Add(1)
			in.checkUsage()
			object, manifest := b.Files()
			in.log.logf(LevelError, "batch %s (%d records of %s) was altered in Store_Dir since it was sealed: %s; not sent, moved to quarantine (%s, %s), its records undelivered; the stream goes on with its next batch",
				b.Key, b.Records, b.Stream(), f.altered, object, manifest)
			return leftQueue, storedObject{}
		case drop:
			object, _ := b.Files()
			left := ""
			if err := in.store.Remove(b); err != nil {
				left = fmt.Sprintf(" (clearing what is left of it failed too: %v)", err)
			}
			in.lost.Add(1)
			in.checkUsage()
			in.log.logf(LevelError, "batch %s (%d records of %s) cannot be delivered: its object %s is gone from Store_Dir, deleted while it waited for upload; dropped from the upload queue%s",
				b.Key, b.Records, b.Stream(), object, left)
			return leftQueue, storedObject{}
		case hold:
			it.due = o.at
			in.log.limitedf(LevelWarn, "hold\x00"+b.Org, f.now, "holding %s (%d records): %s; next look in %s", b.Key, b.Records, f.held, in.cfg.HoldRetryInterval)
			return requeued, storedObject{}
		case refused:
			it.due = o.at
			if f.step == putFailed {
				in.log.limitedf(LevelError, "refused\x00"+d.OrgID+"\x00"+d.Bucket, f.now, "upload of %s (%d records) refused, attempt %d; held, next try in %s, quarantine in %s: %s",
					b.Key, b.Records, b.Attempts, in.cfg.HoldRetryInterval, in.cfg.QuarantineAfter-f.now.Sub(f.refusedSince()).Round(time.Second), upload.Explain(err, d, in.cfg))
			}
			return requeued, storedObject{}
		case retry:
			it.due = o.at
			switch f.step {
			case putFailed:
				in.log.limitedf(LevelWarn, "retry\x00"+d.Bucket, f.now, "upload of %s (%d records) failed, attempt %d, next in %s; the batch stays buffered: %s",
					b.Key, b.Records, b.Attempts, o.at.Sub(f.now).Round(time.Millisecond), upload.Explain(err, d, in.cfg))
			case readFailed:
				in.log.limitedf(LevelError, "read\x00"+rootCause(err), f.now, "cannot read the object of %s (%d records) to upload it: %v; not sent, next try in %s",
					b.Key, b.Records, err, o.at.Sub(f.now).Round(time.Millisecond))
			}
			return requeued, storedObject{}
		}
	}
}

// factsOf is what an attempt at it, whose batch is b, knows at now before its first step.
func factsOf(it *item, b *buffer.Batch, now time.Time) facts {
	return facts{now: now, opened: time.UnixMilli(b.Opened), requeued: time.UnixMilli(b.Requeued), attempts: it.attempts,
		recording: it.sent != nil, inLog: b.InLog()}
}

// putFailed gathers the facts of a failed upload, records the attempt in the batch's manifest and counts it.
func (in *Instance) putFailed(f facts, d conf.Destination, b *buffer.Batch, err error) facts {
	f = in.failedStep(f, putFailed, b)
	if !f.gone {
		if err := in.store.SaveAttempt(b); err != nil {
			in.log.limitedf(LevelWarn, "manifest", f.now, "cannot record the attempt in the manifest of %s: %v", b.Key, err)
		}
	}
	f.class = upload.Classify(err)
	in.failed[f.class].Add(1)
	f.mayReassume = f.class == upload.Credentials && in.send.MayReassume(d, f.now)
	return f
}

// failedStep gathers what every failed step needs: the time, whether the batch's object is still there, and
// the jitter of a retry.
func (in *Instance) failedStep(f facts, s step, b *buffer.Batch) facts {
	f.step, f.now, f.gone, f.jitter = s, in.now(), in.store.ObjectGone(b), in.jitter()
	return f
}
