package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/wiv/out_wivaudit/vfs"
)

// segment is one file of the log. Entries are only appended to the last segment; older ones are read by
// sealing and deleted, oldest first, once nothing in them is left unsealed.
type segment struct {
	id   uint64
	path string
	f    vfs.File
	size int64 // bytes written; the active segment's next offset
	refs int   // indexed runs not yet sealed; guarded by Store.mu
}

const segSuffix = ".seg"

func segmentName(id uint64) string { return fmt.Sprintf("%016x%s", id, segSuffix) }

func parseSegmentName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil
}

// wal appends entries to the active segment and makes them durable with group commit: the appender that
// finds no sync under way syncs everything written so far, for itself and for every appender waiting behind
// it, and applies their effects on the index in log order before it wakes them.
type wal struct {
	s        *Store
	mu       sync.Mutex
	cond     *sync.Cond
	active   *segment
	nextID   uint64
	queue    []*request // written, not yet synced, in log order
	syncing  bool
	needRoll bool // the active segment saw a failed write or sync: start a new one before the next write
	buf      []byte
}

// request is one append waiting for its sync. apply runs after the sync succeeded, in log order.
type request struct {
	apply func(seg *segment, off int64)
	seg   *segment
	off   int64
	done  bool
	err   error
}

func newWAL(s *Store, nextID uint64) *wal {
	w := &wal{s: s, nextID: nextID}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// append writes data as the next entries of the log, waits until they are on disk and have been applied,
// and returns nil only then. fill builds the bytes; it runs under the log's lock, so it must be quick. claimed
// is room the caller reserved: it becomes the written bytes' use in the same step, or is given back.
func (w *wal) append(claimed int64, fill func(dst []byte) ([]byte, error), apply func(seg *segment, off int64)) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// The buffer is this append's until its bytes are written: a roll below lets other appends in meanwhile.
	data, err := fill(w.buf[:0])
	w.buf = nil
	if err == nil && (w.needRoll || w.active.size > 0 && w.active.size+int64(len(data)) > w.s.opt.SegmentSize) {
		err = w.rollLocked()
	}
	seg := w.active
	if err == nil {
		if _, err = seg.f.WriteAt(data, seg.size); err != nil {
			// Leave no partial entry behind, and write the next ones to a fresh segment.
			seg.f.Truncate(seg.size)
			w.needRoll = true
			err = fmt.Errorf("write %s: %w", seg.path, err)
		}
	}
	if err != nil {
		w.s.Release(claimed)
		return err
	}
	w.buf = data[:0]
	r := &request{apply: apply, seg: seg, off: seg.size}
	seg.size += int64(len(data))
	w.s.use.commitReserved(claimed, int64(len(data)))
	w.queue = append(w.queue, r)
	w.s.opt.Crash(CrashAfterWrite)
	for !r.done {
		if w.syncing {
			w.cond.Wait()
			continue
		}
		w.syncRoundLocked()
	}
	return r.err
}

// syncRoundLocked syncs the active segment for every request queued so far and completes them. It drops the
// lock while it syncs, so that more appends can be written meanwhile; they go in the next round.
func (w *wal) syncRoundLocked() {
	batch := w.queue
	w.queue = nil
	seg := w.active
	w.syncing = true
	w.mu.Unlock()
	err := seg.f.Datasync()
	if err != nil {
		err = fmt.Errorf("sync %s: %w", seg.path, err)
	} else {
		for _, r := range batch {
			if r.apply != nil {
				r.apply(r.seg, r.off)
			}
		}
	}
	w.mu.Lock()
	if err != nil {
		// Linux reports a failed writeback once and may drop the pages: nothing written to the segment and not
		// yet acknowledged is known to be on disk, whatever a later sync of it would say. So the appends
		// written meanwhile fail too (their callers retry), the segment is never synced again, and the log
		// goes on in a new one.
		w.needRoll = true
		kept := w.queue[:0]
		for _, r := range w.queue {
			if r.seg == seg {
				batch = append(batch, r)
			} else {
				kept = append(kept, r)
			}
		}
		w.queue = kept
	}
	for _, r := range batch {
		r.done, r.err = true, err
	}
	w.syncing = false
	w.cond.Broadcast()
}

// rollLocked completes what waits for the active segment and starts a new one.
func (w *wal) rollLocked() error {
	for w.syncing {
		w.cond.Wait()
	}
	if len(w.queue) > 0 {
		w.syncRoundLocked()
	}
	// A failed creation may leave its file behind: the next try takes the next name.
	seg, err := w.s.createSegment(w.nextID)
	w.nextID++
	if err != nil {
		return err
	}
	w.active, w.needRoll = seg, false
	return nil
}

// activeID is the segment being written.
func (w *wal) activeID() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.active.id
}

// close waits for a sync under way. Appends must have stopped.
func (w *wal) close() {
	w.mu.Lock()
	for w.syncing {
		w.cond.Wait()
	}
	w.mu.Unlock()
}

// createSegment creates a segment file, makes its name durable and adds it to the live segments.
func (s *Store) createSegment(id uint64) (*segment, error) {
	path := filepath.Join(s.walDir, segmentName(id))
	f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if err := s.fs.SyncDir(s.walDir); err != nil {
		f.Close()
		s.fs.Remove(path)
		return nil, fmt.Errorf("create segment: %w", err)
	}
	seg := &segment{id: id, path: path, f: f}
	s.mu.Lock()
	s.segments = append(s.segments, seg)
	s.mu.Unlock()
	return seg, nil
}

// releaseSegments deletes the oldest segments while nothing in them is left unsealed. Deleting strictly in
// order keeps every sealed entry at least as long as the runs it covers, so recovery never gathers a sealed
// run again: a segment that cannot be deleted stays, with every later one, until the next release.
func (s *Store) releaseSegments() error {
	s.releaseMu.Lock()
	defer s.releaseMu.Unlock()
	active := s.log.activeID()
	s.mu.Lock()
	var gone []*segment
	for _, seg := range s.segments {
		if seg.id == active || seg.refs > 0 {
			break
		}
		gone = append(gone, seg)
	}
	s.mu.Unlock()
	if len(gone) == 0 {
		return nil
	}
	var err error
	deleted := 0
	for _, seg := range gone {
		if err = s.fs.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("delete %s: %w", seg.path, err)
			break
		}
		err = nil
		seg.f.Close()
		s.use.add(-seg.size)
		deleted++
	}
	if deleted > 0 {
		s.mu.Lock()
		s.segments = s.segments[deleted:]
		s.mu.Unlock()
	}
	return errors.Join(err, s.fs.SyncDir(s.walDir))
}
