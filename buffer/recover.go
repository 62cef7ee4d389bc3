package buffer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/wiv/out_wivaudit/vfs"
)

// Recovery is what Open found of a previous run.
type Recovery struct {
	Batches    []*Batch // sealed batches to upload
	Pending    int      // closed batches to seal, legacy log files included
	MovedAside []string // files recovery could not use, now in the quarantine folder
	Damaged    [][]byte // regions of the log that failed their checksum
	TornTail   int64    // bytes of appends cut short by a crash: never acknowledged
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
	maxSeg uint64
}

// sealedRanges are, per stream, the ranges of runs that committed batches hold.
type sealedRanges map[Stream][][2]pos

func (sr sealedRanges) covers(st Stream, p pos) bool {
	for _, r := range sr[st] {
		if !p.less(r[0]) && !r[1].less(p) {
			return true
		}
	}
	return false
}

// add notes the runs a batch's manifest says it holds.
func (sr sealedRanges) add(m *Manifest) (last pos, ok bool) {
	r := m.LogRange
	if r == nil {
		return pos{}, false
	}
	first, last := pos{uint64(r[0][0]), r[0][1]}, pos{uint64(r[1][0]), r[1][1]}
	st := Stream{m.Org, m.Kind}
	sr[st] = append(sr[st], [2]pos{first, last})
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
	for st, runs := range rc.runs {
		for _, r := range runs {
			if !rc.sealed.covers(st, r.pos()) {
				s.addRunLocked(st, r.runRef, r.at, r.at)
			}
		}
	}
	s.mu.Unlock()
	s.log = newWAL(s, rc.maxSeg+1)
	s.log.mu.Lock()
	err = s.log.rollLocked()
	s.log.mu.Unlock()
	if err != nil {
		return nil, err
	}
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
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(s.batches, name)
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			s.fs.Remove(path)
		case strings.HasSuffix(name, manifestSuffix):
			base := strings.TrimSuffix(name, manifestSuffix)
			b, err := readBatch(s.fs, path)
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
			rc.rep.Batches = append(rc.rep.Batches, b)
			s.use.used += b.ObjectBytes
			ss := s.streamLocked(b.Stream())
			ss.batches++
			ss.last = max(ss.last, b.KeyMs, b.Opened)
			if last, ok := rc.sealed.add(&b.Manifest); ok {
				rc.maxSeg = max(rc.maxSeg, last.seg)
			}
			if b.SourceLog != "" {
				legacySealed[b.SourceLog] = true
			}
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
	return legacySealed, s.fs.SyncDir(s.batches)
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

// recoverLog reads every segment in order and collects its runs and sealed entries. Something that is not a
// file where a segment should be is moved aside; a segment that a read error keeps from being read fails the
// recovery, to be tried again, rather than have its records set aside.
func (s *Store) recoverLog(rc *recovered) error {
	entries, err := s.fs.ReadDir(s.walDir)
	if err != nil {
		return err
	}
	var ids []uint64
	for _, e := range entries {
		if id, ok := parseSegmentName(e.Name()); ok {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		rc.maxSeg = max(rc.maxSeg, id)
		path := filepath.Join(s.walDir, segmentName(id))
		if fi, err := s.fs.Lstat(path); err == nil && !fi.Mode().IsRegular() {
			moved, err := s.moveAside("unreadable", path)
			rc.rep.MovedAside = append(rc.rep.MovedAside, moved...)
			if err != nil {
				return fmt.Errorf("recover %s, not a file: it cannot be moved aside: %w", path, err)
			}
			continue
		}
		if err := s.recoverSegment(rc, id); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) recoverSegment(rc *recovered, id uint64) error {
	path := filepath.Join(s.walDir, segmentName(id))
	f, err := s.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("recover %s: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("recover %s: %w", path, err)
	}
	seg := &segment{id: id, path: path, f: f, size: int64(len(data))}
	s.segments = append(s.segments, seg)
	s.use.used += seg.size
	rc.rep.TornTail += int64(scanLog(data, func(e entry, at, size int) {
		rc.runs[e.st] = append(rc.runs[e.st], arrived{runRef{seg: seg, off: int64(at), size: int32(size),
			records: int32(e.records), json: int32(jsonBytes(e.body, e.records))}, e.ms})
	}, func(e entry) {
		rc.sealed[e.st] = append(rc.sealed[e.st], [2]pos{e.first, e.last})
		ss := s.streamLocked(e.st)
		ss.last = max(ss.last, e.ms)
	}, func(bad []byte) {
		rc.rep.Damaged = append(rc.rep.Damaged, append([]byte(nil), bad...))
	}))
	return nil
}

// scanLog reads a segment's entries in order: run gets each run with where its frame lies, sealed each sealed
// entry, damaged each region that failed its checksum or does not parse. It returns the length of the torn
// tail.
func scanLog(data []byte, run func(e entry, at, size int), sealed func(e entry), damaged func([]byte)) int {
	off := 0
	return scanFrames(data, func(payload []byte) {
		at := off
		off += headerLen + len(payload)
		e, err := parseEntry(payload)
		switch {
		case err != nil:
			damaged(data[at:off])
		case e.typ == runEntry:
			run(e, at, off-at)
		default:
			sealed(e)
		}
	}, func(bad []byte) {
		off += len(bad)
		damaged(bad)
	})
}
