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

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
)

func TestConcurrentFlushesDeliverEverythingOnce(t *testing.T) {
	fake := &fakeS3{failN: 2}
	in := startTest(t, testConfig(t), "test", fake, TestHooks{})
	const workers, chunksEach, perChunk = 6, 40, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for c := range chunksEach {
				var chunk []byte
				for r := range perChunk {
					chunk = append(chunk, event(fmt.Sprintf("org-%d", r%2), fmt.Sprintf("%d-%d-%d", w, c, r))...)
				}
				if got := in.Flush(chunk, "audit.api"); got != OK {
					t.Errorf("Flush = %v", got)
				}
			}
		})
	}
	wg.Wait()
	// Batches closed by size are sealed and uploaded meanwhile: the first upload of each stream fails, and
	// Close tries them again at once.
	in.waitPuts(t, 2)
	in.Close()

	seen := fake.deliveredIDs(t)
	for key := range fake.objects {
		if !strings.HasPrefix(key, "org-0/api-audit-logs-") && !strings.HasPrefix(key, "org-1/api-audit-logs-") {
			t.Errorf("key %s", key)
		}
	}
	if len(seen) != workers*chunksEach*perChunk {
		t.Errorf("%d records delivered, want %d", len(seen), workers*chunksEach*perChunk)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	if len(fake.objects) < 4 {
		t.Errorf("only %d objects: Total_File_Size did not split batches", len(fake.objects))
	}
}

func TestRejectedRecordsAreDeadLetteredAndLogged(t *testing.T) {
	fake := &fakeS3{}
	in := startTest(t, testConfig(t), "test", fake, TestHooks{})
	if got := in.Flush(cat(event("../x", "bad"), event("org-a", "good")), "audit.user"); got != OK {
		t.Fatalf("Flush = %v", got)
	}
	in.Close()
	if len(fake.objects) != 1 {
		t.Errorf("objects %v", fake.objects)
	}
	if joined := in.sink.joined(); !strings.Contains(joined, `rejected 1 record`) || !strings.Contains(joined, "deadletter.jsonl") {
		t.Errorf("log:\n%s", joined)
	}
}

func TestCloseLeavesUndeliveredBatchesOnDisk(t *testing.T) {
	fake := &fakeS3{failN: 1 << 30}
	cfg := testConfig(t)
	cfg.ShutdownTimeout = 200 * time.Millisecond
	in := startTest(t, cfg, "test", fake, TestHooks{})
	in.Flush(event("org-a", "1"), "audit.org")
	in.shutDown(t)
	if log := in.sink.joined(); !strings.Contains(log, "1 batches stay in") {
		t.Errorf("log:\n%s", log)
	}
	fake.failN = 0
	startTest(t, cfg, "test", fake, TestHooks{}).Close()
	if len(fake.objects) != 1 {
		t.Errorf("after restart %d objects, want 1", len(fake.objects))
	}
}

// TestFlushAsksForRetryWhenTheDiskRefuses: Store_Dir removed while running, with a file where it was: every
// chunk is retried, and the refusals, whatever the stream, log one line per cause every 30 s, not one per
// chunk. Once the folder can be created again it is, and records acknowledged before and after are delivered.
func TestFlushAsksForRetryWhenTheDiskRefuses(t *testing.T) {
	fake := &fakeS3{}
	cfg := testConfig(t)
	in := startTest(t, cfg, "test", fake, TestHooks{})
	if got := in.Flush(event("org-a", "1"), "audit.org"); got != OK {
		t.Fatalf("Flush = %v, want OK", got)
	}
	// Store_Dir removed while running, and a file where it was: the folder cannot be created again.
	os.RemoveAll(cfg.StoreDir)
	os.WriteFile(cfg.StoreDir, nil, 0o600)
	for i := range 20 {
		if got := in.Flush(event(fmt.Sprintf("org-%d", i), "2"), "audit.org"); got != Retry {
			t.Errorf("Flush = %v with an unwritable store, want Retry", got)
		}
	}
	os.Remove(cfg.StoreDir)
	if got := in.Flush(event("org-a", "2"), "audit.org"); got != Retry {
		t.Errorf("Flush = %v while the store is created again, want Retry", got)
	}
	if got := in.Flush(event("org-a", "2"), "audit.org"); got != OK {
		t.Errorf("Flush = %v after the store was created again, want OK", got)
	}
	in.Close()
	seen := fake.deliveredIDs(t)
	for _, id := range []string{"1", "2"} {
		if seen[id] != 1 {
			t.Errorf("record %s delivered %d times, want once (acknowledged before the removal or after)", id, seen[id])
		}
	}
	if log := in.sink.joined(); !strings.Contains(log, "removed while in use") {
		t.Errorf("no line says the Store_Dir was removed:\n%s", log)
	}
	if n := in.sink.count("cannot buffer records"); n != 1 {
		t.Errorf("%d lines for 20 chunks refused for one cause:\n%s", n, in.sink.joined())
	}
}

func TestTakenKeyMovesToTheNextFreeMillisecond(t *testing.T) {
	frozen := time.UnixMilli(1769611845000)
	taken := "org-a/org-audit-logs-1769611845000.json.gz"
	fake := &fakeS3{objects: map[string][]byte{taken: nil, "org-a/org-audit-logs-1769611845001.json.gz": nil}}
	in := startTest(t, testConfig(t), "test", fake, TestHooks{keyClock: func() time.Time { return frozen }})
	in.Flush(event("org-a", "1"), "audit.org")
	in.Close()
	if _, ok := fake.objects["org-a/org-audit-logs-1769611845002.json.gz"]; !ok || len(fake.objects) != 3 {
		t.Errorf("objects %v", fake.objects)
	}
	if log := in.sink.joined(); !strings.Contains(log, "already exists in S3") {
		t.Errorf("log:\n%s", log)
	}
}

func TestDeadLetterFullOrFailing(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, cfg *conf.Config)
		want    Result
		log     string
		objects int // the good record is delivered, once
	}{
		{"full: rejected records discarded, good ones kept", func(t *testing.T, cfg *conf.Config) {
			cfg.DeadLetterLimitSize = 20
		}, OK, `kept 0 and discarded 1 of a chunk's 1 rejected record(s) with tag "audit.user" (first: org_id "../x"`, 1},
		{"unwritable: the chunk is retried and nothing of it is buffered", func(t *testing.T, cfg *conf.Config) {
			if err := os.MkdirAll(filepath.Join(cfg.StoreDir, buffer.DeadLetterFile), 0o700); err != nil {
				t.Fatal(err)
			}
		}, Retry, "cannot write 1 rejected records to", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeS3{}
			cfg := testConfig(t)
			tc.prepare(t, cfg)
			in := startTest(t, cfg, "test", fake, TestHooks{})
			if got := in.Flush(cat(event("../x", "bad"), event("org-a", "good")), "audit.user"); got != tc.want {
				t.Errorf("Flush = %v, want %v", got, tc.want)
			}
			in.Close()
			if len(fake.objects) != tc.objects {
				t.Errorf("%d objects, want %d", len(fake.objects), tc.objects)
			}
			if log := in.sink.joined(); !strings.Contains(log, tc.log) {
				t.Errorf("no log line has %q:\n%s", tc.log, log)
			}
		})
	}
}

func TestStatusLineReportsFailuresAndWhatWaits(t *testing.T) {
	cfg := testConfig(t)
	cfg.StatusInterval = time.Second
	in := startTest(t, cfg, "test", &fakeS3{failN: 1 << 30}, TestHooks{})
	if got := in.Flush(cat(event("org-a", "1"), event("org-a", "2"), event("../x", "3")), "audit.user"); got != OK {
		t.Fatalf("Flush = %v", got)
	}
	in.sealDue()
	in.waitLogged(t, "upload of org-a/user-audit-logs-")
	in.clock.Advance(cfg.StatusInterval)
	m := in.waitLog(t, regexp.MustCompile(`status: 2 records accepted, 1 rejected, 0 delivered in 0 objects; `+
		`failed upload attempts: ([1-9][0-9]*) retriable, 0 credentials, 0 refused; 0 key conflicts \(412\), 0 role re-assumptions, 0 batches quarantined; `+
		`1 sealed batches waiting for upload; the oldest undelivered record arrived 2s ago; ([1-9][0-9]*) bytes buffered in Store_Dir`))
	t.Logf("status after %s failed attempts, %s bytes buffered", m[1], m[2])
}

func TestStatusLineOnlyWhenSomethingHappenedOrWaits(t *testing.T) {
	cfg := testConfig(t)
	cfg.StatusInterval = time.Hour // the sealer's own report stays quiet; the test drives one with its clock
	in := startTest(t, cfg, "test", &fakeS3{}, TestHooks{})
	var st statusReport
	t0 := in.clock.Now()
	logged := func(at time.Duration) bool {
		before := in.sink.count("status: ")
		st.maybe(in.Instance, t0.Add(at))
		return in.sink.count("status: ") > before
	}
	steps := []struct {
		at   time.Duration
		act  func()
		want bool
	}{
		{0, nil, false},         // starts the clock
		{time.Hour, nil, false}, // idle since start
		{90 * time.Minute, func() { in.Flush(event("org-a", "1"), "audit.org") }, false}, // not yet due
		{2 * time.Hour, nil, true}, // a record was accepted
		{3 * time.Hour, func() { in.sealDue(); in.waitDelivered(t, 1); in.waitSettled(t) }, true}, // it was delivered
		{4 * time.Hour, nil, false}, // idle again
	}
	for i, s := range steps {
		if s.act != nil {
			s.act()
		}
		if got := logged(s.at); got != s.want {
			t.Errorf("step %d at %s: logged %v, want %v:\n%s", i, s.at, got, s.want, in.sink.joined())
		}
	}
}

// TestClockStepBackUnderFailingUploads: a batch waits for upload while the clock moves on and then steps back
// to its millisecond; the next batch of the stream must not take that millisecond (it used to be renamed over
// the waiting batch), and every record is delivered once uploads work again.
func TestClockStepBackUnderFailingUploads(t *testing.T) {
	fake := &fakeS3{down: "b-1"}
	t1 := time.UnixMilli(1769611845000)
	var mu sync.Mutex
	keyNow := t1
	keyClock := func() time.Time { mu.Lock(); defer mu.Unlock(); return keyNow }
	setClock := func(t time.Time) { mu.Lock(); keyNow = t; mu.Unlock() }
	in := startTest(t, testConfig(t), "test", fake, TestHooks{keyClock: keyClock})
	in.Flush(event("org-a", "1"), "audit.org")
	in.store.Rotate(time.Time{})
	signal(in.sealNow)
	in.waitPuts(t, 1) // sealed, and waiting for a retry
	setClock(t1.Add(5 * time.Second))
	in.store.Rotate(keyClock()) // rotations used to forget the stream's last millisecond once the clock passed it
	setClock(t1)
	in.Flush(event("org-a", "2"), "audit.org") // sealed by Close, the first batch still on disk
	fake.setDown("")
	in.Close()
	if seen := fake.deliveredIDs(t); seen["1"] != 1 || seen["2"] != 1 || len(seen) != 2 {
		t.Errorf("delivered %v, want records 1 and 2 once each", seen)
	}
}

// TestBatchWhoseFilesAreGoneIsDropped: a batch whose object was deleted from Store_Dir while it waited for a
// retry is not retried forever: it leaves the queue with one error line naming it, and is counted.
func TestBatchWhoseFilesAreGoneIsDropped(t *testing.T) {
	cfg := testConfig(t)
	in := startTest(t, cfg, "test", &fakeS3{down: "b-1"}, TestHooks{})
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.sealDue()
	in.waitLogged(t, "upload of org-a/org-audit-logs-")
	objects, _ := filepath.Glob(filepath.Join(cfg.StoreDir, "batches", "*.json.gz"))
	if len(objects) != 1 {
		t.Fatalf("batches %v", objects)
	}
	if err := os.Remove(objects[0]); err != nil {
		t.Fatal(err)
	}
	in.clock.Advance(backoffCap) // past the retry
	m := in.waitLog(t, regexp.MustCompile(`(?m)batch (org-a/org-audit-logs-[0-9]+\.json\.gz) \(2 records of org-a/org\) cannot be delivered: its object .*\.json\.gz is gone from Store_Dir, deleted while it waited for upload; dropped from the upload queue$`))
	in.waitSettled(t)
	in.Close()
	stopped := regexp.MustCompile(`stopped: .*, 0 batches quarantined, 1 batches lost \(their files were deleted from Store_Dir\)$`)
	if log := in.sink.joined(); in.sink.count(m[1]+" (2 records of org-a/org) cannot be delivered") != 1 || !stopped.MatchString(log) {
		t.Errorf("the batch is not named once, not counted, or still queued at shutdown:\n%s", log)
	}
	if left, _ := filepath.Glob(filepath.Join(cfg.StoreDir, "batches", "*")); len(left) != 0 {
		t.Errorf("left in batches/: %v", left)
	}
}
