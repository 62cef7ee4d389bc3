package plugin

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/upload"
)

// Retry backoff for failed uploads: full jitter, capped.
const (
	backoffBase = time.Second
	backoffCap  = 5 * time.Minute
)

// sender uploads sealed batches to their destinations: upload.Clients.
type sender interface {
	Put(ctx context.Context, d conf.Destination, b *buffer.Batch) error
	// MayReassume reports whether d's role session may be dropped at now; Reassume drops it, unless that is
	// no longer allowed.
	MayReassume(d conf.Destination, now time.Time) bool
	Reassume(d conf.Destination, now time.Time) bool
}

func (in *Instance) uploader(ctx context.Context) {
	defer in.uploadersWG.Done()
	for {
		it, ok := in.queue.pop(ctx)
		if !ok {
			return
		}
		in.queue.done(it, in.attempt(ctx, it))
	}
}

// attempt uploads one batch and reports whether it stays queued.
func (in *Instance) attempt(ctx context.Context, it *item) bool {
	b := it.batch
	d, hold := in.dests.resolve(b)
	if hold != "" {
		it.due = in.now().Add(in.cfg.HoldRetryInterval)
		in.log.limitedf(LevelWarn, "hold\x00"+b.Org, in.now(), "holding %s (%d records): %s; next look in %s", b.Key, b.Records, hold, in.cfg.HoldRetryInterval)
		return true
	}
	if want := objectKey(d.KeyPrefix, d.OrgID, b.Kind, b.KeyMs); want != b.Key {
		if err := in.store.Rekey(b, want, b.KeyMs); err != nil {
			in.log.limitedf(LevelError, "rekey\x00"+b.Org, in.now(), "cannot move %s to the key of its destination: %v", b.Key, err)
			it.attempts++
			it.due = in.now().Add(backoff(it.attempts))
			return true
		}
	}
	err := in.send.Put(ctx, d, b)
	if err == nil {
		if err := in.store.Remove(b); err != nil {
			in.log.limitedf(LevelError, "remove", in.now(), "uploaded %s but cannot remove it from the buffer: %v", b.Key, err)
		}
		in.delivered.Add(int64(b.Records))
		in.objects.Add(1)
		in.checkUsage()
		in.log.logf(LevelDebug, "uploaded s3://%s/%s (%d records, %d bytes)", d.Bucket, b.Key, b.Records, b.ObjectBytes)
		return false
	}
	if ctx.Err() != nil {
		return true // shutting down: the batch stays on disk
	}
	now := in.now()
	if err := in.store.SaveAttempt(b); err != nil {
		in.log.limitedf(LevelWarn, "manifest", now, "cannot record the attempt in the manifest of %s: %v", b.Key, err)
	}
	class := upload.Classify(err)
	in.failed[class].Add(1)
	switch class {
	case upload.KeyExists:
		old := b.Key
		ms := in.store.NextMs(b.Stream())
		if err := in.store.Rekey(b, objectKey(d.KeyPrefix, b.Org, b.Kind, ms), ms); err != nil {
			it.attempts++
			it.due = now.Add(backoff(it.attempts))
			in.log.limitedf(LevelError, "rekey\x00"+b.Org, now, "%s exists in S3 and the batch cannot take a new key: %v", old, err)
			return true
		}
		in.conflicts.Add(1)
		it.due = now
		in.log.limitedf(LevelWarn, "412\x00"+d.Bucket, now, "%s already exists in S3 (another writer, or an earlier attempt whose answer was lost); uploading the batch as %s instead", old, b.Key)
		return true
	case upload.Credentials:
		if in.send.Reassume(d, now) {
			in.reassumed.Add(1)
			it.due = now
			in.log.limitedf(LevelWarn, "credentials\x00"+d.RoleARN, now, "the role's credentials were refused for %s; assuming the role again: %s", b.Key, upload.Explain(err, d, in.cfg))
			return true
		}
	case upload.Misconfigured:
		age := now.Sub(time.UnixMilli(b.Opened))
		if age >= in.cfg.QuarantineAfter {
			return in.quarantine(b, age, upload.Explain(err, d, in.cfg))
		}
		it.due = now.Add(in.cfg.HoldRetryInterval)
		in.log.limitedf(LevelError, "refused\x00"+d.OrgID+"\x00"+d.Bucket, now, "upload of %s (%d records) refused, attempt %d; held, next try in %s, quarantine in %s: %s",
			b.Key, b.Records, b.Attempts, in.cfg.HoldRetryInterval, in.cfg.QuarantineAfter-age.Round(time.Second), upload.Explain(err, d, in.cfg))
		return true
	}
	it.attempts++
	it.due = now.Add(backoff(it.attempts))
	in.log.limitedf(LevelWarn, "retry\x00"+d.Bucket, now, "upload of %s (%d records) failed, attempt %d, next in %s; the batch stays buffered: %s",
		b.Key, b.Records, b.Attempts, it.due.Sub(now).Round(time.Millisecond), upload.Explain(err, d, in.cfg))
	return true
}

// quarantine moves a batch refused for longer than Quarantine_After out of the upload path. When the
// quarantine folder is full, the batch stays and is retried: nothing is deleted.
func (in *Instance) quarantine(b *buffer.Batch, age time.Duration, cause string) bool {
	if err := in.store.Quarantine(b); err != nil {
		in.log.limitedf(LevelError, "quarantine\x00"+b.Org, in.now(), "upload of %s refused for %s and it cannot be quarantined (%v); keeping it in the upload path: %s",
			b.Key, age.Round(time.Second), err, cause)
		return true
	}
	in.quarantined.Add(1)
	in.checkUsage()
	object, manifest := b.Files()
	in.log.limitedf(LevelError, "quarantined\x00"+b.Org, in.now(), "upload of %s (%d records) refused for %s: moved to quarantine (%s, %s); to replay it after fixing the cause, move both files into %s/batches and restart. Cause: %s",
		b.Key, b.Records, age.Round(time.Second), object, manifest, in.cfg.StoreDir, cause)
	return false
}

func backoff(attempts int) time.Duration {
	ceiling := backoffCap
	if attempts < 20 {
		ceiling = min(backoffCap, backoffBase<<attempts)
	}
	return backoffBase/2 + rand.N(ceiling)
}
