package plugin

import (
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/ledger"
)

// removeDelivered removes the recovered batches that the delivery ledger lists as delivered, under their key
// and with their SHA-256 (S3 stored them, then their removal failed or a crash cut it short; for a batch sealed
// in the log, the SHA-256 of its object composed again), and returns the others, to upload. Sent again, a
// delivered batch would get 412 and land a second time under a new key. A batch S3 stored whose line is
// missing (a crash between S3's 200 and the ledger) is sent again: S3's 412 records its key as unconfirmed.
func (in *Instance) removeDelivered(files []*buffer.Batch, inLog []*buffer.Pending) ([]*buffer.Batch, []*buffer.Pending) {
	sums := map[string]string{} // key -> SHA-256 (hex); "" for a batch in the log, not composed yet
	var from time.Time
	since := func(t time.Time) {
		if len(sums) == 1 || t.Before(from) {
			from = t
		}
	}
	for _, p := range inLog {
		sums[p.Key()] = ""
		since(p.SealedAt())
	}
	for _, b := range files {
		sum, err := b.ObjectSHA256()
		if err == nil {
			sum, err = hexOfBase64(sum)
		}
		if err != nil {
			continue // the upload path meets it again
		}
		sums[b.Key] = sum
		since(b.SealedAt)
	}
	if len(sums) == 0 {
		return files, inLog
	}
	listed := map[string]bool{}
	composed := map[string]ledger.Entry{} // batches in the log whose key the ledger lists as delivered
	// A batch's line is recorded after it was sealed, so the ledger is read from the oldest seal: only a clock
	// set back in between hides a line, and the batch then takes the 412 path.
	for e, err := range in.ledger.Entries(ledger.Filter{From: from}) {
		if err != nil {
			in.log.limitedf(LevelWarn, "ledger-read", in.now(), "reading the delivery ledger for the batches it lists as delivered (those it does not are uploaded again): %v", err)
			continue
		}
		if sum, ok := sums[e.Key]; ok && sum == "" && e.Status == ledger.Delivered {
			composed[e.Key] = e
		}
		if listsDelivery(e, e.Key, sums[e.Key]) {
			listed[e.Key] = true
		}
	}
	removed := 0
	remove := func(b *buffer.Batch) {
		if err := in.store.Remove(b); err != nil {
			in.log.logf(LevelError, "%s is delivered (the delivery ledger lists it) but cannot be removed from Store_Dir; not uploading it again, the next start tries again: %v", b.Key, err)
			return
		}
		removed++
	}
	var restFiles []*buffer.Batch
	for _, b := range files {
		if listed[b.Key] {
			remove(b)
		} else {
			restFiles = append(restFiles, b)
		}
	}
	var restInLog []*buffer.Pending
	for _, p := range inLog {
		e, ok := composed[p.Key()]
		if b := in.store.BatchOf(p); ok && in.composesTo(b, e) {
			remove(b)
		} else {
			restInLog = append(restInLog, p)
		}
	}
	if removed > 0 {
		in.log.logf(LevelInfo, "removed %d batches the delivery ledger lists as delivered (their removal after the upload had not finished)", removed)
	}
	return restFiles, restInLog
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
