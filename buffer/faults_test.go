package buffer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Each test here makes one file operation fail (through a hookFS) where the store used to lose, duplicate or
// strand records, or leave them at the mercy of a power loss; each failed before its fix.

// faulty opens a store in a new folder on a hookFS; the test sets the hook.
func faulty(t *testing.T, o Options) (*Store, *hookFS, string) {
	t.Helper()
	dir := t.TempDir()
	h := &hookFS{}
	o.FS = h
	return open(t, dir, o), h, dir
}

func isSegment(path string) bool {
	return strings.HasSuffix(path, segSuffix) && filepath.Base(filepath.Dir(path)) == walFolder
}

// once fails the first op on a path that match accepts with err.
func once(op string, match func(string) bool, err error) func(string, string) error {
	var done atomic.Bool
	return func(o, p string) error {
		if o == op && match(p) && done.CompareAndSwap(false, true) {
			return err
		}
		return nil
	}
}

// recorder keeps every operation as "op path", in order.
type recorder struct {
	mu  sync.Mutex
	ops []string
}

func (r *recorder) hook(op, path string) error {
	r.mu.Lock()
	r.ops = append(r.ops, op+" "+path)
	r.mu.Unlock()
	return nil
}

// index is the position of the first operation from from on that is op on a path match accepts, or -1.
func (r *recorder) index(from int, op string, match func(string) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := from; i < len(r.ops); i++ {
		o, p, _ := strings.Cut(r.ops[i], " ")
		if o == op && match(p) {
			return i
		}
	}
	return -1
}

func in(dir string) func(string) bool {
	return func(p string) bool { return filepath.Dir(p) == dir }
}

func is(path string) func(string) bool { return func(p string) bool { return p == path } }

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, walFolder, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
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
	s, h, _ := faulty(t, o)
	syncing, fail := make(chan struct{}), make(chan struct{})
	var syncs atomic.Int32
	var mu sync.Mutex
	var failed string
	var later []string
	h.setHook(func(op, path string) error {
		if op != "datasync" {
			return nil
		}
		if syncs.Add(1) == 1 {
			mu.Lock()
			failed = path
			mu.Unlock()
			close(syncing)
			<-fail
			return syscall.EIO
		}
		mu.Lock()
		later = append(later, path)
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
	h.setHook(nil)
	mu.Lock()
	defer mu.Unlock()
	if len(later) == 0 {
		t.Fatal("the next append was not synced")
	}
	for _, p := range later {
		if p == failed {
			t.Errorf("%s was synced again after its sync failed", p)
		}
	}
	if got := everything(t, s, &Recovery{}); !slices.Equal(got, []string{"C"}) {
		t.Errorf("records %v, want the acknowledged one only", got)
	}
}

// Defect 2: a read error while sealing is not damage: the batch is not sealed (Err, to be put back), nothing
// is released or reported damaged, and the retry seals every record. Only a checksum failure is damage, and
// it is reported with the damaged bytes.
func TestReadErrorWhileSealingPutsTheBatchBack(t *testing.T) {
	s, h, dir := faulty(t, opts(1<<20, &clock{t: t0}))
	commit(t, s, "a/org:1", "a/org:2")
	commit(t, s, "a/org:3")
	commit(t, s, "b/org:damaged")
	s.Rotate(time.Time{})
	segs := segmentFiles(t, dir)
	h.setHook(once("readat", isSegment, syscall.EIO))
	var failed []*Pending
	for _, r := range s.Seal(s.TakeClosed(), naming, joinLines) {
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
	if got := segmentFiles(t, dir); !slices.Equal(got, segs) {
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
	seg := segmentFiles(t, dir)
	data, _ := os.ReadFile(seg[len(seg)-1])
	at := bytes.Index(data, []byte("flipped"))
	f, _ := os.OpenFile(seg[len(seg)-1], os.O_WRONLY, 0)
	f.WriteAt([]byte("F"), int64(at))
	f.Close()
	objects, reps = sealAll(t, s)
	if got := lines(objects); !slices.Equal(got, []string{"intact"}) || len(reps) != 1 || len(reps[0].Damaged) != 1 || !bytes.Contains(reps[0].Damaged[0], []byte("Flipped")) {
		t.Errorf("sealed %v, damaged %q; want the intact record, and the damaged run's bytes", got, reps[0].Damaged)
	}
}

// Defect 7: when a seal round could not append its "sealed" entries (the disk full), Remove appends them and
// deletes the segments they free, with their room, rather than leaving that to a Seal that may never come.
func TestRemoveFreesTheSegmentsItReleases(t *testing.T) {
	o := opts(1<<20, &clock{t: t0})
	o.Limit, o.SegmentSize = 1<<20, 64
	s, h, dir := faulty(t, o)
	commit(t, s, "a/org:"+strings.Repeat("x", 60))
	commit(t, s, "a/org:"+strings.Repeat("y", 60))
	s.Rotate(time.Time{})
	h.setHook(once("writeat", isSegment, syscall.ENOSPC))
	r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
	if r.Err != nil || r.Report.Unreleased == nil {
		t.Fatalf("seal: %v, unreleased %v; want the batch sealed and its records not yet released", r.Err, r.Report.Unreleased)
	}
	if err := s.Remove(r.Batch); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segments %v after Remove, want the active one only", segs)
	}
	fi, _ := os.Stat(segs[0])
	if used, _ := s.Usage(); used != fi.Size() {
		t.Errorf("usage %d, want the active segment's %d", used, fi.Size())
	}
}

// Open makes the folders it creates durable: Store_Dir once its subfolders are in it, and each folder that
// holds one it created.
func TestOpenSyncsTheFoldersItCreates(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "new", "store")
	var r recorder
	o := opts(1<<20, &clock{t: t0})
	o.FS = &hookFS{hook: r.hook}
	open(t, dir, o)
	created := 0
	for _, sub := range []string{walFolder, batchesFolder, quarantineFolder} {
		created = max(created, r.index(0, "mkdirall", is(filepath.Join(dir, sub))), r.index(0, "mkdir", is(filepath.Join(dir, sub))))
	}
	for _, d := range []string{root, filepath.Dir(dir), dir} {
		if r.index(created, "syncdir", is(d)) < 0 {
			t.Errorf("%s is not synced after the folders were created", d)
		}
	}
}

// Segments are deleted strictly in order: when the oldest cannot be deleted, the later ones (whose "sealed"
// entries cover its runs) stay too, so a restart never gathers its runs again after their batches are gone.
func TestSegmentsAreDeletedInOrderWhenADeleteFails(t *testing.T) {
	o := opts(1<<20, &clock{t: t0})
	o.SegmentSize = 64
	s, h, dir := faulty(t, o)
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
	h.setHook(once("remove", isSegment, syscall.EIO))
	round("a/org:1", "b/org:2")
	h.setHook(nil)
	round("c/org:3", "d/org:4")
	s.Close()
	s2, rec, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if again := everything(t, s2, rec); len(again) > 0 {
		t.Errorf("delivered again after a restart: %v", again)
	}
}

// A batch that cannot be moved into the quarantine stays whole where it was; the move can be tried again.
func TestFailedQuarantineKeepsTheBatch(t *testing.T) {
	s, h, dir := faulty(t, opts(1<<20, &clock{t: t0}))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	b := s.Seal(s.TakeClosed(), naming, joinLines)[0].Batch
	var links atomic.Int32
	h.setHook(func(op, path string) error {
		if op == "link" && links.Add(1) > 2 { // each link is seen twice, from and to: the second link fails
			return syscall.EIO
		}
		return nil
	})
	if err := s.Quarantine(b); err == nil {
		t.Fatal("Quarantine succeeded")
	}
	h.setHook(nil)
	if got := readObject(t, b); got != "1\n" {
		t.Errorf("the object after a failed quarantine: %q", got)
	}
	if err := s.Quarantine(b); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, quarantineFolder, "*")); len(m) != 2 {
		t.Errorf("the quarantine holds %v, want the batch's two files", m)
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
		s, h, dir := faulty(t, opts(1<<20, &clock{t: t0}))
		commit(t, s, "a/org:1")
		s.Rotate(time.Time{})
		b := s.Seal(s.TakeClosed(), naming, joinLines)[0].Batch
		h.setHook(r.hook)
		if err := s.Quarantine(b); err != nil {
			t.Fatal(err)
		}
		checkMove(t, &r, filepath.Join(dir, batchesFolder), filepath.Join(dir, quarantineFolder))
	})
	t.Run("requeue", func(t *testing.T) {
		dir := t.TempDir()
		s := storeWithEverything(t, dir, &clock{t: t0})
		s.Close()
		var r recorder
		if _, err := requeueAll(&hookFS{hook: r.hook}, dir, "", t0); err != nil {
			t.Fatal(err)
		}
		checkMove(t, &r, filepath.Join(dir, quarantineFolder), filepath.Join(dir, batchesFolder))
	})
	t.Run("set aside", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, opts(1<<20, &clock{t: t0}))
		s.Close()
		os.WriteFile(filepath.Join(dir, batchesFolder, "a~org~1"+objectSuffix), []byte("x"), 0o600)
		var r recorder
		o := opts(1<<20, &clock{t: t0})
		o.FS = &hookFS{hook: r.hook}
		open(t, dir, o)
		checkMove(t, &r, filepath.Join(dir, batchesFolder), filepath.Join(dir, quarantineFolder))
	})
}

func checkMove(t *testing.T, r *recorder, from, to string) {
	t.Helper()
	gone := r.index(0, "remove", in(from))
	if gone < 0 {
		t.Fatalf("nothing left %s: %q", from, r.ops)
	}
	if synced := r.index(0, "syncdir", is(to)); synced < 0 || synced > gone {
		t.Errorf("a file left %s before %s was synced: %q", from, to, r.ops)
	}
}

// A batch whose manifest cannot be removed after its object was has its room counted free at once.
func TestRemoveCountsTheObjectGoneWhenTheManifestStays(t *testing.T) {
	s, h, _ := faulty(t, opts(1<<20, &clock{t: t0}))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	b := s.Seal(s.TakeClosed(), naming, joinLines)[0].Batch
	before, _ := s.Usage()
	h.setHook(once("remove", func(p string) bool { return strings.HasSuffix(p, manifestSuffix) }, syscall.EIO))
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
	s, h, dir := faulty(t, opts(1<<20, &clock{t: t0}))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	batches := filepath.Join(dir, batchesFolder)
	h.setHook(once("syncdir", is(batches), syscall.EIO))
	r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
	if r.Report.Unreleased == nil {
		t.Fatal("the seal reports its records released though the batches folder was not synced")
	}
	var rec recorder
	h.setHook(rec.hook)
	if err := s.Remove(r.Batch); err != nil {
		t.Fatal(err)
	}
	appended := rec.index(0, "writeat", isSegment)
	if synced := rec.index(0, "syncdir", is(batches)); appended < 0 || synced < 0 || synced > appended {
		t.Errorf("the sealed entries were appended before the batches folder was synced: %q", rec.ops)
	}
}

// A segment that cannot be deleted during recovery does not fail Open; it goes later.
func TestOpenSucceedsWhenAFreedSegmentCannotBeDeleted(t *testing.T) {
	dir := t.TempDir()
	h := &hookFS{}
	o := opts(1<<20, &clock{t: t0})
	o.FS = h
	s := open(t, dir, o)
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	sealAll(t, s)
	s.Close()
	old := segmentFiles(t, dir)
	h.setHook(once("remove", isSegment, syscall.EIO))
	s2, _, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s2.Close()
	commit(t, s2, "a/org:2")
	s2.Rotate(time.Time{})
	sealAll(t, s2)
	for _, p := range old {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
}

// A new segment whose creation could not be made durable nor undone does not block the log: the next
// append takes another name.
func TestFailedSegmentCreationIsNotRetriedUnderTheSameName(t *testing.T) {
	o := opts(1<<20, &clock{t: t0})
	o.SegmentSize = 64
	s, h, dir := faulty(t, o)
	commit(t, s, "a/org:"+strings.Repeat("x", 60))
	wal := filepath.Join(dir, walFolder)
	syncFails, removeFails := once("syncdir", is(wal), syscall.EIO), once("remove", isSegment, syscall.EIO)
	h.setHook(func(op, path string) error { return errors.Join(syncFails(op, path), removeFails(op, path)) })
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
		op  string
		err error
	}{{"write", errTorn}, {"sync", syscall.EIO}} {
		t.Run(fault.op, func(t *testing.T) {
			s, h, _ := faulty(t, opts(1<<20, &clock{t: t0}))
			if _, err := s.DeadLetter([]byte(`{"a":1}` + "\n")); err != nil {
				t.Fatal(err)
			}
			h.setHook(once(fault.op, func(p string) bool { return strings.HasSuffix(p, DeadLetterFile) }, fault.err))
			if _, err := s.DeadLetter([]byte(`{"b":2}` + "\n")); err == nil {
				t.Fatal("DeadLetter succeeded")
			}
			if _, err := s.DeadLetter([]byte(`{"b":2}` + "\n")); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(s.DeadLetterPath()); string(got) != `{"a":1}`+"\n"+`{"b":2}`+"\n" {
				t.Errorf("dead-letter file %q", got)
			}
		})
	}
}

// An I/O error while recovery reads the store is not a reason to set anything aside: Open fails, or goes on
// without it, and once the fault is gone every record is there once.
func TestRecoveryReadErrorsSetNothingAside(t *testing.T) {
	for _, fault := range []struct {
		name, op string
		match    func(string) bool
	}{
		{"segment", "read", isSegment},
		{"manifest", "read", func(p string) bool { return strings.HasSuffix(p, manifestSuffix) }},
		{"object", "stat", func(p string) bool { return strings.HasSuffix(p, objectSuffix) }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			dir := t.TempDir()
			h := &hookFS{}
			o := opts(1<<20, &clock{t: t0})
			o.FS = h
			s := open(t, dir, o)
			commit(t, s, "a/org:1", "b/org:2")
			s.Rotate(time.Time{})
			for _, p := range s.TakeClosed() {
				if p.Org == "a" {
					sealOne(s, p)
				} else {
					s.PutBack(p)
				}
			}
			commit(t, s, "a/org:3")
			s.Close()
			h.setHook(once(fault.op, fault.match, syscall.EIO))
			if s2, _, err := Open(dir, o); err == nil {
				s2.Close()
			}
			h.setHook(nil)
			s3, rec, err := Open(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s3.Close()
			if got := everything(t, s3, rec); !slices.Equal(got, []string{"1", "2", "3"}) {
				t.Errorf("records %v, want each once", got)
			}
			if aside, _ := os.ReadDir(filepath.Join(dir, quarantineFolder)); len(aside) > 0 {
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
			s, h, dir := faulty(t, opts(1<<20, &clock{t: t0}))
			commit(t, s, "a/org:1")
			s.Rotate(time.Time{})
			taken := batchBase(filepath.Join(dir, batchesFolder), Stream{"a", "org"}, t0.UnixMilli()) + tc.suffix
			os.WriteFile(taken, []byte("someone else's"), 0o600)
			if tc.createFails {
				h.setHook(once("open", is(taken), syscall.EIO))
			}
			r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
			if tc.createFails != (r.Err != nil) {
				t.Fatalf("seal: %v", r.Err)
			}
			if r.Err == nil && (r.Batch.KeyMs == t0.UnixMilli() || readObject(t, r.Batch) != "1\n") {
				t.Errorf("sealed at %d: %q", r.Batch.KeyMs, readObject(t, r.Batch))
			}
			if got, _ := os.ReadFile(taken); string(got) != "someone else's" {
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
	s, h, dir := faulty(t, o)
	commit(t, s, "a/org:1")
	torn, cut := once("writeat", isSegment, errTorn), once("truncate", isSegment, syscall.EIO)
	var mu sync.Mutex
	var tornAt string
	var after []string
	h.setHook(func(op, path string) error {
		err := errors.Join(torn(op, path), cut(op, path))
		mu.Lock()
		defer mu.Unlock()
		if op == "writeat" && isSegment(path) {
			if tornAt == "" {
				tornAt = path
			} else {
				after = append(after, path)
			}
		}
		return err
	})
	if err := tryCommit(s, "a/org:x", "b/org:y", "c/org:"+strings.Repeat("z", 200)); err == nil {
		t.Fatal("a torn append was acknowledged")
	}
	commit(t, s, "a/org:2")
	commit(t, s, "a/org:3")
	h.setHook(nil)
	if slices.Contains(after, tornAt) {
		t.Errorf("%s was written again after a torn write: %v", tornAt, after)
	}
	s.Close()
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
