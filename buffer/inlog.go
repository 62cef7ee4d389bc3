package buffer

import (
	"errors"
	"fmt"
	"io"

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
// "sealed" entries still to be appended, and returns them. key gives each its key at its millisecond. When
// it fails, nothing is sealed: the caller puts them back.
func (s *Store) SealInLog(ps []*Pending, name Naming) ([]*Batch, error) {
	now := s.opt.Now()
	batches := make([]*Batch, len(ps))
	entries := make([][]byte, len(ps))
	for i, p := range ps {
		dest, key := name(p)
		first, last := p.runs[0].pos(), p.runs[len(p.runs)-1].pos()
		b := &Batch{fs: s.fs, inLog: p}
		b.Manifest = Manifest{Key: key(p.Opened), KeyMs: p.Opened, Org: p.Org, Kind: p.Kind, Opened: p.Opened,
			LastRecord: max(p.Opened, p.LastRecord), Records: p.Records, SealedAt: now.UTC(), Destination: dest}
		for _, r := range p.runs {
			b.JSONBytes += int64(r.json)
		}
		batches[i] = b
		entries[i] = appendBatch(nil, p.Stream, p.Opened, first, last, p.Records, p.firstAt, p.LastRecord,
			now.UnixMilli(), dest, b.Key)
	}
	s.markMu.Lock()
	done := s.done
	s.done = nil
	s.markMu.Unlock()
	entries = append(entries, done...)
	written, err := s.log.Append(entries, nil)
	if err != nil && s.MakeRoom(err) {
		s.use.add(written)
		written, err = s.log.Append(entries, nil)
	}
	s.use.add(written)
	if err != nil {
		s.markMu.Lock()
		s.done = append(done, s.done...)
		s.markMu.Unlock()
		return nil, fmt.Errorf("seal %d batches in the log: %w", len(ps), err)
	}
	s.opt.Crash(CrashAfterBatchEntry)
	return batches, nil
}

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
// keep to the one being written, those keeping the oldest are to be spilled.
const spillSegments = 4

// Pinning returns, while batches that live in the log keep more than spillSegments segments of it, a test of
// whether a batch keeps the oldest; nil otherwise.
func (s *Store) Pinning() func(*Batch) bool {
	active := s.log.Active()
	s.mu.Lock()
	oldest := s.oldestRefLocked()
	s.mu.Unlock()
	if oldest > active || active-oldest <= spillSegments {
		return nil
	}
	return func(b *Batch) bool { return b.inLog != nil && b.inLog.runs[0].seg == oldest }
}
