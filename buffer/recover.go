package buffer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/wiv/out_wivaudit/vfs"
	"github.com/wiv/out_wivaudit/wal"
)

// Recovery is what Open found of a previous run.
type Recovery struct {
	Batches    []*Batch   // batch files to upload
	InLog      []*Pending // batches sealed in the log, to upload (Store.BatchOf)
	Pending    int        // closed batches to seal, legacy log files included
	MovedAside []string   // files recovery could not use, now in the quarantine folder
	Damaged    [][]byte   // regions of the log that failed their checksum
	TornTail   int64      // bytes of appends cut short by a crash: never acknowledged
}

// arrived is a run read back from the log with its arrival.
type arrived struct {
	runRef
	at int64
}

// recovered collects what the batches and the log say about each stream before the index is rebuilt.
type recovered struct {
	rep    Recovery
	runs   map[Stream][]arrived
	sealed sealedRanges
	inLog  []entry // batch entries, in log order
	maxSeg uint64
	// oldest is the log's oldest segment: a batch entry whose first run lies before it was delivered or
	// spilled, since only that lets its segment go
	oldest uint64
}

// sealedRanges are, per stream, the ranges of runs that committed batches hold.
type sealedRanges map[Stream][][2]wal.Pos

func (sr sealedRanges) covers(st Stream, p wal.Pos) bool {
	for _, r := range sr[st] {
		if !p.Less(r[0]) && !r[1].Less(p) {
			return true
		}
	}
	return false
}

// add notes the runs a batch's manifest says it holds.
func (sr sealedRanges) add(m *Manifest) (last wal.Pos, ok bool) {
	r := m.LogRange
	if r == nil {
		return wal.Pos{}, false
	}
	first, last := wal.Pos{Seg: uint64(r[0][0]), Off: r[0][1]}, wal.Pos{Seg: uint64(r[1][0]), Off: r[1][1]}
	st := Stream{m.Org, m.Kind}
	sr[st] = append(sr[st], [2]wal.Pos{first, last})
	return last, true
}

func (s *Store) recover() (*Recovery, error) {
	rc := &recovered{runs: map[Stream][]arrived{}, sealed: sealedRanges{}}
	legacySealed, err := s.recoverBatches(rc)
	if err != nil {
		return nil, err
	}
	s.recoverQuarantined()
	if err := s.recoverLegacy(rc, legacySealed); err != nil {
		return nil, err
	}
	if err := s.recoverLog(rc); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.recoverInLog(rc)
	for st, runs := range rc.runs {
		for _, r := range runs {
			if !rc.sealed.covers(st, r.pos()) {
				s.addRunLocked(st, r.runRef, r.at, r.at)
			}
		}
	}
	s.mu.Unlock()
	s.opt.Crash(CrashDuringRecovery)
	s.Rotate(s.opt.Now())
	rc.rep.Pending = len(s.closed)
	// A segment that cannot be deleted now is deleted by a later release: it is no reason not to start.
	s.releaseSegments()
	return &rc.rep, nil
}

// recoverBatches reads the manifests of sealed batches. A manifest that does not parse, or whose object is
// missing or of the wrong size, is moved aside with its object; one that a read error keeps from being read
// fails the recovery, to be tried again. It returns the legacy logs already sealed.
func (s *Store) recoverBatches(rc *recovered) (map[string]bool, error) {
	entries, err := s.fs.ReadDir(s.batches)
	if err != nil {
		return nil, err
	}
	legacySealed := map[string]bool{}
	manifests := map[string]bool{}
	var found []*Batch
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(s.batches, name)
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			s.fs.Remove(path)
		case strings.HasSuffix(name, manifestSuffix):
			base := strings.TrimSuffix(name, manifestSuffix)
			b, err := readBatch(s.fs, path)
			for try := 1; err != nil && try < wal.ReadTries && !errors.Is(err, errBadBatch); try++ {
				b, err = readBatch(s.fs, path)
			}
			if err != nil && !errors.Is(err, errBadBatch) {
				return nil, fmt.Errorf("recover %s: %w", path, err)
			}
			if err != nil {
				moved, merr := s.moveAside("unreadable", path, filepath.Join(s.batches, base+objectSuffix))
				rc.rep.MovedAside = append(rc.rep.MovedAside, moved...)
				if merr != nil {
					return nil, fmt.Errorf("recover %s: %w (and it cannot be moved aside: %v)", path, err, merr)
				}
				continue
			}
			manifests[base] = true
			found = append(found, b)
		}
	}
	kept, superseded := supersede(found)
	for _, b := range superseded {
		moved, err := s.moveAside("superseded", b.manifest, b.object)
		rc.rep.MovedAside = append(rc.rep.MovedAside, moved...)
		if err != nil {
			return nil, fmt.Errorf("recover %s: %w", b.manifest, err)
		}
	}
	for _, b := range kept {
		rc.rep.Batches = append(rc.rep.Batches, b)
		s.use.used += b.ObjectBytes
		ss := s.streamLocked(b.Stream())
		ss.batches++
		ss.last = max(ss.last, b.KeyMs, b.Opened)
		if last, ok := rc.sealed.add(&b.Manifest); ok {
			rc.maxSeg = max(rc.maxSeg, last.Seg)
		}
		if b.SourceLog != "" {
			legacySealed[b.SourceLog] = true
		}
	}
	for _, e := range entries {
		// A seal cut short before its manifest (the log still holds the records), or a manifest lost: never
		// a delivered batch (Remove takes the object first), and maybe the records' only copy, so kept aside.
		if base, ok := strings.CutSuffix(e.Name(), objectSuffix); ok && !manifests[base] {
			moved, err := s.moveAside("no-manifest", filepath.Join(s.batches, e.Name()))
			rc.rep.MovedAside = append(rc.rep.MovedAside, moved...)
			if err != nil {
				return nil, fmt.Errorf("recover %s: %w", e.Name(), err)
			}
		}
	}
	return legacySealed, nil
}

// recoverQuarantined counts the quarantine's objects against its limit and keeps the key milliseconds of the
// batches there taken, so that a batch put back from quarantine never meets a new one under the same name.
func (s *Store) recoverQuarantined() {
	s.use.quarantined = objectsSize(s.fs, s.quarantine)
	entries, _ := s.fs.ReadDir(s.quarantine)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), manifestSuffix) {
			continue
		}
		data, err := vfs.ReadFile(s.fs, filepath.Join(s.quarantine, e.Name()))
		var m Manifest
		if err != nil || json.Unmarshal(data, &m) != nil || !safeName(m.Org) || !safeName(m.Kind) {
			continue
		}
		ss := s.streamLocked(Stream{m.Org, m.Kind})
		ss.last = max(ss.last, m.KeyMs, m.Opened)
	}
}

// recoverLog reads the log back, collects its runs and sealed entries, and opens it for appends. Something
// that is not a file where a segment should be is moved aside; a segment that a read error keeps from being
// read fails the recovery, to be tried again, rather than have its records set aside.
func (s *Store) recoverLog(rc *recovered) error {
	log, rep, err := wal.Open(s.walDir, wal.Options{FS: s.fs, SegmentSize: s.opt.SegmentSize, MinID: rc.maxSeg + 1,
		AfterWrite: func() { s.opt.Crash(CrashAfterWrite) }},
		logEntries(func(e entry, at wal.Pos, size int) {
			rc.runs[e.st] = append(rc.runs[e.st], arrived{runRef{seg: at.Seg, off: uint32(at.Off), size: int32(size),
				records: int32(e.records), json: int32(jsonBytes(e.body, e.records))}, e.ms})
		}, func(e entry) {
			if e.typ == batchEntry {
				rc.inLog = append(rc.inLog, e)
			} else {
				rc.sealed[e.st] = append(rc.sealed[e.st], [2]wal.Pos{e.first, e.last})
			}
			ss := s.streamLocked(e.st)
			ss.last = max(ss.last, e.ms)
		}, func(bad []byte) {
			rc.rep.Damaged = append(rc.rep.Damaged, bytes.Clone(bad))
		}))
	if err != nil {
		return fmt.Errorf("recover the log: %w", err)
	}
	s.log = log
	rc.oldest = log.Oldest()
	s.use.used += rep.Size
	rc.rep.TornTail += rep.TornTail
	moved, err := s.moveAside("unreadable", rep.Strays...)
	rc.rep.MovedAside = append(rc.rep.MovedAside, moved...)
	if err != nil {
		return fmt.Errorf("recover the log: %w", err)
	}
	return nil
}

// recoverInLog rebuilds the batches that live in the log from their batch entries and runs, unless a sealed
// entry or a batch file holds their range (delivered, or spilled) or their first runs are gone (delivered or
// spilled, and their segment deleted). Their runs are then not gathered again. The caller holds mu.
func (s *Store) recoverInLog(rc *recovered) {
	for _, e := range rc.inLog {
		// Whether its first segment is there, not whether that holds intact runs: a first run lost to damage
		// leaves the batch's other runs to deliver.
		done := rc.sealed.covers(e.st, e.first) || e.first.Seg < rc.oldest
		rc.sealed[e.st] = append(rc.sealed[e.st], [2]wal.Pos{e.first, e.last})
		if done {
			continue
		}
		p := &Pending{Stream: e.st, Opened: e.ms, LastRecord: e.lastAt, firstAt: e.firstAt}
		for _, r := range rc.runs[e.st] {
			if !r.pos().Less(e.first) && !e.last.Less(r.pos()) {
				p.runs = append(p.runs, r.runRef)
				p.Records += int(r.records)
			}
		}
		if len(p.runs) == 0 {
			continue
		}
		p.key, p.dest, p.sealedAt = e.key, e.dest, e.sealedAt
		for _, r := range p.runs {
			s.refs[r.seg]++
		}
		ss := s.streamLocked(e.st)
		ss.batches++
		rc.rep.InLog = append(rc.rep.InLog, p)
	}
}

// logEntries decodes the log's records as recovery and Inspect read them back: run gets each run with where
// it lies and its length, sealed each sealed and batch entry, damaged each region that fails its checksum and each
// record that does not parse (its bytes are valid during the call only).
func logEntries(run func(e entry, at wal.Pos, size int), sealed func(e entry), damaged func([]byte)) wal.Replay {
	return wal.Replay{
		Record: func(at wal.Pos, record []byte) {
			e, err := parseEntry(record)
			switch {
			case err != nil:
				damaged(record)
			case e.typ == runEntry:
				run(e, at, len(record))
			default:
				sealed(e)
			}
		},
		Damaged: damaged,
	}
}

// supersede finds the batches sealed twice: two manifests of one stream naming the same log range hold the same
// records, sealed again under a later millisecond after the first seal's sync failed and its files could not be
// removed. A file whose sync failed is never trusted, and uploading both would deliver the records twice: only
// the latest seal of a range is kept; the others are returned to be set aside, never deleted.
func supersede(found []*Batch) (kept, superseded []*Batch) {
	type rangeOf struct {
		st Stream
		r  [2][2]int64
	}
	latest := map[rangeOf]*Batch{}
	for _, b := range found {
		if b.LogRange == nil {
			continue
		}
		k := rangeOf{b.Stream(), *b.LogRange}
		if cur, ok := latest[k]; !ok || b.KeyMs > cur.KeyMs {
			latest[k] = b
		}
	}
	for _, b := range found {
		if b.LogRange != nil && latest[rangeOf{b.Stream(), *b.LogRange}] != b {
			superseded = append(superseded, b)
			continue
		}
		kept = append(kept, b)
	}
	return kept, superseded
}
