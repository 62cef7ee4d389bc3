package plugin

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/vfs"
)

// opCounter counts the store's file operations by kind, and the files created in batches/.
type opCounter struct {
	mu      sync.Mutex
	kinds   map[vfs.OpKind]int
	created []string
}

func countOps(f *vfs.Faults) *opCounter {
	c := &opCounter{kinds: map[vfs.OpKind]int{}}
	f.Hook(func(op vfs.Op) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.kinds[op.Kind]++
		if op.Kind == vfs.OpCreate && filepath.Base(filepath.Dir(op.Path)) == "batches" {
			c.created = append(c.created, filepath.Base(op.Path))
		}
		return nil
	})
	return c
}

func (c *opCounter) take() (map[vfs.OpKind]int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kinds, created := c.kinds, c.created
	c.kinds, c.created = map[vfs.OpKind]int{}, nil
	return kinds, created
}

// TestDeliveryFromTheLogWritesNoBatchFile: a batch delivered promptly is sealed in the log and uploaded from
// it. What it costs on disk is its share of one log append for the seal round and its ledger line: no batch
// file is created, written or removed, and every sync there is is one of those.
func TestDeliveryFromTheLogWritesNoBatchFile(t *testing.T) {
	cfg := testConfig(t)
	faults := vfs.NewFaults(vfs.OS)
	clk, fake := newFakeClock(), &fakeS3{}
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: faults})
	// The first delivery creates the ledger's folder and first segment.
	in.Flush(event("org-0", "0"), "audit.org")
	in.sealDue()
	in.waitDelivered(t, 1)
	in.waitSettled(t)
	orgs := []string{"org-a", "org-b", "org-c", "org-d", "org-e", "org-f"}
	var chunk []byte
	for _, org := range orgs {
		chunk = cat(chunk, event(org, org+"-1"), event(org, org+"-2"))
	}
	if in.Flush(chunk, "audit.org") != OK {
		t.Fatal("the flush was refused")
	}
	ops := countOps(faults)
	in.sealDue()
	in.waitDelivered(t, int64(1+2*len(orgs)))
	in.waitSettled(t)
	kinds, created := ops.take()
	if len(created) > 0 {
		t.Errorf("delivery created files in batches/: %v", created)
	}
	// One for the seal round, at most one per ledger line, and the one append of the "sealed" entries of the
	// delivered batches, when the sealer's tick ran after some deliveries. Sealed to files, each object cost
	// two fsyncs and a folder sync of its own besides.
	syncs := kinds[vfs.OpSync] + kinds[vfs.OpDatasync] + kinds[vfs.OpSyncDir]
	if syncs > 2+len(orgs) {
		t.Errorf("%d syncs for %d objects (%v): want one for the seal round, at most one per ledger line and one for the sealed entries", syncs, len(orgs), kinds)
	}
	if kinds[vfs.OpRemove] > 0 {
		t.Errorf("%d files removed", kinds[vfs.OpRemove])
	}
	if seen := fake.deliveredIDs(t); len(seen) != 1+2*len(orgs) {
		t.Errorf("delivered %v", seen)
	}
}

// TestDeliveredFromTheLogIsNotSentAgainAfterAPowerCut: the power goes after a batch delivered from the log was
// recorded in the ledger, before the log said so. The restart finds the batch in the log, composes it again,
// finds the ledger's line for its key and SHA-256, and lets it go: it is not uploaded a second time.
func TestDeliveredFromTheLogIsNotSentAgainAfterAPowerCut(t *testing.T) {
	cfg := testConfig(t)
	mem := memDisk(t, cfg)
	clk, fake := newFakeClock(), &fakeS3{}
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: mem})
	in.stopSealer() // the test seals: no tick may append the batch's "sealed" entry
	<-in.sealerDone
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.store.Rotate(clk.Now())
	in.sealClosed(clk.Now().Add(cfg.UploadTimeout))
	in.waitDelivered(t, 2)
	in.waitSettled(t)
	calls := fake.callCount()

	after := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: mem.Crash(vfs.CrashOptions{})})
	after.waitLogged(t, "removed 1 batches the delivery ledger lists as delivered")
	after.waitSettled(t)
	if n := fake.callCount(); n != calls {
		t.Errorf("%d more uploads after the restart, want none", n-calls)
	}
	if seen := fake.deliveredIDs(t); seen["1"] != 1 || seen["2"] != 1 {
		t.Errorf("delivered %v, want each record once", seen)
	}
}

// TestRefusedBatchIsSpilledToAFile: a batch whose upload fails leaves the log for a batch file before it
// waits for its next attempt, so that it never keeps the log's segments; it is delivered from the file.
func TestRefusedBatchIsSpilledToAFile(t *testing.T) {
	cfg := testConfig(t)
	clk := newFakeClock()
	fake := &fakeS3{failN: 1}
	in := startOn(t, clk, cfg, "test", fake, TestHooks{})
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.sealDue()
	in.waitQueued(t, 1)
	at := in.waitRetry(t)
	files := batchFiles(t, cfg)
	if len(files) != 2 || !strings.HasSuffix(files[0], ".json.gz") && !strings.HasSuffix(files[1], ".json.gz") {
		t.Fatalf("after a failed attempt batches/ holds %v, want the batch's object and manifest", files)
	}
	in.clock.Advance(at.Sub(in.clock.Now()))
	in.waitDelivered(t, 2)
	in.waitSettled(t)
	if left := batchFiles(t, cfg); len(left) != 0 {
		t.Errorf("left in batches/: %v", left)
	}
}

// TestWaitingBatchIsSpilledAfterABound: a batch that waits in the log for its turn longer than spillAfter (its
// upload worker busy with another destination's upload that hangs) is spilled to a batch file, and delivered
// once the worker is free.
func TestWaitingBatchIsSpilledAfterABound(t *testing.T) {
	cfg := testConfig(t)
	cfg.UploadWorkers = 1
	release := make(chan struct{})
	var once sync.Once
	hung := make(chan struct{})
	fake := &fakeS3{script: func(_ int, key string) error {
		if strings.HasPrefix(key, "org-a/") {
			once.Do(func() { close(hung) })
			<-release
		}
		return nil
	}}
	clk := newFakeClock()
	faults := vfs.NewFaults(vfs.OS)
	var ops events
	faults.Hook(func(vfs.Op) error { ops.fire(); return nil })
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: faults})
	in.Flush(event("org-a", "1"), "audit.org")
	in.sealDue()
	<-hung
	in.Flush(event("org-b", "1"), "audit.org")
	in.sealDue()
	in.waitQueued(t, 2)
	if files := batchFiles(t, cfg); len(files) != 0 {
		t.Fatalf("batches/ holds %v before the bound", files)
	}
	in.clock.Advance(spillAfter)
	waitFor(t, &ops, func() bool { return len(batchFiles(t, cfg)) == 2 }, func() string {
		return fmt.Sprintf("org-b's batch was not spilled after %s: batches/ holds %v", spillAfter, batchFiles(t, cfg))
	})
	close(release)
	in.waitDelivered(t, 2)
	in.waitSettled(t)
	if left := batchFiles(t, cfg); len(left) != 0 {
		t.Errorf("left in batches/: %v", left)
	}
	if seen := fake.deliveredIDs(t); len(seen) != 1 || seen["1"] != 2 {
		t.Errorf("delivered %v, want record 1 of each organisation once", seen)
	}
}

// memDisk is a file system in memory on which Store_Dir's parent is, durably, as on a real disk.
func memDisk(t *testing.T, cfg *conf.Config) *vfs.MemFS {
	t.Helper()
	mem := vfs.NewMemFS()
	parent := filepath.Dir(cfg.StoreDir)
	if err := mem.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	for dir := parent; ; dir = filepath.Dir(dir) {
		if err := mem.SyncDir(dir); err != nil {
			t.Fatal(err)
		}
		if dir == "/" {
			return mem
		}
	}
}

// TestFullDiskKeepsDelivering: something else fills Store_Dir's file system while batches wait in the log for
// their upload. Their ledger lines find no room: the store deletes its delivery reserve, and every batch is
// delivered. Before, nothing was: each ledger line failed, and the batch stayed.
func TestFullDiskKeepsDelivering(t *testing.T) {
	cfg := testConfig(t)
	cfg.UploadWorkers = 1
	mem := memDisk(t, cfg)
	mem.SetCapacity(32 << 20)
	release := make(chan struct{})
	fake := &fakeS3{script: func(int, string) error { <-release; return nil }}
	clk := newFakeClock()
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: mem})
	var chunk []byte
	for i := range 10 {
		org := fmt.Sprintf("org-%d", i)
		chunk = cat(chunk, event(org, org+"-1"), event(org, org+"-2"))
	}
	if in.Flush(chunk, "audit.org") != OK {
		t.Fatal("the flush was refused")
	}
	in.sealDue()
	in.waitQueued(t, 10)
	filler, err := mem.OpenFile("/filler", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for err == nil {
		_, err = filler.Write(block)
	}
	filler.Close()
	if free, _ := mem.Free("/"); free != 0 {
		t.Fatalf("%d bytes free after the filler took the rest", free)
	}
	close(release)
	in.waitDelivered(t, 20)
	in.waitSettled(t)
	in.waitLogged(t, "deleted its delivery reserve")
	if seen := fake.deliveredIDs(t); len(seen) != 20 {
		t.Errorf("delivered %v", seen)
	}
}

// TestRestartWithBatchesWaitingSaysSoAtOnce: a restart that finds batches to deliver logs a status line at the
// sealer's first tick, what waits and how old, not a Status_Interval later.
func TestRestartWithBatchesWaitingSaysSoAtOnce(t *testing.T) {
	cfg := testConfig(t)
	cfg.StatusInterval = time.Hour
	clk := newFakeClock()
	in := startOn(t, clk, cfg, "test", &fakeS3{down: "b-1"}, TestHooks{})
	in.Flush(cat(event("org-a", "1"), event("org-b", "1")), "audit.org")
	in.shutDown(t)

	release := make(chan struct{})
	fake := &fakeS3{script: func(int, string) error { <-release; return nil }}
	after := startOn(t, clk, cfg, "test", fake, TestHooks{})
	var free sync.Once
	t.Cleanup(func() { free.Do(func() { close(release) }) }) // before the instance's shutdown, should the test fail
	after.sealDue()
	after.waitLog(t, regexp.MustCompile(`status: .*; 2 sealed batches waiting for upload; the oldest undelivered record arrived \d+s ago`))
	free.Do(func() { close(release) })
	after.waitDelivered(t, 2)
}

// TestDeliveredUnderAMovedKeyIsNotSentAgainAfterAPowerCut: a batch sealed in the log under one Key_Prefix is
// delivered after a restart under the new one, and the power goes before the log says so. The next restart
// must find it under the key the ledger lists for it, with the same SHA-256, and let it go: not upload it once
// more under yet another key.
func TestDeliveredUnderAMovedKeyIsNotSentAgainAfterAPowerCut(t *testing.T) {
	cfg := testConfig(t)
	mem := memDisk(t, cfg)
	clk, fake := newFakeClock(), &fakeS3{}
	start := func(cfg *conf.Config, fs vfs.FS) *testInstance {
		in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: fs})
		in.stopSealer() // no tick may append a "sealed" entry
		<-in.sealerDone
		return in
	}
	in := start(cfg, mem)
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.store.Rotate(clk.Now())
	if err := in.store.SealInLog(in.store.TakeClosed(), in.naming); err != nil {
		t.Fatal(err)
	}
	in.Flush(event("org-b", "3"), "audit.org") // keeps the segment of org-a's runs

	moved := *cfg
	moved.KeyPrefix = "moved/"
	restarted := mem.Crash(vfs.CrashOptions{})
	in = start(&moved, restarted)
	in.waitDelivered(t, 2)
	in.waitSettled(t)
	calls := fake.callCount()

	after := start(&moved, restarted.Crash(vfs.CrashOptions{}))
	after.waitSettled(t)
	if seen := fake.deliveredIDs(t); seen["1"] != 1 || seen["2"] != 1 {
		t.Errorf("delivered %v after %d more uploads, want each record once:\n%s", seen, fake.callCount()-calls, after.sink.joined())
	}
}

// TestSealingLeavesTheRestClosedWhileTheQueueIsFull: more batches close at once than maxInLog. The sealer seals
// maxInLog of them in the log and leaves the others closed in the store, where a batch costs only its runs;
// as uploads make room, the sealer seals them too, and every batch is delivered once.
func TestSealingLeavesTheRestClosedWhileTheQueueIsFull(t *testing.T) {
	cfg := testConfig(t)
	cfg.TotalFileSize = 1 << 20
	release := make(chan struct{})
	fake := &fakeS3{script: func(int, string) error { <-release; return nil }}
	clk := newFakeClock()
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk})
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free)
	orgs := maxInLog + 100
	in.flushAndSeal(t, orgs)
	in.waitQueued(t, maxInLog)
	in.sealWithinRoom(false)
	if n := in.queue.len(); n != maxInLog {
		t.Fatalf("%d batches queued after another seal round, want maxInLog (%d)", n, maxInLog)
	}
	in.sealing.Lock() // the sealer holds what it takes until it puts it back
	closed := in.store.TakeClosed()
	in.store.PutBackFirst(closed)
	in.sealing.Unlock()
	if len(closed) != orgs-maxInLog {
		t.Fatalf("%d batches left closed, want %d", len(closed), orgs-maxInLog)
	}
	free()
	in.waitDelivered(t, int64(orgs))
	in.waitSettled(t)
	if seen := fake.deliveredIDs(t); len(seen) != orgs {
		t.Errorf("delivered %d distinct records, want %d", len(seen), orgs)
	}
	for id, n := range fake.deliveredIDs(t) {
		if n != 1 {
			t.Errorf("record %s delivered %d times", id, n)
		}
	}
}
