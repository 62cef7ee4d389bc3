package buffer

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
	"github.com/wiv/out_wivaudit/wal"
)

// The store under file-system faults (vfs.Faults over a vfs.MemFS). Each defect test here makes one file
// operation fail where the store used to lose, duplicate or strand records, or leave them to a power loss;
// each failed before its fix.

// memStore opens a store in a folder of a new MemFS behind a Faults; the test sets the rules.
func memStore(t *testing.T, o Options) (*Store, *vfs.Faults, *vfs.MemFS, string) {
	t.Helper()
	m := vfs.NewMemFS()
	f := vfs.NewFaults(m)
	o.FS = f
	return open(t, "/store", o), f, m, "/store"
}

// rule looks at an operation before it runs; an error fails it.
type rule func(op vfs.Op) error

// on makes f apply the rules to every operation, in turn (none: every operation goes through).
func on(f *vfs.Faults, rules ...rule) {
	f.Hook(func(op vfs.Op) error {
		for _, r := range rules {
			if err := r(op); err != nil {
				return err
			}
		}
		return nil
	})
}

// once fails with fault the first operation of kind whose path match accepts.
func once(f *vfs.Faults, kind vfs.OpKind, match func(string) bool, fault vfs.Fault) rule {
	var done atomic.Bool
	return func(op vfs.Op) error {
		if op.Kind == kind && match(op.Path) && done.CompareAndSwap(false, true) {
			f.FailAt(op.Index, fault)
		}
		return nil
	}
}

// recorder keeps every operation, in order.
type recorder struct {
	mu  sync.Mutex
	ops []vfs.Op
}

func (r *recorder) rule(op vfs.Op) error {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
	return nil
}

// index is the position of the first operation of kind whose path match accepts, or -1.
func (r *recorder) index(kind vfs.OpKind, match func(string) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.IndexFunc(r.ops, func(op vfs.Op) bool { return op.Kind == kind && match(op.Path) })
}

func isSegment(path string) bool {
	_, ok := wal.ParseSegmentName(filepath.Base(path))
	return ok && filepath.Base(filepath.Dir(path)) == walFolder
}

func in(dir string) func(string) bool { return func(p string) bool { return filepath.Dir(p) == dir } }

func is(path string) func(string) bool { return func(p string) bool { return p == path } }

func hasSuffix(suffix string) func(string) bool {
	return func(p string) bool { return strings.HasSuffix(p, suffix) }
}

func segmentFiles(t *testing.T, fsys vfs.FS, dir string) []string {
	t.Helper()
	entries, err := fsys.ReadDir(filepath.Join(dir, walFolder))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(dir, walFolder, e.Name()))
	}
	return out
}

// TestEveryFileOperationGoesThroughTheFS runs the store in a MemFS, under a name that does not exist on the
// disk: an operation that bypassed the FS would fail, or leave the name on the disk.
func TestEveryFileOperationGoesThroughTheFS(t *testing.T) {
	root := "/no-such-folder/store"
	if _, err := os.Stat(filepath.Dir(root)); err == nil {
		t.Skip(filepath.Dir(root) + " exists here")
	}
	f := vfs.NewFaults(vfs.NewMemFS())
	o := opts(1<<20, &clock{t: t0})
	o.FS = f
	s := open(t, root, o)
	commit(t, s, "a/org:1", "b/org:2", "c/org:3")
	s.Rotate(time.Time{})
	var batches []*Batch
	for _, r := range s.Seal(s.TakeClosed(), naming, joinLines) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		batches = append(batches, r.Batch)
	}
	if got := readObject(t, batches[0]); got == "" {
		t.Error("empty object")
	}
	if _, err := batches[0].ObjectSHA256(); err != nil {
		t.Error(err)
	}
	if s.ObjectGone(batches[0]) {
		t.Error("ObjectGone for an object in place")
	}
	for _, step := range []func() error{
		func() error { return s.Rekey(batches[0], "other", batches[0].KeyMs) },
		func() error { return s.SaveAttempt(batches[0]) },
		func() error { return s.Remove(batches[0]) },
		func() error { return s.Quarantine(batches[1]) },
		func() error { _, err := s.DeadLetter([]byte("{}\n")); return err },
		func() error { return s.WriteFileIn("digests", "x", []byte("x")) },
		func() error { _, err := s.ReadFileIn("digests", "x"); return err },
		func() error { return s.WriteFile("y", []byte("y")) },
		func() error { _, err := s.ReadFile("y"); return err },
	} {
		if err := step(); err != nil {
			t.Error(err)
		}
	}
	if !s.ObjectGone(batches[0]) || !s.Present() {
		t.Error("ObjectGone or Present is wrong")
	}
	commit(t, s, "a/org:4")
	s.Close()
	s2, rec, err := Open(root, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(rec.Batches) != 1 || rec.Pending != 1 {
		t.Errorf("recovered %d batches, %d pending; want 1 and 1", len(rec.Batches), rec.Pending)
	}
	for _, k := range []vfs.OpKind{vfs.OpOpen, vfs.OpCreate, vfs.OpLock, vfs.OpRead, vfs.OpWrite, vfs.OpDatasync, vfs.OpSync,
		vfs.OpSyncDir, vfs.OpReadDir, vfs.OpRename, vfs.OpLink, vfs.OpRemove, vfs.OpStat, vfs.OpMkdir, vfs.OpStatfs} {
		if f.Count(k) == 0 {
			t.Errorf("no %s went through the FS", k)
		}
	}
	if _, err := os.Stat(filepath.Dir(root)); err == nil {
		t.Errorf("%s was created on the disk", filepath.Dir(root))
	}
}

// Defect 1: a failed fdatasync retires its segment. Append B, written into the segment while append A's sync
// was under way, fails with A instead of being acknowledged by a later sync of the same file, which would
// prove nothing after Linux dropped the failed pages; the segment is never synced again, and the next append
// goes to a new one.
func TestFailedSyncFailsEveryAppendOfItsSegment(t *testing.T) {
	var written atomic.Int32
	bWritten := make(chan struct{})
	o := opts(1<<20, &clock{t: t0})
	o.Crash = func(point string) {
		if point == CrashAfterWrite && written.Add(1) == 2 {
			close(bWritten)
		}
	}
	s, f, m, dir := memStore(t, o)
	syncing, fail := make(chan struct{}), make(chan struct{})
	var syncs atomic.Int32
	var mu sync.Mutex
	var failed string
	var later []string
	on(f, func(op vfs.Op) error {
		if op.Kind != vfs.OpDatasync {
			return nil
		}
		if syncs.Add(1) == 1 {
			mu.Lock()
			failed = op.Path
			mu.Unlock()
			close(syncing)
			<-fail
			return &fs.PathError{Op: "fdatasync", Path: op.Path, Err: syscall.EIO}
		}
		mu.Lock()
		later = append(later, op.Path)
		mu.Unlock()
		return nil
	})
	errA, errB := make(chan error), make(chan error)
	go func() { errA <- tryCommit(s, "a/org:A") }()
	<-syncing
	go func() { errB <- tryCommit(s, "b/org:B") }()
	<-bWritten
	close(fail)
	if err := <-errA; err == nil {
		t.Error("append A was acknowledged though its sync failed")
	}
	if err := <-errB; err == nil {
		t.Error("append B, written into the segment whose sync failed, was acknowledged")
	}
	commit(t, s, "c/org:C")
	on(f)
	mu.Lock()
	if len(later) == 0 {
		t.Fatal("the next append was not synced")
	}
	if slices.Contains(later, failed) {
		t.Errorf("%s was synced again after its sync failed: %v", failed, later)
	}
	mu.Unlock()
	// What an acknowledgement promises survives a power cut.
	s2 := open(t, dir, Options{MaxBatch: 1 << 20, Now: o.Now, FS: m.Crash(vfs.CrashOptions{})})
	if got := everything(t, s2, &Recovery{}); !slices.Contains(got, "C") {
		t.Errorf("records after a power cut %v: the acknowledged one is missing", got)
	}
}

// Defect 2: a read error while sealing is not damage: the batch is not sealed (Err, to be put back), nothing
// is released or reported damaged, and the retry seals every record. Only a checksum failure is damage, and
// it is reported with the damaged bytes.
func TestReadErrorWhileSealingPutsTheBatchBack(t *testing.T) {
	s, f, m, dir := memStore(t, opts(1<<20, &clock{t: t0}))
	commit(t, s, "a/org:1", "a/org:2")
	commit(t, s, "a/org:3")
	commit(t, s, "b/org:b")
	s.Rotate(time.Time{})
	segs := segmentFiles(t, m, dir)
	on(f, once(f, vfs.OpRead, isSegment, vfs.EIO))
	var failed []*Pending
	closed := s.TakeClosed() // in no set order: a/org's first, to meet the read error
	slices.SortFunc(closed, func(x, y *Pending) int { return strings.Compare(x.Org, y.Org) })
	for _, r := range s.Seal(closed, naming, joinLines) {
		if r.Err != nil {
			failed = append(failed, r.Pending)
		}
		if r.Batch != nil && r.Batch.Org == "a" || len(r.Report.Damaged) > 0 {
			t.Errorf("%s: sealed %v, damaged %q, though a read failed", r.Pending.Stream, r.Batch != nil, r.Report.Damaged)
		}
	}
	if len(failed) != 1 || failed[0].Org != "a" {
		t.Fatalf("batches not sealed: %v, want a/org's", failed)
	}
	if got := segmentFiles(t, m, dir); !slices.Equal(got, segs) {
		t.Errorf("segments %v after the failed seal, had %v", got, segs)
	}
	s.PutBack(failed[0])
	objects, reps := sealAll(t, s)
	if got := lines(objects); !slices.Equal(got, []string{"1", "2", "3"}) || len(reps[0].Damaged) > 0 {
		t.Errorf("the retry sealed %v with damage %q, want every record intact", got, reps[0].Damaged)
	}

	// A flipped byte is damage: the run's bytes are reported.
	commit(t, s, "c/org:intact")
	commit(t, s, "c/org:flipped")
	s.Rotate(time.Time{})
	seg := segmentFiles(t, m, dir)
	last := seg[len(seg)-1]
	data, _ := vfs.ReadFile(m, last)
	file, _ := m.OpenFile(last, os.O_WRONLY, 0)
	file.WriteAt([]byte("F"), int64(bytes.Index(data, []byte("flipped"))))
	file.Close()
	objects, reps = sealAll(t, s)
	if got := lines(objects); !slices.Equal(got, []string{"intact"}) || len(reps) != 1 || len(reps[0].Damaged) != 1 || !bytes.Contains(reps[0].Damaged[0], []byte("Flipped")) {
		t.Errorf("sealed %v, damaged %q; want the intact record, and the damaged run's bytes", got, reps[0].Damaged)
	}
}

// Defect 7: when a seal round could not append its "sealed" entries (the disk full), Remove appends them and
// deletes the segments they free, with their room, rather than leaving that to a Seal that may never come.
func TestRemoveFreesTheSegmentsItReleases(t *testing.T) {
	s, f, m, dir, _ := batchOverSegments(t)
	on(f, once(f, vfs.OpWrite, isSegment, vfs.ENOSPC))
	r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
	if r.Err != nil || r.Report.Unreleased == nil {
		t.Fatalf("seal: %v, unreleased %v; want the batch sealed and its records not yet released", r.Err, r.Report.Unreleased)
	}
	if err := s.Remove(r.Batch); err != nil {
		t.Fatal(err)
	}
	onlyTheActiveSegment(t, s, m, dir)
}

// A delivered batch whose records cannot be marked as sealed in the log (every write to the log failing) is not
// deleted, or a restart would gather its records again; it is kept, not forgotten: once the log takes writes
// again, Tidy marks it and deletes it, with its room and the segments it held.
func TestDeliveredBatchIsRemovedOnceTheLogTakesWritesAgain(t *testing.T) {
	s, f, m, dir, o := batchOverSegments(t)
	failing := func(op vfs.Op) error {
		if op.Kind == vfs.OpWrite && isSegment(op.Path) {
			return &fs.PathError{Op: "write", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	}
	on(f, failing)
	r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
	if r.Err != nil || r.Report.Unreleased == nil {
		t.Fatalf("seal: %v, unreleased %v; want the batch sealed and its records not yet released", r.Err, r.Report.Unreleased)
	}
	if err := s.Remove(r.Batch); err == nil {
		t.Fatal("Remove succeeded while the log takes no write")
	}
	if err := s.Tidy(); err == nil {
		t.Fatal("Tidy succeeded while the log takes no write")
	}
	object, manifest := r.Batch.Files()
	for _, p := range []string{object, manifest} {
		if _, err := m.Stat(p); err != nil {
			t.Fatalf("%s is gone before its records were marked as sealed: %v", p, err)
		}
	}
	on(f)
	if err := s.Tidy(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{object, manifest} {
		if _, err := m.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there after Tidy: %v", p, err)
		}
	}
	onlyTheActiveSegment(t, s, m, dir)
	s.Close()
	nothingAfterRestart(t, dir, o)
}

// Open makes the folders it creates durable, Store_Dir with its subfolders and each folder above it that it
// created: an acknowledged record survives a power cut.
func TestOpenMakesTheFoldersItCreatesDurable(t *testing.T) {
	m := vfs.NewMemFS()
	if err := m.Mkdir("/data", 0o700); err != nil {
		t.Fatal(err)
	}
	m.SyncDir("/")
	o := opts(1<<20, &clock{t: t0})
	o.FS = m
	s := open(t, "/data/new/store", o)
	commit(t, s, "a/org:1")
	o.FS = m.Crash(vfs.CrashOptions{})
	s2, rec, err := Open("/data/new/store", o)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := everything(t, s2, rec); !slices.Equal(got, []string{"1"}) {
		t.Errorf("records after a power cut: %v", got)
	}
}

// Segments are deleted strictly in order: when the oldest cannot be deleted, the later ones (whose "sealed"
// entries cover its runs) stay too, so a restart never gathers its runs again after their batches are gone.
func TestSegmentsAreDeletedInOrderWhenADeleteFails(t *testing.T) {
	o := opts(1<<20, &clock{t: t0})
	o.SegmentSize = 64
	s, f, _, dir := memStore(t, o)
	round := func(recs ...string) {
		for _, r := range recs {
			commit(t, s, r+strings.Repeat("x", 60))
		}
		s.Rotate(time.Time{})
		for _, r := range s.Seal(s.TakeClosed(), naming, joinLines) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if err := s.Remove(r.Batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	on(f, once(f, vfs.OpRemove, isSegment, vfs.EIO))
	round("a/org:1", "b/org:2")
	on(f)
	round("c/org:3", "d/org:4")
	s.Close()
	o.FS = f
	nothingAfterRestart(t, dir, o)
}

// A batch that cannot be moved into the quarantine stays whole where it was; the move can be tried again.
func TestFailedQuarantineKeepsTheBatch(t *testing.T) {
	s, f, m, dir := memStore(t, opts(1<<20, &clock{t: t0}))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	b := s.Seal(s.TakeClosed(), naming, joinLines)[0].Batch
	var links atomic.Int32
	on(f, func(op vfs.Op) error {
		if op.Kind == vfs.OpLink && links.Add(1) > 1 {
			return &fs.PathError{Op: "link", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	})
	if err := s.Quarantine(b); err == nil {
		t.Fatal("Quarantine succeeded")
	}
	on(f)
	if got := readObject(t, b); got != "1\n" {
		t.Errorf("the object after a failed quarantine: %q", got)
	}
	if err := s.Quarantine(b); err != nil {
		t.Fatal(err)
	}
	if entries, _ := m.ReadDir(filepath.Join(dir, quarantineFolder)); len(entries) != 2 {
		t.Errorf("the quarantine holds %v, want the batch's two files", entries)
	}
	if got := readObject(t, b); got != "1\n" {
		t.Errorf("the quarantined object: %q", got)
	}
}

// A file moved between folders is durable in its new folder before it leaves the old one: a power loss
// between the two leaves it in both, never in neither.
func TestMovesSyncTheNewFolderBeforeTheOldNameGoes(t *testing.T) {
	t.Run("quarantine", func(t *testing.T) {
		var r recorder
		s, f, _, dir := memStore(t, opts(1<<20, &clock{t: t0}))
		commit(t, s, "a/org:1")
		s.Rotate(time.Time{})
		b := s.Seal(s.TakeClosed(), naming, joinLines)[0].Batch
		on(f, r.rule)
		if err := s.Quarantine(b); err != nil {
			t.Fatal(err)
		}
		checkMove(t, &r, filepath.Join(dir, batchesFolder), filepath.Join(dir, quarantineFolder))
	})
	t.Run("requeue", func(t *testing.T) {
		s, f, _, dir := memStore(t, opts(1<<20, &clock{t: t0}))
		commit(t, s, "a/org:1")
		s.Rotate(time.Time{})
		if err := s.Quarantine(s.Seal(s.TakeClosed(), naming, joinLines)[0].Batch); err != nil {
			t.Fatal(err)
		}
		s.Close()
		var r recorder
		on(f, r.rule)
		if got, err := requeueAll(f, dir, "", t0); err != nil || len(got.Batches) != 1 {
			t.Fatalf("requeue: %+v, %v", got, err)
		}
		checkMove(t, &r, filepath.Join(dir, quarantineFolder), filepath.Join(dir, batchesFolder))
	})
	t.Run("set aside", func(t *testing.T) {
		s, f, m, dir := memStore(t, opts(1<<20, &clock{t: t0}))
		s.Close()
		file, _ := m.OpenFile(filepath.Join(dir, batchesFolder, "a~org~1"+objectSuffix), os.O_WRONLY|os.O_CREATE, 0o600)
		file.Close()
		var r recorder
		on(f, r.rule)
		o := opts(1<<20, &clock{t: t0})
		o.FS = f
		open(t, dir, o)
		checkMove(t, &r, filepath.Join(dir, batchesFolder), filepath.Join(dir, quarantineFolder))
	})
}

func checkMove(t *testing.T, r *recorder, from, to string) {
	t.Helper()
	gone := r.index(vfs.OpRemove, in(from))
	if gone < 0 {
		t.Fatalf("nothing left %s: %v", from, r.ops)
	}
	if synced := r.index(vfs.OpSyncDir, is(to)); synced < 0 || synced > gone {
		t.Errorf("a file left %s before %s was synced: %v", from, to, r.ops)
	}
}

// A batch whose manifest cannot be removed after its object was has its room counted free at once.
func TestRemoveCountsTheObjectGoneWhenTheManifestStays(t *testing.T) {
	s, f, _, _ := memStore(t, opts(1<<20, &clock{t: t0}))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	b := s.Seal(s.TakeClosed(), naming, joinLines)[0].Batch
	before, _ := s.Usage()
	on(f, once(f, vfs.OpRemove, hasSuffix(manifestSuffix), vfs.EIO))
	if err := s.Remove(b); err == nil {
		t.Fatal("Remove succeeded")
	}
	if used, _ := s.Usage(); used != before-b.ObjectBytes {
		t.Errorf("usage %d, want %d: the object is gone", used, before-b.ObjectBytes)
	}
	if err := s.Remove(b); err != nil {
		t.Fatal(err)
	}
	if used, _ := s.Usage(); used != before-b.ObjectBytes {
		t.Errorf("usage %d after the second Remove, want %d", used, before-b.ObjectBytes)
	}
}

// The "sealed" entries are appended only once the manifests they stand for are durable: when the seal round
// could not sync the batches folder, the append that Remove makes syncs it first.
func TestSealedEntriesFollowASyncOfTheBatchesFolder(t *testing.T) {
	s, f, _, dir := memStore(t, opts(1<<20, &clock{t: t0}))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	batches := filepath.Join(dir, batchesFolder)
	on(f, once(f, vfs.OpSyncDir, is(batches), vfs.EIO))
	r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
	if r.Report.Unreleased == nil {
		t.Fatal("the seal reports its records released though the batches folder was not synced")
	}
	var rec recorder
	on(f, rec.rule)
	if err := s.Remove(r.Batch); err != nil {
		t.Fatal(err)
	}
	appended := rec.index(vfs.OpWrite, isSegment)
	if synced := rec.index(vfs.OpSyncDir, is(batches)); appended < 0 || synced < 0 || synced > appended {
		t.Errorf("the sealed entries were appended before the batches folder was synced: %v", rec.ops)
	}
}

// A segment that cannot be deleted during recovery does not fail Open; it goes later.
func TestOpenSucceedsWhenAFreedSegmentCannotBeDeleted(t *testing.T) {
	o := opts(1<<20, &clock{t: t0})
	s, f, m, dir := memStore(t, o)
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	sealAll(t, s)
	s.Close()
	old := segmentFiles(t, m, dir)
	on(f, once(f, vfs.OpRemove, isSegment, vfs.EIO))
	o.FS = f
	s2, _, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s2.Close()
	commit(t, s2, "a/org:2")
	s2.Rotate(time.Time{})
	sealAll(t, s2)
	for _, p := range old {
		if _, err := m.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
}

// A new segment whose creation could not be made durable nor undone does not block the log: the next
// append takes another name.
func TestFailedSegmentCreationIsNotRetriedUnderTheSameName(t *testing.T) {
	o := opts(1<<20, &clock{t: t0})
	o.SegmentSize = 64
	s, f, _, dir := memStore(t, o)
	commit(t, s, "a/org:"+strings.Repeat("x", 60))
	on(f, once(f, vfs.OpSyncDir, is(filepath.Join(dir, walFolder)), vfs.EIO), once(f, vfs.OpRemove, isSegment, vfs.EIO))
	if err := tryCommit(s, "a/org:2"+strings.Repeat("x", 60)); err == nil {
		t.Fatal("the append went to a segment whose name is not durable")
	}
	if err := tryCommit(s, "a/org:3"+strings.Repeat("x", 60)); err != nil {
		t.Errorf("the next append: %v", err)
	}
}

// A dead-letter write or sync that fails leaves the file as it was: no partial line that the next lines would
// run into, nothing kept twice when the chunk is retried.
func TestFailedDeadLetterLeavesTheFileAsItWas(t *testing.T) {
	for _, fault := range []struct {
		op    vfs.OpKind
		fault vfs.Fault
	}{{vfs.OpWrite, vfs.ShortWrite}, {vfs.OpSync, vfs.EIO}} {
		t.Run(fault.op.String(), func(t *testing.T) {
			s, f, m, _ := memStore(t, opts(1<<20, &clock{t: t0}))
			if _, err := s.DeadLetter([]byte(`{"a":1}` + "\n")); err != nil {
				t.Fatal(err)
			}
			on(f, once(f, fault.op, hasSuffix(DeadLetterFile), fault.fault))
			if _, err := s.DeadLetter([]byte(`{"b":2}` + "\n")); err == nil {
				t.Fatal("DeadLetter succeeded")
			}
			if _, err := s.DeadLetter([]byte(`{"b":2}` + "\n")); err != nil {
				t.Fatal(err)
			}
			if got, _ := vfs.ReadFile(m, s.DeadLetterPath()); string(got) != `{"a":1}`+"\n"+`{"b":2}`+"\n" {
				t.Errorf("dead-letter file %q", got)
			}
		})
	}
}

// An I/O error while recovery reads the store is not a reason to set anything aside: Open fails, or goes on
// without it, and once the fault is gone every record is there once.
func TestRecoveryReadErrorsSetNothingAside(t *testing.T) {
	for _, fault := range []struct {
		name  string
		op    vfs.OpKind
		match func(string) bool
	}{
		{"segment", vfs.OpRead, isSegment},
		{"manifest", vfs.OpRead, hasSuffix(manifestSuffix)},
		{"object", vfs.OpStat, hasSuffix(objectSuffix)},
	} {
		t.Run(fault.name, func(t *testing.T) {
			o := opts(1<<20, &clock{t: t0})
			s, f, m, dir := memStore(t, o)
			sealedAndOpen(t, s)
			commit(t, s, "a/org:3")
			s.Close()
			o.FS = f
			on(f, once(f, fault.op, fault.match, vfs.EIO))
			if s2, _, err := Open(dir, o); err == nil {
				s2.Close()
			}
			on(f)
			s3, rec, err := Open(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s3.Close()
			if got := everything(t, s3, rec); !slices.Equal(got, []string{"1", "2", "3"}) {
				t.Errorf("records %v, want each once", got)
			}
			if aside, _ := m.ReadDir(filepath.Join(dir, quarantineFolder)); len(aside) > 0 {
				t.Errorf("set aside: %v", aside)
			}
		})
	}
}

// A seal never removes or replaces a file at a batch's name that it did not create (another writer's, or a
// seal's that could not clear its files): when its create fails the file stays, and a manifest there makes the
// batch take the next free millisecond rather than fail at every try.
func TestSealLeavesFilesItDidNotCreate(t *testing.T) {
	for _, tc := range []struct {
		suffix      string
		createFails bool
	}{{objectSuffix, true}, {manifestSuffix, false}} {
		t.Run(tc.suffix, func(t *testing.T) {
			s, f, m, dir := memStore(t, opts(1<<20, &clock{t: t0}))
			commit(t, s, "a/org:1")
			s.Rotate(time.Time{})
			taken := batchBase(filepath.Join(dir, batchesFolder), Stream{"a", "org"}, t0.UnixMilli()) + tc.suffix
			file, _ := m.OpenFile(taken, os.O_WRONLY|os.O_CREATE, 0o600)
			file.Write([]byte("someone else's"))
			file.Close()
			if tc.createFails {
				on(f, once(f, vfs.OpCreate, is(taken), vfs.EIO))
			}
			r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
			if tc.createFails != (r.Err != nil) {
				t.Fatalf("seal: %v", r.Err)
			}
			if r.Err == nil && (r.Batch.KeyMs == t0.UnixMilli() || readObject(t, r.Batch) != "1\n") {
				t.Errorf("sealed at %d: %q", r.Batch.KeyMs, readObject(t, r.Batch))
			}
			if got, _ := vfs.ReadFile(m, taken); string(got) != "someone else's" {
				t.Errorf("the file that was there: %q", got)
			}
		})
	}
}

// An append whose write was torn and could not be cut back is not followed by another in the same segment
// (which would leave what the torn write stored between acknowledged entries): the next append goes to a new
// segment, and recovery finds every acknowledged record and no damage.
func TestTornWriteThatCannotBeCutBackRetiresTheSegment(t *testing.T) {
	o := opts(1<<20, &clock{t: t0})
	s, f, _, dir := memStore(t, o)
	commit(t, s, "a/org:1")
	var mu sync.Mutex
	var tornAt string
	var after []string
	on(f, once(f, vfs.OpWrite, isSegment, vfs.ShortWrite), once(f, vfs.OpTruncate, isSegment, vfs.EIO), func(op vfs.Op) error {
		mu.Lock()
		defer mu.Unlock()
		if op.Kind == vfs.OpWrite && isSegment(op.Path) {
			if tornAt == "" {
				tornAt = op.Path
			} else {
				after = append(after, op.Path)
			}
		}
		return nil
	})
	if err := tryCommit(s, "a/org:x", "b/org:y", "c/org:"+strings.Repeat("z", 200)); err == nil {
		t.Fatal("a torn append was acknowledged")
	}
	commit(t, s, "a/org:2")
	commit(t, s, "a/org:3")
	on(f)
	if slices.Contains(after, tornAt) {
		t.Errorf("%s was written again after a torn write: %v", tornAt, after)
	}
	s.Close()
	o.FS = f
	s2, rec, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got := everything(t, s2, rec)
	for _, want := range []string{"1", "2", "3"} {
		if !slices.Contains(got, want) {
			t.Errorf("record %s is missing: %v", want, got)
		}
	}
	if len(rec.Damaged) > 0 {
		t.Errorf("damaged %q", rec.Damaged)
	}
}

// A re-key that fails leaves the batch with the key its manifest holds, which is what a restart uses: the old
// key when the new manifest did not replace the old one, the new key when only the sync of the folder failed
// (before, the batch went back to its old key while its manifest held the new one).
func TestFailedRekeyKeepsTheKeyOfTheManifest(t *testing.T) {
	for _, tc := range []struct {
		op      vfs.OpKind
		match   func(string) bool
		wantNew bool
	}{
		{vfs.OpCreate, hasSuffix(tmpSuffix), false},
		{vfs.OpRename, hasSuffix(tmpSuffix), false},
		{vfs.OpSyncDir, hasSuffix(batchesFolder), true},
	} {
		t.Run(tc.op.String(), func(t *testing.T) {
			s, f, m, _ := memStore(t, opts(1<<20, &clock{t: t0}))
			commit(t, s, "a/org:1")
			s.Rotate(time.Time{})
			b, _, err := sealOne(s, s.TakeClosed()[0])
			if err != nil {
				t.Fatal(err)
			}
			old := b.Key
			on(f, once(f, tc.op, tc.match, vfs.EIO))
			if err := s.Rekey(b, "new-key", b.KeyMs+1); err == nil {
				t.Fatal("Rekey succeeded")
			}
			_, manifest := b.Files()
			onDisk, err := readBatch(m, manifest)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]string{false: old, true: "new-key"}[tc.wantNew]; onDisk.Key != want || b.Key != want || b.KeyMs != onDisk.KeyMs {
				t.Errorf("the batch has key %s (ms %d), its manifest %s (ms %d); want %s for both", b.Key, b.KeyMs, onDisk.Key, onDisk.KeyMs, want)
			}
		})
	}
}

// A seal whose manifest sync failed and whose files could not be removed leaves them behind; the batch is sealed
// again under a later millisecond. At the next start the two manifests name the same log range: only the later
// seal is uploaded (the earlier files are not to be trusted, and both would deliver the records twice); the
// earlier one is set aside, not deleted.
func TestRecoveryUploadsOneOfTwoSealsOfTheSameRecords(t *testing.T) {
	c := &clock{t: t0}
	s, f, m, dir := memStore(t, opts(1<<20, c))
	commit(t, s, "a/org:1", "a/org:2")
	s.Rotate(time.Time{})
	batches := filepath.Join(dir, batchesFolder)
	on(f, once(f, vfs.OpSync, hasSuffix(manifestSuffix), vfs.EIO), func(op vfs.Op) error {
		if op.Kind == vfs.OpRemove && filepath.Dir(op.Path) == batches {
			return &fs.PathError{Op: "remove", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	})
	p := s.TakeClosed()
	if r := s.Seal(p, naming, joinLines)[0]; r.Err == nil {
		t.Fatal("the seal whose manifest sync failed succeeded")
	}
	on(f)
	s.PutBack(p[0])
	c.set(t0.Add(time.Second))
	r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
	if r.Err != nil || r.Batch == nil {
		t.Fatalf("second seal: %v", r.Err)
	}
	s.Close()
	s2, rec, err := Open(dir, Options{FS: f, MaxBatch: 1 << 20, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(rec.Batches) != 1 || rec.Batches[0].Key != r.Batch.Key {
		var keys []string
		for _, b := range rec.Batches {
			keys = append(keys, b.Key)
		}
		t.Fatalf("recovered %v, want only the later seal %s", keys, r.Batch.Key)
	}
	var aside []string
	for _, p := range rec.MovedAside {
		aside = append(aside, filepath.Base(p))
	}
	if len(aside) != 2 || !strings.HasPrefix(aside[0], "superseded") || !strings.HasPrefix(aside[1], "superseded") {
		t.Fatalf("set aside: %v", aside)
	}
	if entries, _ := m.ReadDir(filepath.Join(dir, quarantineFolder)); len(entries) != 2 {
		t.Errorf("the quarantine holds %d files, want the earlier seal's 2", len(entries))
	}
}

// A read error at start, on a segment or a manifest, is read again before Open gives up: a transient one (EIO
// from a network volume) does not fail Open, which would stop Fluent Bit.
func TestOpenReadsAgainAfterATransientReadError(t *testing.T) {
	for _, fault := range []struct {
		name  string
		match func(string) bool
	}{{"segment", isSegment}, {"manifest", hasSuffix(manifestSuffix)}} {
		t.Run(fault.name, func(t *testing.T) {
			o := opts(1<<20, &clock{t: t0})
			s, f, _, dir := memStore(t, o)
			sealedAndOpen(t, s)
			s.Close()
			o.FS = f
			on(f, once(f, vfs.OpRead, fault.match, vfs.EIO))
			s2, rec, err := Open(dir, o)
			if err != nil {
				t.Fatalf("Open failed on one read error: %v", err)
			}
			defer s2.Close()
			if got := everything(t, s2, rec); !slices.Equal(got, []string{"1", "2"}) {
				t.Errorf("records %v, want each once", got)
			}
		})
	}
}

// sealedAndOpen commits records 1 (organisation a) and 2 (organisation b), seals a's batch and leaves b's open.
func sealedAndOpen(t *testing.T, s *Store) {
	t.Helper()
	commit(t, s, "a/org:1", "b/org:2")
	s.Rotate(time.Time{})
	for _, p := range s.TakeClosed() {
		if p.Org == "a" {
			sealOne(s, p)
		} else {
			s.PutBack(p)
		}
	}
}

// nothingAfterRestart opens the store in dir again and fails the test if it finds any record: everything was
// delivered and removed.
func nothingAfterRestart(t *testing.T, dir string, o Options) {
	t.Helper()
	s, rec, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if again := everything(t, s, rec); len(again) > 0 {
		t.Errorf("delivered again after a restart: %v", again)
	}
}

// batchOverSegments opens a store on faults whose segments hold one record each and without its delivery
// reserve, commits two records of one stream and closes its batch: the batch holds runs of two segments.
func batchOverSegments(t *testing.T) (*Store, *vfs.Faults, *vfs.MemFS, string, Options) {
	t.Helper()
	o := opts(1<<20, &clock{t: t0})
	o.Limit, o.SegmentSize = 1<<20, 64
	s, f, m, dir := memStore(t, o)
	// Its delivery reserve already spent: a full disk fails the log's appends.
	if err := m.Remove(filepath.Join(dir, ballastFile)); err != nil {
		t.Fatal(err)
	}
	commit(t, s, "a/org:"+strings.Repeat("x", 60))
	commit(t, s, "a/org:"+strings.Repeat("y", 60))
	s.Rotate(time.Time{})
	return s, f, m, dir, o
}

// onlyTheActiveSegment fails the test unless the log keeps only its active segment, and the store counts only
// that segment's room as used.
func onlyTheActiveSegment(t *testing.T, s *Store, m *vfs.MemFS, dir string) {
	t.Helper()
	segs := segmentFiles(t, m, dir)
	if len(segs) != 1 {
		t.Fatalf("segments %v, want the active one only", segs)
	}
	fi, _ := m.Stat(segs[0])
	if used, _ := s.Usage(); used != fi.Size() {
		t.Errorf("usage %d, want the active segment's %d", used, fi.Size())
	}
}
