package plugin

import (
	"context"
	"encoding/base64"
	"encoding/hex"
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
func (in *Instance) uploader(take, requests context.Context) {
	for {
		it, ok := in.queue.pop(take)
		if !ok {
			return
		}
		in.uploadOne(requests, it)
	}
}

// uploadOne makes an attempt at a batch and ends it in the queue. When the attempt panics, the batch goes
// back to its lane, due as after a failed attempt.
func (in *Instance) uploadOne(ctx context.Context, it *item) {
	again, ended := true, false
	in.attempting()
	defer func() {
		if !ended {
			o := decide(facts{step: panicked, now: in.now(), attempts: it.attempts, jitter: in.jitter()}, in.policy)
			it.attempts, it.due = o.attempts, o.at
		}
		in.queue.done(it, again)
	}()
	again = in.attempt(ctx, it)
	ended = true
}

// attempt takes one batch through the steps decide chooses, doing each: the store, S3 and the log. It
// reports whether the batch stays queued, due at it.due.
func (in *Instance) attempt(ctx context.Context, it *item) bool {
	b := it.batchOf(in.store)
	d, held := in.dests.resolve(b)
	var err error      // why the step failed
	var version string // of the object S3 stored
	var body *[]byte   // the object as read and checked, until it is sent
	var sums objectSums
	if it.sent != nil {
		d, version = it.sent.dest, it.sent.version // where S3 stored it, whatever the destinations say now
	}
	f := facts{now: in.now(), opened: time.UnixMilli(b.Opened), attempts: it.attempts, held: held,
		requeued: time.UnixMilli(b.Requeued), recording: it.sent != nil, inLog: b.InLog(),
		wrongKey: held == "" && destKey(d, b, b.KeyMs) != b.Key}
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
				return false
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
				return true // shutting down: the batch stays on disk
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
			if err := in.record(ledger.Delivered, d, b, version, f.now); err != nil {
				it.sent = &sent{dest: d, version: version}
				f = in.failedStep(f, recordFailed, b)
				continue
			}
			if err := in.store.Remove(b); err != nil {
				in.log.limitedf(LevelError, "remove", f.now, "uploaded %s but cannot remove it from the buffer: %v", b.Key, err)
			}
			in.delivered.Add(int64(b.Records))
			in.objects.Add(1)
			in.checkUsage()
			in.log.logf(LevelDebug, "uploaded s3://%s/%s (%d records, %d bytes)", d.Bucket, b.Key, b.Records, b.ObjectBytes)
			return false
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
			return true
		case reassume:
			if !in.send.Reassume(d, f.now) {
				f.mayReassume = false // another upload dropped the session meanwhile
				continue
			}
			in.reassumed.Add(1)
			it.due = f.now
			in.log.limitedf(LevelWarn, "credentials\x00"+d.RoleARN, f.now, "the role's credentials were refused for %s; assuming the role again: %s", b.Key, upload.Explain(err, d, in.cfg))
			return true
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
			return false
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
			return false
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
			return false
		case hold:
			it.due = o.at
			in.log.limitedf(LevelWarn, "hold\x00"+b.Org, f.now, "holding %s (%d records): %s; next look in %s", b.Key, b.Records, f.held, in.cfg.HoldRetryInterval)
			return true
		case refused:
			it.due = o.at
			if f.step == putFailed {
				in.log.limitedf(LevelError, "refused\x00"+d.OrgID+"\x00"+d.Bucket, f.now, "upload of %s (%d records) refused, attempt %d; held, next try in %s, quarantine in %s: %s",
					b.Key, b.Records, b.Attempts, in.cfg.HoldRetryInterval, in.cfg.QuarantineAfter-f.now.Sub(f.refusedSince()).Round(time.Second), upload.Explain(err, d, in.cfg))
			}
			return true
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
			return true
		}
	}
}

// sent is where S3 stored a batch whose ledger line is still to be recorded.
type sent struct {
	dest    conf.Destination
	version string
}

// record notes an object in the delivery ledger: delivered (S3 answered 200), or unconfirmed (S3 answered that
// the batch's key exists: an earlier attempt whose answer was lost may have stored it, or another writer did).
// An error means the line is not recorded: the batch stays until it is, or the object would be in no ledger
// line and no digest.
func (in *Instance) record(status string, d conf.Destination, b *buffer.Batch, version string, now time.Time) error {
	e := ledger.Entry{Status: status, Org: d.OrgID, Kind: b.Kind, Bucket: d.Bucket, Key: b.Key, Bytes: b.ObjectBytes,
		Records: b.Records, First: b.FirstEvent, Last: b.LastEvent, VersionID: version}
	sum, err := b.ObjectSHA256()
	if err == nil {
		e.SHA256, err = hexOfBase64(sum)
	}
	if err == nil {
		err = in.ledger.Record(e)
		if err != nil && in.store.MakeRoom(err) {
			in.log.limitedf(LevelWarn, "ballast", now, "Store_Dir's file system is full (%v): deleted its delivery reserve so that delivery goes on and frees space; it is made again once there is room", err)
			err = in.ledger.Record(e)
		}
	}
	switch {
	case errors.Is(err, ledger.ErrOverflow):
		in.log.limitedf(LevelWarn, "ledger-overflow", now, "the delivery ledger outgrew twice Ledger_Limit_Size: its oldest entries were deleted before a digest covered them")
	case err != nil:
		in.log.limitedf(LevelError, "ledger\x00"+rootCause(err), now, "cannot record %s in the delivery ledger; the batch stays in Store_Dir and its line is tried again: %v", b.Key, err)
		return err
	}
	return nil
}

// hexOfBase64 turns a base64 SHA-256 (as S3 takes it) into lower-case hex (as sha256sum prints it).
func hexOfBase64(sum string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(sum)
	if err != nil {
		return "", fmt.Errorf("SHA-256 %q: %w", sum, err)
	}
	return hex.EncodeToString(raw), nil
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
