package buffer

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/wiv/out_wivaudit/record"
)

// A batch usually lives in the log. Sealing it appends one batch entry (its key, destination and runs) in the
// round's one write and one fdatasync, and nothing else: its records stay in their segments, which are kept
// until it is delivered or spilled. Its object is composed from the log for each attempt to upload it. Once it
// is delivered, a "sealed" entry of its range goes with the log's next append; until that is durable, a
// restart finds it again and the delivery ledger says it was delivered. A batch that cannot be delivered
// promptly is spilled: written to a batch file, as Seal writes one, so that it never pins the log.

// ErrDamaged means that part of a batch in the log fails its checksum or does not parse: spilling it keeps
// the damage aside (Options.KeepDamaged) and writes the rest to a batch file.
var ErrDamaged = errors.New("part of its records in the log are damaged")

// InLog reports whether a batch lives in the log. Its object's size and checksums are known once Compose
// made it; it has no LogRange (its runs are in memory, its batch entry holds the range).
func (b *Batch) InLog() bool { return b.inLog != nil }

// FromLegacyLog reports whether a closed batch is a log file of the layout before the write-ahead log: Seal
// writes its batch file, it cannot live in the log.
func (p *Pending) FromLegacyLog() bool { return p.legacy != "" }

// SealInLog seals closed batches (none of a legacy log) in the log only, with one append for them all and the
// "sealed" entries still to be appended. Each then knows its key (name gives it at its millisecond), its
// destination and when it was sealed, and BatchOf makes its *Batch when it is to be uploaded: until then a
// batch waiting in the log costs no more memory than its runs. When it fails, nothing is sealed: the caller
// puts them back.
func (s *Store) SealInLog(ps []*Pending, name Naming) error {
	now := s.opt.Now()
	entries := make([][]byte, len(ps))
	for i, p := range ps {
		dest, key := name(p)
		p.key, p.dest, p.sealedAt = key(p.Opened), dest, now.UnixMilli()
		first, last := p.runs[0].pos(), p.runs[len(p.runs)-1].pos()
		entries[i] = appendBatch(nil, p.Stream, p.Opened, first, last, p.Records, p.firstAt, p.LastRecord,
			p.sealedAt, dest, p.key)
	}
	s.markMu.Lock()
	done := s.done
	s.done = nil
	s.markMu.Unlock()
	if err := s.appendEntries(append(entries, done...)); err != nil {
		s.markMu.Lock()
		s.done = append(done, s.done...)
		s.markMu.Unlock()
		return fmt.Errorf("seal %d batches in the log: %w", len(ps), err)
	}
	s.opt.Crash(CrashAfterBatchEntry)
	return nil
}

// BatchOf makes the *Batch of a batch sealed in the log (SealInLog, or found by recovery), for its upload.
func (s *Store) BatchOf(p *Pending) *Batch {
	b := &Batch{fs: s.fs, inLog: p}
	b.Manifest = Manifest{Key: p.key, KeyMs: p.Opened, Org: p.Org, Kind: p.Kind, Opened: p.Opened,
		LastRecord: max(p.Opened, p.LastRecord), Records: p.Records, JSONBytes: p.JSONBytes(),
		SealedAt: time.UnixMilli(p.sealedAt).UTC(), Destination: p.dest}
	return b
}

// JSONBytes is what a closed batch's records weigh, separators excluded.
func (p *Pending) JSONBytes() int64 {
	var n int64
	for _, r := range p.runs {
		n += int64(r.json)
	}
	return n
}

// Key is the key of a batch sealed in the log, fixed when it was sealed.
func (p *Pending) Key() string { return p.key }

// SealedAt is when a batch was sealed in the log.
func (p *Pending) SealedAt() time.Time { return time.UnixMilli(p.sealedAt) }

// FirstSegment is the log segment of a closed batch's first run.
func (p *Pending) FirstSegment() uint64 { return p.runs[0].seg }

// InLogPending is the closed batch in the log that a batch holds (nil for a batch file).
func (b *Batch) InLogPending() *Pending { return b.inLog }

// Compose writes the object of a batch that lives in the log to w, and notes its size, checksums and first
// and last events in its manifest (in memory); its records and their bytes are known since its seal. A read error is not damage: composing again may
// work. ErrDamaged says that the batch must be spilled.
func (s *Store) Compose(b *Batch, w io.Writer, encode Encoder) error {
	var rep SealReport
	rr := s.readRuns(b.inLog, &rep)
	var first, last []byte
	d := newDigester(w)
	err := encode(d, endsOf(rr.fragments, &first, &last))
	records, jsonLen, rerr := rr.counts()
	switch {
	case rerr != nil:
		return fmt.Errorf("compose %s: %w", b.Key, rerr)
	case err != nil:
		return fmt.Errorf("compose %s: %w", b.Key, err)
	case len(rep.Damaged) > 0:
		return fmt.Errorf("compose %s: %d runs: %w", b.Key, len(rep.Damaged), ErrDamaged)
	}
	if records != b.Records || jsonLen != b.JSONBytes {
		// Every run read back intact, so this is not the log's damage: the batch is not what was sealed.
		return fmt.Errorf("compose %s: %d records of %d bytes where it sealed %d of %d: %w", b.Key, records, jsonLen, b.Records, b.JSONBytes, ErrDamaged)
	}
	sum := d.sums()
	b.ObjectBytes, b.ContentMD5, b.SHA256 = sum.size, sum.md5, sum.sha256
	// A record without a readable id or created_at leaves them out: the ledger and digests show it as null.
	b.FirstEvent, _ = record.RefOf(first)
	b.LastEvent, _ = record.RefOf(last)
	return nil
}

// Spill writes a batch that lives in the log to a batch file under its key, as Seal does, and lets the log go
// of its runs: from then on it is a batch file. name gives the key when its millisecond is taken in the
// batches folder. gone says that nothing in it was intact: the damage is kept aside, and the batch is gone.
func (s *Store) Spill(b *Batch, name Naming, encode Encoder) (gone bool, err error) {
	p := b.inLog
	p.keyMs, p.attempts, p.requeued = b.KeyMs, b.Attempts, b.Requeued
	_, keyAt := name(p)
	key := func(ms int64) string {
		if ms == b.KeyMs {
			return b.Key
		}
		return keyAt(ms)
	}
	var rep SealReport
	fb, err := s.sealRuns(p, key, b.Destination, encode, &rep)
	if err != nil {
		return false, fmt.Errorf("spill %s to a batch file: %w", b.Key, err)
	}
	if fb == nil {
		b.inLog = nil
		return true, nil
	}
	b.object, b.manifest, b.inLog = fb.object, fb.manifest, nil
	b.Key, b.KeyMs, b.SealedAt, b.FirstEvent, b.LastEvent = fb.Key, fb.KeyMs, fb.SealedAt, fb.FirstEvent, fb.LastEvent
	b.LogRange = fb.LogRange // its manifest is written again from b (attempts, a new key)
	b.ObjectBytes, b.ContentMD5, b.SHA256 = fb.ObjectBytes, fb.ContentMD5, fb.SHA256
	if b.Records != fb.Records || b.JSONBytes != fb.JSONBytes { // damage left out
		b.Records, b.JSONBytes = fb.Records, fb.JSONBytes
	}
	if err := s.addMarks([]unmarked{b.mark(p)}); err != nil {
		// Written, but the log does not say so yet: see Seal.
		return false, nil
	}
	s.releaseSegments()
	return false, nil
}

// removeInLog lets the log go of a delivered batch that lives there, and notes its "sealed" entry for the
// log's next append. The segments this frees are deleted at once: a restart finds no batch entry then, or
// one whose first runs are gone, which it knows to be done with.
func (s *Store) removeInLog(b *Batch) error {
	p := b.inLog
	s.mu.Lock()
	s.releaseLocked(p, true)
	s.mu.Unlock()
	b.inLog, b.objectGone = nil, true
	s.opt.Crash(CrashAfterDelivery)
	s.markMu.Lock()
	s.done = append(s.done, appendSealed(nil, p.Stream, b.KeyMs, p.runs[0].pos(), p.runs[len(p.runs)-1].pos()))
	s.markMu.Unlock()
	if err := s.releaseSegments(); err != nil {
		return fmt.Errorf("removed %s, but the log segments it freed are not deleted yet: %w", b.Key, err)
	}
	return nil
}

// spillSegments bounds the log that batches living in it keep: past this many segments from the oldest they
// keep to the one being written, those keeping the oldest are to be spilled. A backlog that is only waiting
// its turn (30,000 batches sealed at once, say) spans several segments: with 4, make bench at 10,000
// organisations spilled batches that were delivered a minute later, a file write and fsync each for nothing.
const spillSegments = 16

// Pinned returns, while batches that live in the log keep more than spillSegments segments of it, the oldest,
// whose batches are to be spilled (see Pending.FirstSegment); 0 otherwise.
func (s *Store) Pinned() uint64 {
	active := s.log.Active()
	s.mu.Lock()
	oldest := s.oldestRefLocked()
	s.mu.Unlock()
	if oldest > active || active-oldest <= spillSegments {
		return 0
	}
	return oldest
}
