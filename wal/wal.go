// Package wal is a write-ahead log of records in segment files, for a store that keeps its own index of what
// the records mean. Each record is one frame (see AppendFrame). An append is one write; concurrent appends
// share one fdatasync (group commit), and each is acknowledged only once its bytes are durable. Open reads the
// records back in order. The caller tells the log which segments it may delete (Release): the log knows
// nothing of what its records mean, and holds nothing of its caller's.
//
// A failed fdatasync retires the segment: Linux reports a failed writeback once and may drop the failed
// pages, so nothing written to the segment and not yet acknowledged is known to be on disk, whatever a later
// fdatasync of it would say. Every append written to it and not yet acknowledged fails (its caller retries),
// the segment is never written or synced again, and the log goes on in a new one. A failed write retires it
// too when what it may have stored cannot be cut off; cut off, the segment is as it was and stays in use (a
// full disk refuses append after append: each moving on would leave an empty segment behind).
//
// A frame cut short at a segment's end is an append that was never acknowledged (a torn tail). Open reports
// it and leaves it: appends always go to a new segment after Open or a failure, so nothing ever follows it.
package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wiv/out_wivaudit/vfs"
)

// Options configure a Log.
type Options struct {
	FS vfs.FS // vfs.OS when nil
	// SegmentSize: an append that would take the segment being written past it goes to a new one.
	SegmentSize int64
	// MinID is the least id a new segment may take, whatever the folder holds: the caller's own records may
	// name segments deleted since.
	MinID uint64
	// AfterWrite, when set, is called with the log locked once an append's bytes are written, before they
	// are synced: a crash point for tests.
	AfterWrite func()
}

// Pos is where a record lies: a segment and the offset of its frame in it. Positions grow with every append.
type Pos struct {
	Seg uint64
	Off int64
}

// Less orders positions as the log does.
func (p Pos) Less(q Pos) bool { return p.Seg < q.Seg || (p.Seg == q.Seg && p.Off < q.Off) }

// ErrCorrupt means a record's frame fails its checksum or is cut short: damage, not a read error.
var ErrCorrupt = errors.New("damaged log record")

// Log is safe for concurrent use.
type Log struct {
	fs      vfs.FS
	dir     string
	opt     Options
	segSize atomic.Int64 // Options.SegmentSize, or what SetSegmentSize made it

	mu       sync.Mutex // guards the appending state below
	cond     *sync.Cond
	active   *segment // nil until a segment could be created
	nextID   uint64
	queue    []*request // written, not yet synced, in log order
	syncing  bool
	rolling  bool // a roll completes the active segment's appends: no new ones go into it meanwhile
	needRoll bool // the active segment saw a failed sync or a write not cut back, or there is none
	buf      []byte

	segMu sync.RWMutex
	segs  []*segment // live segments, oldest first; the last one is active

	releaseMu sync.Mutex // one Release at a time, so that segments go in order
}

// segment is one file of the log.
type segment struct {
	id   uint64
	path string
	f    vfs.File
	size int64 // bytes written; the active segment's next offset (guarded by Log.mu while active)
}

const segSuffix = ".seg"

// SegmentName is the file name of segment id.
func SegmentName(id uint64) string { return fmt.Sprintf("%016x%s", id, segSuffix) }

// ParseSegmentName is the id of a segment's file name.
func ParseSegmentName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil
}

// request is one append waiting for its sync.
type request struct {
	apply func(at []Pos)
	seg   *segment
	at    []Pos
	done  bool
	err   error
}

// maxKeptBuffer is the largest write buffer the log keeps for its next append.
const maxKeptBuffer = 1 << 20

// Append writes records as the log's next frames, with one write, and waits until they are durable. Then,
// before any later append is acknowledged, it calls apply (if not nil) with each record's position, in log
// order, and returns nil. It returns the bytes it added to the segment files: counted whatever the error, as
// they stay on disk until their segment is released.
func (l *Log) Append(records [][]byte, apply func(at []Pos)) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.rolling {
		l.cond.Wait()
	}
	size := 0
	for _, r := range records {
		if len(r) > MaxRecord {
			return 0, fmt.Errorf("a record of %d bytes, more than %d", len(r), MaxRecord)
		}
		size += HeaderLen + len(r)
	}
	if l.needRoll || l.active.size > 0 && l.active.size+int64(size) > l.segSize.Load() {
		if err := l.rollLocked(); err != nil {
			return 0, err
		}
	}
	seg := l.active
	at := make([]Pos, len(records))
	data := l.buf[:0]
	if cap(data) < size {
		data = make([]byte, 0, size) // at once: growing it by doubling would leave twice its size as garbage
	}
	for i, r := range records {
		at[i] = Pos{seg.id, seg.size + int64(len(data))}
		data = AppendFrame(data, r)
	}
	if cap(data) <= maxKeptBuffer {
		l.buf = data[:0]
	} else {
		l.buf = nil // a large append's buffer is not kept: memory follows what appends usually need
	}
	if _, err := seg.f.WriteAt(data, seg.size); err != nil {
		if seg.f.Truncate(seg.size) != nil {
			l.needRoll = true // a partial frame may be left: nothing may follow it
		}
		return 0, err // a *fs.PathError: it names the operation and the segment
	}
	seg.size += int64(len(data))
	r := &request{apply: apply, seg: seg, at: at}
	l.queue = append(l.queue, r)
	if l.opt.AfterWrite != nil {
		l.opt.AfterWrite()
	}
	for !r.done {
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.syncRoundLocked()
	}
	return int64(len(data)), r.err
}

// syncRoundLocked syncs the segment of the oldest request queued, completes every request queued in it,
// and applies their effects in log order. It drops the lock while it syncs, so that more appends can be
// written meanwhile; they go in the next round, as do requests of a later segment.
func (l *Log) syncRoundLocked() {
	seg := l.queue[0].seg
	n := 1
	for n < len(l.queue) && l.queue[n].seg == seg {
		n++
	}
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	l.syncing = true
	l.mu.Unlock()
	err := seg.f.Datasync() // a *fs.PathError: it names the operation and the segment
	if err == nil {
		for _, r := range batch {
			if r.apply != nil {
				r.apply(r.at)
			}
		}
	}
	l.mu.Lock()
	if err != nil {
		if seg == l.active {
			l.needRoll = true
		}
		kept := make([]*request, 0, len(l.queue))
		for _, r := range l.queue {
			if r.seg == seg {
				batch = append(batch, r)
			} else {
				kept = append(kept, r)
			}
		}
		l.queue = kept
	}
	for _, r := range batch {
		r.done, r.err = true, err
	}
	l.syncing = false
	l.cond.Broadcast()
}

// Roll completes what waits for the active segment and starts a new one.
func (l *Log) Roll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rollLocked()
}

func (l *Log) rollLocked() error {
	l.rolling = true
	defer func() {
		l.rolling = false
		l.cond.Broadcast()
	}()
	for l.syncing || len(l.queue) > 0 {
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.syncRoundLocked()
	}
	// A failed creation may leave its file behind: the next try takes the next name.
	id := l.nextID
	l.nextID++
	seg, err := l.create(id)
	if err != nil {
		return err
	}
	l.segMu.Lock()
	l.segs = append(l.segs, seg)
	l.segMu.Unlock()
	l.active, l.needRoll = seg, false
	return nil
}

// RollIfWritten starts a new segment when the active one holds anything, so that Release can delete it once
// nothing in it is needed: for a full disk whose space the active segment holds. It never leaves an empty
// segment behind.
func (l *Log) RollIfWritten() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.rolling {
		l.cond.Wait()
	}
	if l.active != nil && l.active.size == 0 && !l.needRoll {
		return false, nil
	}
	return true, l.rollLocked()
}

// SetSegmentSize changes the size past which an append goes to a new segment.
func (l *Log) SetSegmentSize(n int64) { l.segSize.Store(n) }

// SegmentSize is the size past which an append goes to a new segment.
func (l *Log) SegmentSize() int64 { return l.segSize.Load() }

// create creates a segment file and makes its name durable.
func (l *Log) create(id uint64) (*segment, error) {
	path := filepath.Join(l.dir, SegmentName(id))
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		l.fs.Remove(path)
		return nil, fmt.Errorf("create segment: %w", err)
	}
	return &segment{id: id, path: path, f: f}, nil
}

// Active is the segment being written, or the next one when there is none yet. Every append to an earlier
// segment is complete, and applied if it succeeded, before Active returns a later one.
func (l *Log) Active() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active == nil {
		return l.nextID
	}
	return l.active.id
}

// Oldest is the oldest segment of the log (Active when there is no other): Release deleted every earlier one.
func (l *Log) Oldest() uint64 {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	if len(l.segs) == 0 {
		return l.Active()
	}
	return l.segs[0].id
}

// Read reads the record at at whose length is n (as Append's apply or Open's replay gave them) into buf,
// grown as needed, and returns the frame's bytes and the record. When the frame fails its checksum or is cut
// short by the end of its segment, err is ErrCorrupt and frame holds the bytes that were there. Any other
// error is a read error, and says nothing of the record.
func (l *Log) Read(at Pos, n int, buf []byte) (frame, record []byte, err error) {
	seg := l.segment(at.Seg)
	if seg == nil {
		return nil, nil, fmt.Errorf("read %v: segment %d is not in the log", at, at.Seg)
	}
	frame = append(buf[:0], make([]byte, HeaderLen+n)...)
	got, err := seg.f.ReadAt(frame, at.Off)
	if got < len(frame) && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read %s at %d: %w", seg.path, at.Off, err)
	}
	frame = frame[:got]
	record, ok := frameAt(frame)
	if !ok || len(record) != n {
		return frame, nil, fmt.Errorf("%w at %s offset %d", ErrCorrupt, seg.path, at.Off)
	}
	return frame, record, nil
}

func (l *Log) segment(id uint64) *segment {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].id >= id })
	if i < len(l.segs) && l.segs[i].id == id {
		return l.segs[i]
	}
	return nil
}

// Release deletes the segments before segment keep, oldest first, except the active one, and returns the
// bytes it freed. The caller decides keep from the records it still references: reading Active first and
// keeping no later segment than that. A segment that cannot be deleted stays, with every later one, until
// the next Release: deleting strictly in order keeps a record that speaks of earlier ones at least as long.
func (l *Log) Release(keep uint64) (freed int64, err error) {
	l.releaseMu.Lock()
	defer l.releaseMu.Unlock()
	active := l.Active()
	l.segMu.RLock()
	var gone []*segment
	for _, seg := range l.segs {
		if seg.id >= keep || seg.id == active {
			break
		}
		gone = append(gone, seg)
	}
	l.segMu.RUnlock()
	if len(gone) == 0 {
		return 0, nil
	}
	deleted := 0
	for _, seg := range gone {
		if e := l.fs.Remove(seg.path); e != nil && !errors.Is(e, fs.ErrNotExist) {
			err = fmt.Errorf("delete %s: %w", seg.path, e)
			break
		}
		seg.f.Close()
		freed += seg.size
		deleted++
	}
	if deleted > 0 {
		l.segMu.Lock()
		l.segs = l.segs[deleted:]
		l.segMu.Unlock()
	}
	return freed, errors.Join(err, l.fs.SyncDir(l.dir))
}

// Close waits for a sync under way and closes the segment files. Appends must have stopped.
func (l *Log) Close() {
	l.mu.Lock()
	for l.syncing {
		l.cond.Wait()
	}
	l.mu.Unlock()
	l.segMu.Lock()
	for _, seg := range l.segs {
		seg.f.Close()
	}
	l.segs = nil
	l.segMu.Unlock()
}
