package wal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/wiv/out_wivaudit/vfs"
)

// Replay receives what reading the log back finds, in log order.
type Replay struct {
	// Record is called with each intact record and where it lies. record is valid only during the call.
	Record func(at Pos, record []byte)
	// Damaged is called with the bytes of each region that fails its checksum and is followed by an intact
	// frame.
	Damaged func(region []byte)
}

// Replayed sums up what Open read.
type Replayed struct {
	Size     int64    // bytes of the segments read
	TornTail int64    // bytes of appends cut short at the end of segments: never acknowledged
	Strays   []string // names of segments that are not files: left to the caller to move away
}

// Open reads the log in dir (which must exist) back through r, segment by segment, and opens it for appends,
// which go to a new segment. A segment that cannot be read fails Open, and stays for the next try: its
// records may be the only copy of acknowledged ones. A new segment that cannot be created (the disk full) does
// not: the first append tries again, and fails with the reason until it can.
func Open(dir string, opt Options, r Replay) (*Log, Replayed, error) {
	if opt.FS == nil {
		opt.FS = vfs.OS
	}
	l := &Log{fs: opt.FS, dir: dir, opt: opt, nextID: max(opt.MinID, 1)}
	l.segSize.Store(opt.SegmentSize)
	l.cond = sync.NewCond(&l.mu)
	var rep Replayed
	ids, err := segmentIDs(l.fs, dir)
	if err != nil {
		return nil, rep, err
	}
	for _, id := range ids {
		l.nextID = max(l.nextID, id+1)
		path := filepath.Join(dir, SegmentName(id))
		if fi, err := l.fs.Lstat(path); err == nil && !fi.Mode().IsRegular() {
			rep.Strays = append(rep.Strays, path)
			continue
		}
		seg, data, err := l.readSegment(id, path)
		for try := 1; err != nil && try < ReadTries && !errors.Is(err, fs.ErrNotExist); try++ {
			seg, data, err = l.readSegment(id, path)
		}
		if err != nil {
			l.Close()
			return nil, rep, err
		}
		l.segs = append(l.segs, seg)
		rep.Size += seg.size
		rep.TornTail += int64(replay(id, data, r))
	}
	l.mu.Lock()
	if l.rollLocked() != nil {
		l.needRoll = true
	}
	l.mu.Unlock()
	return l, rep, nil
}

// ReadTries is how often Open reads a segment that gives a read error before it fails: a transient error (EIO
// from a network volume, a sector a retry remaps) often passes at once, and a failed Open stops Fluent Bit.
const ReadTries = 3

func (l *Log) readSegment(id uint64, path string) (*segment, []byte, error) {
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, err // a *fs.PathError: it names the operation and the segment
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &segment{id: id, path: path, f: f, size: int64(len(data))}, data, nil
}

// Scan reads the log in dir back through r as a reader that holds no lock may: the log may be in use, and a
// segment deleted since the folder was listed is skipped. A folder that does not exist is an empty log.
func Scan(fsys vfs.FS, dir string, r Replay) error {
	ids, err := segmentIDs(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, id := range ids {
		data, err := vfs.ReadFile(fsys, filepath.Join(dir, SegmentName(id)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		replay(id, data, r)
	}
	return nil
}

// segmentIDs lists the segments in dir, oldest first.
func segmentIDs(fsys vfs.FS, dir string) ([]uint64, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, e := range entries {
		if id, ok := ParseSegmentName(e.Name()); ok {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// replay passes a segment's records and damaged regions on, and returns the length of its torn tail.
func replay(id uint64, data []byte, r Replay) int {
	return ScanFrames(data, func(off int, record []byte) { r.Record(Pos{id, int64(off)}, record) }, r.Damaged)
}
