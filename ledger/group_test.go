package ledger

import (
	"errors"
	"io/fs"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
)

// groupLedger is a ledger on a MemFS under vfs.Faults, whose Floor tells stamped of every Record it stamps. A
// Record stamps its entries and queues its lines without letting go of the ledger's lock, so once a Record
// has been stamped, a sync under way cannot end (it takes the lock back to settle its Records) before that
// Record's lines are queued.
type groupLedger struct {
	*Ledger
	mem     *vfs.MemFS
	fsys    *faulty
	stamped chan struct{}
}

const groupDir = "/ledger"

func openGroupLedger(t *testing.T, opt Options) *groupLedger {
	t.Helper()
	g := &groupLedger{mem: vfs.NewMemFS(), stamped: make(chan struct{}, 1024)}
	g.fsys = newFaultyOn(g.mem)
	opt.Floor = func() time.Time {
		g.stamped <- struct{}{}
		return time.Time{}
	}
	g.Ledger = openLedger(t, g.fsys, groupDir, at(t0), opt)
	return g
}

// recordAsGroup records lead, holds its fdatasync of seg, records each of waiters at once meanwhile, and once
// they are all queued calls whileHeld and lets the sync go on. It returns the error of lead's Record and of
// each waiter's, and in durable whether each waiter's entries survived a power cut right after its Record
// returned. No Record may be under way when it is called.
func (g *groupLedger) recordAsGroup(t *testing.T, seg string, lead Entry, waiters [][]Entry, whileHeld func()) (leadErr error, errs []error, durable []bool) {
	t.Helper()
	for len(g.stamped) > 0 {
		<-g.stamped
	}
	held, release := g.fsys.holdNext(vfs.OpDatasync, seg)
	t.Cleanup(release) // before the ledger's Close, which waits for the sync, when the test stops early
	led := make(chan error, 1)
	go func() { led <- g.Record(lead) }()
	<-held
	if !g.mu.TryLock() { // nothing but lead's Record has touched the ledger
		t.Fatal("a Record holds the ledger's lock through its fdatasync: no other can queue its lines meanwhile")
	}
	g.mu.Unlock()
	errs, durable = make([]error, len(waiters)), make([]bool, len(waiters))
	var wg sync.WaitGroup
	for i, w := range waiters {
		wg.Go(func() {
			if errs[i] = g.Record(w...); errs[i] == nil {
				durable[i] = holdsAll(t, g.mem.Crash(vfs.CrashOptions{}), w)
			}
		})
	}
	for range 1 + len(waiters) {
		<-g.stamped
	}
	whileHeld()
	release()
	wg.Wait()
	return <-led, errs, durable
}

// holdsAll reports whether the ledger on fsys lists every one of entries.
func holdsAll(t *testing.T, fsys vfs.FS, entries []Entry) bool {
	var keys []string
	for e, err := range Read(fsys, groupDir, Filter{}) {
		if err != nil {
			t.Error(err)
		}
		keys = append(keys, e.Key)
	}
	for _, e := range entries {
		if !slices.Contains(keys, e.Key) {
			return false
		}
	}
	return true
}

// oneEach is a Record's entries for each of the numbers from to to.
func oneEach(from, to int) [][]Entry {
	var out [][]Entry
	for n := from; n <= to; n++ {
		out = append(out, []Entry{ledgerEntry("a", n)})
	}
	return out
}

// sortedKeys is keysOn, sorted: Records that share a write have no order among them.
func sortedKeys(t *testing.T, g *groupLedger) []int {
	t.Helper()
	keys := keysOn(t, g.fsys, groupDir)
	slices.Sort(keys)
	return keys
}

// TestLedgerConcurrentRecordsShareOneSync: Records that come while a sync is under way queue their lines;
// once it ends, they share one write and one fdatasync, and each returns once its line is durable.
func TestLedgerConcurrentRecordsShareOneSync(t *testing.T) {
	g := openGroupLedger(t, Options{})
	seg := segmentPath(groupDir, 1)
	leadErr, errs, durable := g.recordAsGroup(t, seg, ledgerEntry("a", 0), oneEach(1, 5), func() {})
	if err := errors.Join(append(errs, leadErr)...); err != nil {
		t.Fatal(err)
	}
	if w, s := g.fsys.count(vfs.OpWrite, seg), g.fsys.count(vfs.OpDatasync, seg); w != 2 || s != 2 {
		t.Errorf("%d writes and %d fdatasyncs of the segment, want 2 and 2: the first Record's, then one for the 5 that came meanwhile", w, s)
	}
	if slices.Contains(durable, false) {
		t.Errorf("durable when Record returned: %v", durable)
	}
	if got := sortedKeys(t, g); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) {
		t.Errorf("read %v", got)
	}
}

// TestLedgerFailedSharedLinesRetireTheSegment: when the write or the fdatasync that Records share fails, every
// one of them returns the error; the segment is never written or synced again, and the Records again go to a
// new segment and succeed. Each entry is read back once, or twice when the failed lines could not be taken
// back, and once after a power cut.
func TestLedgerFailedSharedLinesRetireTheSegment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault vfs.Fault
		kinds []vfs.OpKind
		want  syscall.Errno
		read  []int // sorted
	}{
		{"short write", vfs.ShortWrite, []vfs.OpKind{vfs.OpWrite}, syscall.ENOSPC, []int{0, 1, 2, 3, 4}},
		{"fdatasync", vfs.EIO, []vfs.OpKind{vfs.OpDatasync}, syscall.EIO, []int{0, 1, 2, 3, 4}},
		{"fdatasync, truncate fails", vfs.EIO, []vfs.OpKind{vfs.OpDatasync, vfs.OpTruncate}, syscall.EIO, []int{0, 1, 1, 2, 2, 3, 3, 4, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := openGroupLedger(t, Options{})
			seg := segmentPath(groupDir, 1)
			waiters := oneEach(1, 4)
			// The held sync started before the fault: only the waiters' shared write and sync meet it.
			leadErr, errs, _ := g.recordAsGroup(t, seg, ledgerEntry("a", 0), waiters, func() { g.fsys.failKinds(tc.fault, tc.kinds...) })
			g.fsys.Repair()
			if leadErr != nil {
				t.Fatal(leadErr)
			}
			for i, err := range errs {
				var failed *fs.PathError
				if !errors.As(err, &failed) || !errors.Is(err, tc.want) {
					t.Errorf("Record of waiter %d: %v, want the fault (%v)", i, err, tc.want)
				}
			}
			writes, syncs := g.fsys.count(vfs.OpWrite, seg), g.fsys.count(vfs.OpDatasync, seg)
			for _, w := range waiters {
				if err := g.Record(w...); err != nil {
					t.Fatal(err)
				}
			}
			if g.fsys.count(vfs.OpWrite, seg) != writes || g.fsys.count(vfs.OpDatasync, seg) != syncs {
				t.Error("the segment whose shared lines failed was written or synced again")
			}
			if n := g.fsys.count(vfs.OpWrite, segmentPath(groupDir, 2)); n != len(waiters) {
				t.Errorf("%d writes to a new segment, want %d", n, len(waiters))
			}
			if got := sortedKeys(t, g); !slices.Equal(got, tc.read) {
				t.Errorf("read %v, want %v", got, tc.read)
			}
			if got := keysOn(t, g.mem.Crash(vfs.CrashOptions{}), groupDir); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
				t.Errorf("after a power cut, read %v, want [0 1 2 3 4]", got)
			}
			if u, disk := g.Usage(), diskUsage(t, g.mem, groupDir); u != disk {
				t.Errorf("Usage %d, the segments weigh %d", u, disk)
			}
		})
	}
}

// TestLedgerSharedLinesKeepToTheSegmentSize: lines queued together that would take the segment past its size
// go to the next one; no line is lost or written twice.
func TestLedgerSharedLinesKeepToTheSegmentSize(t *testing.T) {
	g := openGroupLedger(t, Options{Limit: 8 * minSeg}) // segments of minSeg
	var waiters [][]Entry
	for n := 1; n < 200; n += 16 {
		var batch []Entry
		for i := range 16 {
			batch = append(batch, ledgerEntry("a", n+i))
		}
		waiters = append(waiters, batch)
	}
	leadErr, errs, durable := g.recordAsGroup(t, segmentPath(groupDir, 1), ledgerEntry("a", 0), waiters, func() {})
	if err := errors.Join(append(errs, leadErr)...); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(durable, false) {
		t.Errorf("durable when Record returned: %v", durable)
	}
	entries, err := g.mem.ReadDir(groupDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 2 {
		t.Fatalf("%d segments, want the queued lines over 2", len(entries))
	}
	for _, e := range entries {
		if fi, err := e.Info(); err != nil || fi.Size() > minSeg {
			t.Errorf("segment %s: %d bytes, more than %d (%v)", e.Name(), fi.Size(), minSeg, err)
		}
	}
	want := make([]int, 1+16*len(waiters))
	for i := range want {
		want[i] = i
	}
	if got := sortedKeys(t, g); !slices.Equal(got, want) {
		t.Errorf("read %v, want 0 to %d once each", got, len(want)-1)
	}
}

// TestLedgerEntriesWaitsForRecordsUnderWay: Entries called while Records wait for a shared sync reads once
// they have finished, and reads their entries (a digest made up to now lists every entry stamped before).
func TestLedgerEntriesWaitsForRecordsUnderWay(t *testing.T) {
	g := openGroupLedger(t, Options{})
	waiting, returned, read := make(chan struct{}), make(chan struct{}), make(chan []string)
	g.entriesWait = func() { close(waiting) }
	leadErr, errs, _ := g.recordAsGroup(t, segmentPath(groupDir, 1), ledgerEntry("a", 0), oneEach(1, 5), func() {
		go func() {
			entries := g.Entries(Filter{})
			close(returned)
			var keys []string
			for e, err := range entries {
				if err != nil {
					t.Error(err)
				}
				keys = append(keys, e.Key)
			}
			read <- keys
		}()
		select {
		case <-waiting:
		case <-returned:
			t.Error("Entries returned while Records were under way")
		}
	})
	if err := errors.Join(append(errs, leadErr)...); err != nil {
		t.Fatal(err)
	}
	keys := <-read
	for n := range 6 {
		if !slices.Contains(keys, ledgerEntry("a", n).Key) {
			t.Errorf("Entries did not read entry %d", n)
		}
	}
}
