package plugin

import (
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/ledger"
)

// removeDelivered removes the recovered batches that the delivery ledger lists as delivered, under their key
// and with their SHA-256 (S3 stored them, then their removal failed or a crash cut it short; for a batch that
// lives in the log, the SHA-256 of its object composed again), and returns the
// others, to upload. Sent again, a delivered batch would get 412 and land a second time under a new key. A
// batch S3 stored whose line is missing (a crash between S3's 200 and the ledger) is sent again: S3's 412
// records its key as unconfirmed.
func (in *Instance) removeDelivered(batches []*buffer.Batch) []*buffer.Batch {
	sums := map[string]string{} // key -> SHA-256 (hex); "" for a batch in the log, not composed yet
	var from time.Time
	for _, b := range batches {
		if b.InLog() {
			sums[b.Key] = ""
			if len(sums) == 1 || b.SealedAt.Before(from) {
				from = b.SealedAt
			}
			continue
		}
		sum, err := b.ObjectSHA256()
		if err == nil {
			sum, err = hexOfBase64(sum)
		}
		if err != nil {
			continue // the upload path meets it again
		}
		sums[b.Key] = sum
		if len(sums) == 1 || b.SealedAt.Before(from) {
			from = b.SealedAt
		}
	}
	if len(sums) == 0 {
		return batches
	}
	listed := map[string]bool{}
	inLog := map[string]ledger.Entry{} // batches in the log whose key the ledger lists as delivered
	// A batch's line is recorded after it was sealed, so the ledger is read from the oldest seal: only a clock
	// set back in between hides a line, and the batch then takes the 412 path.
	for e, err := range in.ledger.Entries(ledger.Filter{From: from}) {
		if err != nil {
			in.log.limitedf(LevelWarn, "ledger-read", in.now(), "reading the delivery ledger for the batches it lists as delivered (those it does not are uploaded again): %v", err)
			continue
		}
		if sum, ok := sums[e.Key]; ok && sum == "" && e.Status == ledger.Delivered {
			inLog[e.Key] = e
		}
		if listsDelivery(e, e.Key, sums[e.Key]) {
			listed[e.Key] = true
		}
	}
	var rest []*buffer.Batch
	removed := 0
	for _, b := range batches {
		if e, ok := inLog[b.Key]; ok && b.InLog() {
			listed[b.Key] = in.composesTo(b, e)
		}
		if !listed[b.Key] {
			rest = append(rest, b)
			continue
		}
		if err := in.store.Remove(b); err != nil {
			in.log.logf(LevelError, "%s is delivered (the delivery ledger lists it) but cannot be removed from Store_Dir; not uploading it again, the next start tries again: %v", b.Key, err)
			continue
		}
		removed++
	}
	if removed > 0 {
		in.log.logf(LevelInfo, "removed %d batches the delivery ledger lists as delivered (their removal after the upload had not finished)", removed)
	}
	return rest
}

// listsDelivery reports whether a ledger entry says that the object of the given key and SHA-256 (hex) is in
// its bucket.
func listsDelivery(e ledger.Entry, key, sha256 string) bool {
	return e.Status == ledger.Delivered && e.Key == key && sha256 != "" && e.SHA256 == sha256
}

// composesTo reports whether a batch that lives in the log composes to the object a ledger entry lists under
// its key: the same SHA-256. Its delivery's "sealed" entry was lost with a crash.
func (in *Instance) composesTo(b *buffer.Batch, e ledger.Entry) bool {
	body, sums, err := in.composeObject(b)
	if err != nil {
		return false // the upload path meets it again
	}
	objectBuffers.Put(body)
	sum, err := hexOfBase64(sums.sha256)
	return err == nil && listsDelivery(e, b.Key, sum)
}
