package buffer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"path/filepath"
	"sync"

	"github.com/wiv/out_wivaudit/record"
	"github.com/wiv/out_wivaudit/wal"
)

// Encoder writes the object for a batch. Each fragment is one or more records joined by Separator; the
// encoder joins the fragments with Separator too.
type Encoder func(w io.Writer, fragments iter.Seq[[]byte]) error

// SealReport says what sealing found besides intact records.
type SealReport struct {
	Damaged  [][]byte // regions that failed their checksum (disk corruption), left out of the batch; KeepDamaged had them
	TornTail int      // bytes of an interrupted, unacknowledged append at the end of a legacy log
	// Unreleased is set when the batch is committed but its records could not be marked as sealed in the log;
	// they stay referenced there, and the log keeps them until the next start.
	Unreleased error
}

// Sealed is the outcome of sealing one closed batch. A nil Batch with a nil Err means nothing in it was intact.
type Sealed struct {
	Pending *Pending
	Batch   *Batch
	Report  SealReport
	Err     error // the batch is not sealed; PutBack to try again
}

// Naming gives a closed batch's destination and its key for a millisecond.
type Naming func(p *Pending) (destination string, key func(ms int64) string)

// Seal turns closed batches into sealed ones: each object and manifest is written and synced, never over an
// existing batch; then one sync of the batches folder and one append to the log record them all as sealed,
// and only then does the log let go of their records. A crash at any point leaves either the records in the
// log or the batch.
func (s *Store) Seal(ps []*Pending, name Naming, encode Encoder) []Sealed {
	out := make([]Sealed, len(ps))
	var marks []unmarked
	for i, p := range ps {
		dest, key := name(p)
		out[i] = Sealed{Pending: p}
		if p.legacy != "" {
			out[i].Batch, out[i].Report, out[i].Err = s.sealLegacy(p, key, dest, encode)
			continue
		}
		b, err := s.sealRuns(p, key, dest, encode, &out[i].Report)
		if err != nil {
			out[i].Err = err
			if noSpace(err) {
				s.splitOff(p)
			}
			continue
		}
		out[i].Batch = b
		if b != nil {
			marks = append(marks, b.mark(p))
		}
	}
	if len(marks) > 0 {
		if err := s.addMarks(marks); err != nil {
			// The batches are committed, but the log does not say so yet: their records stay in the log, the
			// next round (or the first Remove) tries again, and a restart reads the manifests meanwhile.
			for i := range out {
				if out[i].Batch != nil && out[i].Pending.legacy == "" {
					out[i].Report.Unreleased = err
				}
			}
		}
	}
	if err := s.releaseSegments(); err != nil {
		for i := range out {
			if out[i].Err == nil && out[i].Report.Unreleased == nil {
				out[i].Report.Unreleased = err
			}
		}
	}
	return out
}

// sealRuns writes a batch file of a closed batch's runs. A nil batch with a nil error means nothing in them
// was intact: the log lets go of them, and the batch is gone.
func (s *Store) sealRuns(p *Pending, key func(ms int64) string, dest string, encode Encoder, rep *SealReport) (*Batch, error) {
	runs := s.readRuns(p, rep)
	b, err := s.commitBatch(p, key, dest, encode, runs.fragments, runs.counts, rep)
	if err != nil {
		return nil, fmt.Errorf("seal %s batch of %d: %w", p.Stream, p.Opened, err)
	}
	if b == nil {
		s.mu.Lock()
		s.releaseLocked(p, true)
		s.mu.Unlock()
		return nil, nil
	}
	return b, nil
}

// mark is the batch's "sealed" entry, still to be appended: b holds p's runs.
func (b *Batch) mark(p *Pending) unmarked {
	b.unmarked = true
	return unmarked{p: p, b: b, entry: appendSealed(nil, p.Stream, b.KeyMs, p.runs[0].pos(), p.runs[len(p.runs)-1].pos())}
}

// addMarks appends the "sealed" entries of committed batches with those still missing, and lets go of their
// records in the log.
func (s *Store) addMarks(marks []unmarked) error {
	s.opt.Crash(CrashAfterManifest)
	s.markMu.Lock()
	defer s.markMu.Unlock()
	s.unmarked = append(s.unmarked, marks...)
	return s.markLocked()
}

// splitOff leaves a batch whose runs lie in more than one segment the runs of the first, and queues the
// others as a batch of its own with the stream's next key millisecond: for a disk too full for the whole
// object. The part is at most about a segment, which the disk's reserve holds, and sealing it lets the
// segment go.
func (s *Store) splitOff(p *Pending) {
	n := 1
	for n < len(p.runs) && p.runs[n].seg == p.runs[0].seg {
		n++
	}
	if n == len(p.runs) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.streamLocked(p.Stream)
	rest := &Pending{Stream: p.Stream, Opened: s.nextMsLocked(ss, s.opt.KeyClock().UnixMilli()),
		LastRecord: p.LastRecord, firstAt: p.firstAt, runs: p.runs[n:]}
	p.runs = p.runs[:n:n]
	p.Records, rest.Records = 0, 0
	for _, r := range p.runs {
		p.Records += int(r.records)
	}
	for _, r := range rest.runs {
		rest.Records += int(r.records)
	}
	ss.batches++
	s.closed = append(s.closed, rest)
}

// unmarked is a committed batch whose "sealed" entry is not yet in the log.
type unmarked struct {
	p     *Pending
	b     *Batch
	entry []byte
}

// markLocked appends the "sealed" entries still missing, in one append, and lets go of their records in the
// log. The entries say that the batches hold the records, so the batches' names are made durable first. The
// caller holds markMu.
func (s *Store) markLocked() error {
	if len(s.unmarked) == 0 && len(s.done) == 0 {
		return nil
	}
	if len(s.unmarked) > 0 {
		if err := s.fs.SyncDir(s.batches); err != nil {
			return err
		}
	}
	entries := make([][]byte, 0, len(s.unmarked)+len(s.done))
	for _, m := range s.unmarked {
		entries = append(entries, m.entry)
	}
	if err := s.appendEntries(append(entries, s.done...)); err != nil {
		return err
	}
	s.done = nil
	s.mu.Lock()
	for _, m := range s.unmarked {
		s.releaseLocked(m.p, false)
		m.b.unmarked = false
	}
	s.mu.Unlock()
	s.unmarked = nil
	return nil
}

// markSealed makes sure the log says b's records are sealed, appending what an earlier round could not, and
// then deletes the segments that this frees: no Seal may come to do it while nothing is open. released is the
// error of that deletion, which the next release tries again.
func (s *Store) markSealed(b *Batch) (released, err error) {
	s.markMu.Lock()
	marking := len(s.unmarked) > 0
	err = s.markLocked()
	s.markMu.Unlock()
	if err != nil && b.unmarked {
		return nil, err
	}
	if marking && err == nil {
		released = s.releaseSegments()
	}
	return released, nil
}

// runReader reads a batch's runs back from the log for its object.
type runReader struct {
	fragments iter.Seq[[]byte]
	records   int
	jsonLen   int64
	err       error // a read failed: the object is incomplete
}

func (rr *runReader) counts() (int, int64, error) { return rr.records, rr.jsonLen, rr.err }

// frameBuffers hold the buffers runs are read into, *[]byte; one larger than maxPooledFrame is not kept.
var frameBuffers sync.Pool

const maxPooledFrame = 1 << 20

// readRuns yields the records of a batch's runs, read back from the log and checked. A run that fails its
// checksum, or does not parse, is damage: it is left out and its bytes are reported. A read that fails is not
// damage: the sequence stops, and the counts say so with the error. The counts are complete once the sequence
// has been consumed.
func (s *Store) readRuns(p *Pending, rep *SealReport) *runReader {
	rr := &runReader{}
	rr.fragments = func(yield func([]byte) bool) {
		rr.records, rr.jsonLen, rr.err = 0, 0, nil
		rep.Damaged = rep.Damaged[:0]
		// The runs' frames are read into one buffer, kept for the next batch: what a fragment yields is
		// consumed before the next is read, and damage is copied.
		pooled, _ := frameBuffers.Get().(*[]byte)
		if pooled == nil {
			pooled = new([]byte)
		}
		buf := *pooled
		defer func() {
			if cap(buf) <= maxPooledFrame {
				*pooled = buf[:0]
				frameBuffers.Put(pooled)
			}
		}()
		for i, r := range p.runs {
			frame, record, err := s.log.Read(r.pos(), int(r.size), buf)
			buf = frame
			if err != nil && !errors.Is(err, wal.ErrCorrupt) {
				rr.err = err
				return
			}
			e, perr := parseEntry(record)
			if err != nil || perr != nil || e.typ != runEntry || e.st != p.Stream || e.records != int(r.records) {
				rep.Damaged = append(rep.Damaged, bytes.Clone(frame))
				continue
			}
			rr.records += e.records
			rr.jsonLen += jsonBytes(e.body, e.records)
			if !yield(e.body) {
				return
			}
			if i == 0 {
				s.opt.Crash(CrashMidSeal)
			}
		}
	}
	return rr
}

// commitBatch writes a batch's object, then its manifest, under the first free millisecond from p.Opened on.
// The manifest is the commit. counts gives the records and JSON bytes once the object is written, or why the
// fragments are incomplete; rep then holds the damage the object leaves out, which is kept (KeepDamaged)
// before the commit lets the log or the legacy file go.
func (s *Store) commitBatch(p *Pending, key func(ms int64) string, destination string, encode Encoder,
	fragments iter.Seq[[]byte], counts func() (int, int64, error), rep *SealReport) (*Batch, error) {
	ms := p.Opened
	if p.keyMs != 0 {
		ms = p.keyMs
	}
	var base string
	var sum digests
	var first, last []byte // the first and last records, copied as they pass
	fragments = endsOf(fragments, &first, &last)
	for {
		base = batchBase(s.batches, p.Stream, ms)
		var err error
		if !fileExists(s.fs, base+manifestSuffix) {
			sum, err = createSynced(s.fs, base+objectSuffix, func(w io.Writer) error {
				if err := encode(w, fragments); err != nil {
					return err
				}
				_, _, err := counts()
				return err
			})
			if err == nil {
				break
			}
			if !isExist(err) {
				return nil, err
			}
		}
		// Only a store written by something else, or a seal that could not clear its files, can hold this
		// name: take the next free millisecond.
		ms = s.NextMs(p.Stream)
	}
	if len(rep.Damaged) > 0 && s.opt.KeepDamaged != nil {
		if err := s.opt.KeepDamaged(p.Stream, rep.Damaged); err != nil {
			s.fs.Remove(base + objectSuffix)
			return nil, fmt.Errorf("cannot keep its %d damaged regions: %w", len(rep.Damaged), err)
		}
	}
	records, jsonLen, _ := counts()
	if records == 0 {
		s.fs.Remove(base + objectSuffix)
		return nil, nil
	}
	s.opt.Crash(CrashAfterObject)
	b := &Batch{object: base + objectSuffix, manifest: base + manifestSuffix, fs: s.fs}
	b.Manifest = Manifest{Key: key(ms), KeyMs: ms, Org: p.Org, Kind: p.Kind, Opened: p.Opened,
		LastRecord: max(p.Opened, p.LastRecord), Records: records, JSONBytes: jsonLen, ObjectBytes: sum.size,
		ContentMD5: sum.md5, SHA256: sum.sha256, SealedAt: s.opt.Now().UTC(), Destination: destination,
		Attempts: p.attempts, Requeued: p.requeued}
	// A record without a readable id or created_at leaves them out: the ledger and digests show it as null.
	b.FirstEvent, _ = record.RefOf(first)
	b.LastEvent, _ = record.RefOf(last)
	if p.legacy != "" {
		b.SourceLog = filepath.Base(p.legacy)
	} else {
		first, last := p.runs[0].pos(), p.runs[len(p.runs)-1].pos()
		b.LogRange = &[2][2]int64{{int64(first.Seg), first.Off}, {int64(last.Seg), last.Off}}
	}
	if _, err := createSynced(s.fs, b.manifest, func(w io.Writer) error { _, err := w.Write(b.encode()); return err }); err != nil {
		s.fs.Remove(b.object)
		return nil, err
	}
	s.use.add(sum.size)
	s.mu.Lock()
	ss := s.streamLocked(p.Stream)
	ss.last = max(ss.last, ms)
	s.mu.Unlock()
	return b, nil
}

// endsOf passes fragments on, keeping a copy of the first record of the first one and of the last record of
// the last one seen.
func endsOf(fragments iter.Seq[[]byte], first, last *[]byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for f := range fragments {
			a, z := FragmentEnds(f)
			if *first == nil {
				*first = bytes.Clone(a)
			}
			*last = append((*last)[:0], z...)
			if !yield(f) {
				return
			}
		}
	}
}

// releaseLocked lets go of a sealed batch's runs in the log. empty: the batch came to nothing and is gone.
func (s *Store) releaseLocked(p *Pending, empty bool) {
	for _, r := range p.runs {
		s.unrefLocked(r)
	}
	if empty {
		s.batchGoneLocked(p.Stream)
	}
}
