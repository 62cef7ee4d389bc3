package buffer

import (
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
)

// Encoder writes the object for a batch. Each fragment is one or more records joined by Separator; the
// encoder joins the fragments with Separator too.
type Encoder func(w io.Writer, fragments iter.Seq[[]byte]) error

// SealReport says what sealing found besides intact records.
type SealReport struct {
	Damaged  [][]byte // regions that failed their checksum (disk corruption), left out of the batch
	TornTail int      // bytes of an interrupted, unacknowledged append at the end of a legacy log
	// Unreleased is set when the batch is committed but its records could not be marked as sealed in the log;
	// they stay referenced there, and the log keeps them until the next start.
	Unreleased error
}

// Seal turns a closed batch into a sealed one for destination, under the key that key gives for its
// millisecond: the object and its manifest are written and synced, never over an existing batch, before the
// log lets go of the records, so a crash at any point leaves either the records in the log or the batch. A
// nil batch with a nil error means nothing in it was intact.
func (s *Store) Seal(p *Pending, key func(ms int64) string, destination string, encode Encoder) (*Batch, SealReport, error) {
	if p.legacy != "" {
		return s.sealLegacy(p, key, destination, encode)
	}
	var rep SealReport
	fragments, records, jsonLen := s.readRuns(p, &rep)
	b, err := s.commitBatch(p, key, destination, encode, fragments, func() (int, int64) { return *records, *jsonLen })
	if err != nil {
		return nil, rep, fmt.Errorf("seal %s batch of %d: %w", p.Stream, p.Opened, err)
	}
	if b != nil {
		first, last := p.runs[0].pos(), p.runs[len(p.runs)-1].pos()
		rep.Unreleased = s.appendSealed(p.Stream, b.KeyMs, first, last)
	}
	if rep.Unreleased == nil {
		s.release(p, b == nil)
		if err := s.releaseSegments(); err != nil {
			rep.Unreleased = err
		}
	}
	return b, rep, nil
}

// readRuns yields the records of a batch's runs, read back from the log and checked; damaged runs are left
// out and reported. The counts are complete once the sequence has been consumed.
func (s *Store) readRuns(p *Pending, rep *SealReport) (iter.Seq[[]byte], *int, *int64) {
	records, jsonLen := new(int), new(int64)
	var buf []byte
	return func(yield func([]byte) bool) {
		*records, *jsonLen = 0, 0
		rep.Damaged = rep.Damaged[:0]
		for i, r := range p.runs {
			buf = append(buf[:0], make([]byte, r.size)...)
			if _, err := r.seg.f.ReadAt(buf, r.off); err != nil {
				rep.Damaged = append(rep.Damaged, fmt.Appendf(nil, "unreadable run at %s offset %d: %v", r.seg.path, r.off, err))
				continue
			}
			payload, ok := frameAt(buf)
			e, err := parseEntry(payload)
			if !ok || err != nil || e.typ != runEntry || e.st != p.Stream || e.records != r.records {
				rep.Damaged = append(rep.Damaged, append([]byte(nil), buf...))
				continue
			}
			*records += e.records
			*jsonLen += jsonBytes(e.body, e.records)
			if !yield(e.body) {
				return
			}
			if i == 0 {
				s.opt.Crash(CrashMidSeal)
			}
		}
	}, records, jsonLen
}

// commitBatch writes a batch's object, then its manifest, under the first free millisecond from p.Opened on.
// The manifest is the commit. counts gives the records and JSON bytes once the object is written.
func (s *Store) commitBatch(p *Pending, key func(ms int64) string, destination string, encode Encoder,
	fragments iter.Seq[[]byte], counts func() (int, int64)) (*Batch, error) {
	ms := p.Opened
	var base string
	var sum string
	var size int64
	for {
		base = batchBase(s.batches, p.Stream, ms)
		var err error
		sum, size, err = createSynced(base+objectSuffix, func(w io.Writer) error { return encode(w, fragments) })
		if err == nil {
			break
		}
		if !isExist(err) {
			os.Remove(base + objectSuffix)
			return nil, err
		}
		// Only a store written by something else can hold this name: take the next free millisecond.
		ms = s.NextMs(p.Stream)
	}
	records, jsonLen := counts()
	if records == 0 {
		os.Remove(base + objectSuffix)
		return nil, nil
	}
	s.opt.Crash(CrashAfterObject)
	b := &Batch{object: base + objectSuffix, manifest: base + manifestSuffix}
	b.Manifest = Manifest{Key: key(ms), KeyMs: ms, Org: p.Org, Kind: p.Kind, Opened: p.Opened,
		LastRecord: max(p.Opened, p.LastRecord), Records: records, JSONBytes: jsonLen, ObjectBytes: size,
		ContentMD5: sum, SealedAt: s.opt.Now().UTC(), Destination: destination}
	if p.legacy != "" {
		b.SourceLog = filepath.Base(p.legacy)
	} else {
		first, last := p.runs[0].pos(), p.runs[len(p.runs)-1].pos()
		b.LogRange = &[2][2]int64{{int64(first.seg), first.off}, {int64(last.seg), last.off}}
	}
	if err := writeNew(b.manifest, b.encode()); err != nil {
		os.Remove(b.object)
		return nil, err
	}
	s.use.add(size)
	s.opt.Crash(CrashAfterManifest)
	s.mu.Lock()
	ss := s.streamLocked(p.Stream)
	ss.last = max(ss.last, ms)
	s.mu.Unlock()
	return b, nil
}

// appendSealed records in the log that a stream's runs from first to last are in a committed batch.
func (s *Store) appendSealed(st Stream, keyMs int64, first, last pos) error {
	return s.log.append(0, func(dst []byte) ([]byte, error) {
		start := len(dst)
		dst = append(dst, make([]byte, headerLen)...)
		dst = appendSealed(dst, st, keyMs, first, last)
		putHeader(dst[start:])
		return dst, nil
	}, nil)
}

// release lets go of a sealed batch's runs in the log. empty: the batch came to nothing and is gone.
func (s *Store) release(p *Pending, empty bool) {
	s.mu.Lock()
	for _, r := range p.runs {
		r.seg.refs--
	}
	if empty {
		s.batchGoneLocked(p.Stream)
	}
	s.mu.Unlock()
}
