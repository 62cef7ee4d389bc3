package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/wiv/out_wivaudit/vfs"
)

// faulty is a file system under vfs.Faults, and how often each file was written and synced.
type faulty struct {
	*vfs.Faults
	mu    sync.Mutex
	calls map[vfs.Op]int // by kind and path (Index 0)
	hold  vfs.Op         // the operation to hold (Index: its number among those of its kind and path)
	held  chan struct{}  // closed once hold has started
	free  chan struct{}  // hold goes on once it is closed
}

func newFaulty() *faulty { return newFaultyOn(vfs.OS) }

func newFaultyOn(inner vfs.FS) *faulty {
	f := &faulty{Faults: vfs.NewFaults(inner), calls: map[vfs.Op]int{}}
	f.Hook(func(op vfs.Op) error {
		f.mu.Lock()
		key := vfs.Op{Kind: op.Kind, Path: op.Path}
		f.calls[key]++
		key.Index = int64(f.calls[key])
		hold, held, free := key == f.hold, f.held, f.free
		f.mu.Unlock()
		if hold {
			close(held)
			<-free
		}
		return nil
	})
	return f
}

// holdNext holds the next operation of a kind on path until release is called; held is closed once it started.
func (f *faulty) holdNext(kind vfs.OpKind, path string) (held <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = vfs.Op{Kind: kind, Path: path, Index: int64(f.calls[vfs.Op{Kind: kind, Path: path}] + 1)}
	f.held, f.free = make(chan struct{}), make(chan struct{})
	return f.held, sync.OnceFunc(func() { close(f.free) })
}

// failKinds fails every operation of the given kinds from now on, with fault, until Repair.
func (f *faulty) failKinds(fault vfs.Fault, kinds ...vfs.OpKind) {
	f.Only(func(op vfs.Op) bool { return slices.Contains(kinds, op.Kind) })
	f.FailFrom(f.Ops()+1, fault)
}

func (f *faulty) count(kind vfs.OpKind, path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[vfs.Op{Kind: kind, Path: path}]
}

// diskUsage is what the segments in dir weigh.
func diskUsage(t *testing.T, fsys vfs.FS, dir string) int64 {
	t.Helper()
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// keysOf reads the ledger in dir and returns the numbers of its entries' keys (as ledgerEntry made them), in
// order; reading must not fail.
func keysOf(t *testing.T, dir string) []int {
	t.Helper()
	return keysOn(t, vfs.OS, dir)
}

// keysOn is keysOf on fsys.
func keysOn(t *testing.T, fsys vfs.FS, dir string) []int {
	t.Helper()
	var out []int
	for e, err := range Read(fsys, dir, Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		var n int
		fmt.Sscanf(strings.TrimPrefix(e.Key, "a/org-audit-logs-"), "%d", &n)
		out = append(out, n-1769611845000)
	}
	return out
}

// TestLedgerFailedLineRetiresTheSegment: when the write or the fdatasync of a line fails, whether the truncate
// that takes it back works or fails too, Record returns the error and never panics (it dereferenced a nil
// file when the truncate failed); the segment is never written or synced again (after a failed fdatasync, one
// that succeeds proves nothing about what was written before it), the next Record starts a new segment, and
// the entry recorded again is read back: once, or twice when a whole line could not be taken back, never not
// at all; a partial line left behind is not read.
func TestLedgerFailedLineRetiresTheSegment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault vfs.Fault
		kinds []vfs.OpKind
		want  []int
	}{
		{"short write", vfs.ShortWrite, []vfs.OpKind{vfs.OpWrite}, []int{0, 1, 2}},
		{"short write, truncate fails", vfs.ShortWrite, []vfs.OpKind{vfs.OpWrite, vfs.OpTruncate}, []int{0, 1, 2}},
		{"fdatasync", vfs.EIO, []vfs.OpKind{vfs.OpDatasync}, []int{0, 1, 2}},
		{"fdatasync, truncate fails", vfs.EIO, []vfs.OpKind{vfs.OpDatasync, vfs.OpTruncate}, []int{0, 1, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fsys := newFaulty()
			l := openLedger(t, fsys, dir, at(t0), Options{})
			if err := l.Record(ledgerEntry("a", 0)); err != nil {
				t.Fatal(err)
			}
			fsys.failKinds(tc.fault, tc.kinds...)
			var failed *fs.PathError
			if err := l.Record(ledgerEntry("a", 1)); !errors.As(err, &failed) {
				t.Fatalf("Record: %v, want the fault", err)
			}
			fsys.Repair()
			first := segmentPath(dir, 1)
			writes, syncs := fsys.count(vfs.OpWrite, first), fsys.count(vfs.OpDatasync, first)
			for i := 1; i <= 2; i++ {
				if err := l.Record(ledgerEntry("a", i)); err != nil {
					t.Fatal(err)
				}
			}
			if fsys.count(vfs.OpWrite, first) != writes || fsys.count(vfs.OpDatasync, first) != syncs {
				t.Error("the segment whose line failed was written or synced again")
			}
			if got := keysOf(t, dir); !slices.Equal(got, tc.want) {
				t.Errorf("read %v, want %v", got, tc.want)
			}
			if got := readAll(t, dir, Filter{}); len(got) > 0 && fsys.count(vfs.OpWrite, segmentPath(dir, 2)) != 2 {
				t.Error("the entries after the failure are not in a new segment")
			}
			if u, disk := l.Usage(), diskUsage(t, vfs.OS, dir); u != disk {
				t.Errorf("Usage %d, the segments weigh %d", u, disk)
			}
		})
	}
}

// TestLedgerSegmentThatCouldNotStart: a new segment whose name cannot be made durable is not used, and the
// next Record starts another.
func TestLedgerSegmentThatCouldNotStart(t *testing.T) {
	dir := t.TempDir()
	fsys := newFaulty()
	l := openLedger(t, fsys, dir, at(t0), Options{})
	fsys.failKinds(vfs.EIO, vfs.OpSyncDir)
	if err := l.Record(ledgerEntry("a", 0)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Record: %v, want EIO", err)
	}
	fsys.Repair()
	if err := l.Record(ledgerEntry("a", 0)); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, dir); !slices.Equal(got, []int{0}) {
		t.Errorf("read %v", got)
	}
}

// TestLedgerFolderRemovedWhileInUse: a line written into a segment removed with its folder (Store_Dir removed
// while in use) is not reported as recorded; once the parent folder is back, the next Record makes the
// ledger's folder again and records there.
func TestLedgerFolderRemovedWhileInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), Folder)
	l := openLedger(t, vfs.OS, dir, at(t0), Options{})
	if err := l.Record(ledgerEntry("a", 0)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(ledgerEntry("a", 1)); err == nil || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("Record into a deleted segment: %v", err)
	}
	if err := l.Record(ledgerEntry("a", 1)); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, dir); !slices.Equal(got, []int{1}) {
		t.Errorf("read %v, want [1]", got)
	}
}
