package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/wiv/out_wivaudit/vfs"
)

const dir = "/wal"

// newFS is a MemFS holding an empty, durable log folder, behind a Faults.
func newFS(t *testing.T) (*vfs.Faults, *vfs.MemFS) {
	t.Helper()
	m := vfs.NewMemFS()
	if err := m.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m.SyncDir("/")
	return vfs.NewFaults(m), m
}

// replayed is what reading a log back found.
type replayed struct {
	records []string
	at      []Pos
	damaged []string
}

func (r *replayed) replay() Replay {
	return Replay{
		Record: func(at Pos, record []byte) {
			r.records = append(r.records, string(record))
			r.at = append(r.at, at)
		},
		Damaged: func(region []byte) { r.damaged = append(r.damaged, string(region)) },
	}
}

func openLog(t *testing.T, fsys vfs.FS, opt Options) (*Log, *replayed, Replayed) {
	t.Helper()
	opt.FS = fsys
	var r replayed
	l, rep, err := Open(dir, opt, r.replay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l, &r, rep
}

func appendOne(t *testing.T, l *Log, records ...string) []Pos {
	t.Helper()
	var recs [][]byte
	for _, r := range records {
		recs = append(recs, []byte(r))
	}
	var got []Pos
	if _, err := l.Append(recs, func(at []Pos) { got = at }); err != nil {
		t.Fatal(err)
	}
	return got
}

func segments(t *testing.T, fsys vfs.FS) []uint64 {
	t.Helper()
	ids, err := segmentIDs(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// Concurrent appends are each durable once acknowledged, in one order: what a power cut leaves, read back,
// holds every acknowledged record once, at the position its apply was given, each appender's in its order.
func TestAppendsAreDurableInOrder(t *testing.T) {
	f, m := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 300})
	const appenders, appends = 4, 30
	var mu sync.Mutex
	where := map[string]Pos{}
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range appends {
				r := fmt.Sprintf("%d.%03d", g, i)
				if _, err := l.Append([][]byte{[]byte(r)}, func(at []Pos) {
					mu.Lock()
					where[r] = at[0]
					mu.Unlock()
				}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if f.Count(vfs.OpDatasync) >= appenders*appends {
		t.Logf("%d syncs for %d appends: no group commit this run", f.Count(vfs.OpDatasync), appenders*appends)
	}
	for r, at := range where {
		if _, rec, err := l.Read(at, len(r), nil); err != nil || string(rec) != r {
			t.Errorf("Read(%v) = %q, %v; want %q", at, rec, err, r)
		}
	}
	_, back, rep := openLog(t, m.Crash(vfs.CrashOptions{TornTail: true}), Options{SegmentSize: 300})
	if len(back.records) != appenders*appends || rep.TornTail != 0 || len(back.damaged) > 0 {
		t.Fatalf("read back %d records, torn tail %d, damaged %q; want %d", len(back.records), rep.TornTail, back.damaged, appenders*appends)
	}
	last := map[string]string{}
	for i, r := range back.records {
		if where[r] != back.at[i] {
			t.Errorf("%s read back at %v, appended at %v", r, back.at[i], where[r])
		}
		g, _, _ := strings.Cut(r, ".")
		if r <= last[g] {
			t.Errorf("%s read back after %s", r, last[g])
		}
		last[g] = r
	}
}

// A failed fdatasync retires its segment: an append written into it while the failing sync ran fails too,
// the segment is never synced again, and the next append goes to a new segment.
func TestFailedSyncRetiresTheSegment(t *testing.T) {
	var written atomic.Int32
	bWritten := make(chan struct{})
	f, _ := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1 << 20, AfterWrite: func() {
		if written.Add(1) == 2 {
			close(bWritten)
		}
	}})
	syncing, fail := make(chan struct{}), make(chan struct{})
	var syncs atomic.Int32
	var mu sync.Mutex
	var synced []string
	f.Hook(func(op vfs.Op) error {
		if op.Kind != vfs.OpDatasync {
			return nil
		}
		mu.Lock()
		synced = append(synced, op.Path)
		mu.Unlock()
		if syncs.Add(1) == 1 {
			close(syncing)
			<-fail
			return &fs.PathError{Op: "fdatasync", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	})
	errA, errB := make(chan error), make(chan error)
	go func() { _, err := l.Append([][]byte{[]byte("A")}, nil); errA <- err }()
	<-syncing
	go func() { _, err := l.Append([][]byte{[]byte("B")}, nil); errB <- err }()
	<-bWritten
	close(fail)
	if err := <-errA; err == nil {
		t.Error("A was acknowledged though its sync failed")
	}
	if err := <-errB; err == nil {
		t.Error("B, written into the segment whose sync failed, was acknowledged")
	}
	at := appendOne(t, l, "C")
	mu.Lock()
	defer mu.Unlock()
	if at[0].Seg == 1 || synced[0] != filepath.Join(dir, SegmentName(1)) || slices.Contains(synced[1:], synced[0]) {
		t.Errorf("C went to segment %d; syncs %v: the failed segment must never be synced again", at[0].Seg, synced)
	}
}

// A sync round syncs the segment its appends were written to, also when the log has moved on meanwhile.
func TestASyncRoundSyncsTheSegmentOfItsAppends(t *testing.T) {
	f, _ := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1 << 20})
	appendOne(t, l, "x")
	old := l.active
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	var synced []string
	f.Hook(func(op vfs.Op) error {
		if op.Kind == vfs.OpDatasync {
			synced = append(synced, op.Path)
		}
		return nil
	})
	r := &request{seg: old}
	l.mu.Lock()
	l.queue = append(l.queue, r)
	l.syncRoundLocked()
	l.mu.Unlock()
	if !r.done || !slices.Equal(synced, []string{old.path}) {
		t.Errorf("synced %v for an append to %s", synced, old.path)
	}
}

// A failed write retires the segment too: what it stored is never followed by another append.
func TestFailedWriteRetiresTheSegment(t *testing.T) {
	f, _ := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1 << 20})
	appendOne(t, l, "1")
	f.Only(func(op vfs.Op) bool { return op.Kind == vfs.OpWrite || op.Kind == vfs.OpTruncate })
	f.FailFrom(f.Ops()+1, vfs.ShortWrite)
	if _, err := l.Append([][]byte{[]byte(strings.Repeat("x", 100))}, nil); err == nil {
		t.Fatal("a torn write was acknowledged")
	}
	f.Repair()
	if at := appendOne(t, l, "2"); at[0].Seg == 1 {
		t.Errorf("the next append went to the segment of the torn write")
	}
}

// A segment whose creation could not be made durable nor undone leaves its name taken: the next roll takes
// the next one.
func TestFailedCreationTakesTheNextName(t *testing.T) {
	f, _ := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1 << 20})
	f.Only(func(op vfs.Op) bool { return op.Kind == vfs.OpSyncDir || op.Kind == vfs.OpRemove })
	f.FailFrom(f.Ops()+1, vfs.EIO)
	if err := l.Roll(); err == nil {
		t.Fatal("rolled to a segment whose name is not durable")
	}
	f.Repair()
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if got := segments(t, f); !slices.Equal(got, []uint64{1, 2, 3}) || l.Active() != 3 {
		t.Errorf("segments %v, active %d", got, l.Active())
	}
}

// Release deletes segments oldest first, never the active one nor one from keep on; when one cannot be
// deleted, the later ones stay too until the next Release.
func TestReleaseGoesInOrder(t *testing.T) {
	f, _ := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1})
	for i := range 4 {
		appendOne(t, l, fmt.Sprint(i)) // one segment each: 1 to 4
	}
	f.Only(func(op vfs.Op) bool { return op.Kind == vfs.OpRemove && strings.HasSuffix(op.Path, SegmentName(1)) })
	f.FailAt(f.Ops()+1, vfs.EIO)
	if freed, err := l.Release(3); err == nil || freed != 0 {
		t.Errorf("Release = %d, %v; want nothing freed and the error", freed, err)
	}
	if got := segments(t, f); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Errorf("segments %v after a failed delete of the first", got)
	}
	if freed, err := l.Release(3); err != nil || freed != 2*int64(HeaderLen+1) {
		t.Errorf("Release = %d, %v", freed, err)
	}
	if freed, err := l.Release(100); err != nil || freed != HeaderLen+1 || !slices.Equal(segments(t, f), []uint64{4}) {
		t.Errorf("Release past the active one = %d, %v, segments %v", freed, err, segments(t, f))
	}
}

// Read tells damage (a frame that fails its checksum, with its bytes) from a read error.
func TestReadTellsDamageFromReadErrors(t *testing.T) {
	f, m := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1 << 20})
	at := appendOne(t, l, "intact", "flipped")
	file, _ := m.OpenFile(filepath.Join(dir, SegmentName(1)), os.O_WRONLY, 0)
	file.WriteAt([]byte("F"), at[1].Off+HeaderLen)
	file.Close()
	if frame, _, err := l.Read(at[1], len("flipped"), nil); !errors.Is(err, ErrCorrupt) || !bytes.Contains(frame, []byte("Flipped")) {
		t.Errorf("Read of a damaged record: %q, %v", frame, err)
	}
	f.Only(func(op vfs.Op) bool { return op.Kind == vfs.OpRead })
	f.FailAt(f.Ops()+1, vfs.EIO)
	if _, _, err := l.Read(at[0], len("intact"), nil); err == nil || errors.Is(err, ErrCorrupt) {
		t.Errorf("Read with a read error: %v", err)
	}
	if _, rec, err := l.Read(at[0], len("intact"), nil); err != nil || string(rec) != "intact" {
		t.Errorf("Read again: %q, %v", rec, err)
	}
}

// Open reads every segment back: intact records in order, damaged regions with their bytes, torn tails
// counted, names of segments that are not files reported; new segments take ids past every one seen and
// MinID.
func TestOpenReadsTheLogBack(t *testing.T) {
	f, m := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1 << 20})
	appendOne(t, l, "first", "second", "third")
	l.Close()
	path := filepath.Join(dir, SegmentName(1))
	data, _ := vfs.ReadFile(m, path)
	data[bytes.Index(data, []byte("second"))] = 'S'
	data = append(data, AppendFrame(nil, []byte("cut short"))[:15]...)
	file, _ := m.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	file.Write(data)
	file.Close()
	m.Mkdir(filepath.Join(dir, SegmentName(7)), 0o700)
	l2, back, rep := openLog(t, f, Options{SegmentSize: 1 << 20, MinID: 5})
	if !slices.Equal(back.records, []string{"first", "third"}) || len(back.damaged) != 1 || !strings.Contains(back.damaged[0], "Second") {
		t.Errorf("records %q, damaged %q", back.records, back.damaged)
	}
	if rep.TornTail != 15 || !slices.Equal(rep.Strays, []string{filepath.Join(dir, SegmentName(7))}) || rep.Size != int64(len(data)) {
		t.Errorf("replayed %+v", rep)
	}
	if l2.Active() != 8 {
		t.Errorf("new segment %d, want 8", l2.Active())
	}
}

// A segment that cannot be read fails Open and stays: its records may be the only copy of acknowledged ones.
func TestOpenFailsOnAReadError(t *testing.T) {
	f, _ := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1 << 20})
	appendOne(t, l, "1")
	l.Close()
	f.Only(func(op vfs.Op) bool { return op.Kind == vfs.OpRead })
	f.FailFrom(f.Ops()+1, vfs.EIO)
	if _, _, err := Open(dir, Options{FS: f}, (&replayed{}).replay()); err == nil {
		t.Fatal("Open succeeded")
	}
	f.Repair()
	_, back, _ := openLog(t, f, Options{SegmentSize: 1 << 20})
	if !slices.Equal(back.records, []string{"1"}) {
		t.Errorf("records %q", back.records)
	}
}

// Scan reads a log that may be in use, without opening it.
func TestScan(t *testing.T) {
	f, _ := newFS(t)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1})
	appendOne(t, l, "1")
	appendOne(t, l, "2")
	var r replayed
	if err := Scan(f, dir, r.replay()); err != nil || !slices.Equal(r.records, []string{"1", "2"}) {
		t.Errorf("Scan: %q, %v", r.records, err)
	}
	if err := Scan(f, "/none", r.replay()); err != nil {
		t.Errorf("Scan of no folder: %v", err)
	}
}

// A log whose new segment cannot be created (the disk full) still opens; appends fail until it can be.
func TestOpenWithoutRoomForANewSegment(t *testing.T) {
	f, _ := newFS(t)
	f.Only(func(op vfs.Op) bool { return op.Kind == vfs.OpCreate })
	f.FailFrom(1, vfs.ENOSPC)
	l, _, _ := openLog(t, f, Options{SegmentSize: 1 << 20})
	if _, err := l.Append([][]byte{[]byte("1")}, nil); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Append on a full disk: %v", err)
	}
	if freed, err := l.Release(l.Active()); freed != 0 || err != nil {
		t.Errorf("Release = %d, %v", freed, err)
	}
	f.Repair()
	if at := appendOne(t, l, "2"); at[0].Seg == 0 {
		t.Errorf("appended at %v", at)
	}
}
