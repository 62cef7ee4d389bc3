package plugin

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/test/chunks"
)

// fakeS3 is S3 with conditional writes, behind the sender the uploads go through: it keeps what it is given,
// and can fail the first calls or every call to one bucket. The integration tests use a real server; this one
// lets the race detector watch the flush, seal and upload paths.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte
	buckets map[string]string // key -> bucket
	failN   int
	calls   int
	down    string // a bucket that refuses every upload
}

func (f *fakeS3) Put(_ context.Context, d conf.Destination, b *buffer.Batch) error {
	obj, err := b.OpenObject()
	if err != nil {
		return err
	}
	body, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.failN || d.Bucket == f.down {
		return errors.New("injected failure")
	}
	if _, dup := f.objects[b.Key]; dup {
		return &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"}
	}
	if sum := md5.Sum(body); base64.StdEncoding.EncodeToString(sum[:]) != b.ContentMD5 || int64(len(body)) != b.ObjectBytes {
		return fmt.Errorf("%s: the object does not match its manifest", b.Key)
	}
	f.objects[b.Key] = body
	if f.buckets != nil {
		f.buckets[b.Key] = d.Bucket
	}
	return nil
}

func (f *fakeS3) MayReassume(conf.Destination, time.Time) bool { return false }
func (f *fakeS3) Reassume(conf.Destination, time.Time) bool    { return false }

func testConfig(t *testing.T) *conf.Config {
	c, err := conf.Parse(conf.Map{"Bucket": "b-1", "Unlisted_Orgs": "archive", "Store_Dir": t.TempDir(), "Upload_Timeout": "1s", "Total_File_Size": "2K", "Shutdown_Timeout": "30s"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) log(level Level, msg string) {
	l.mu.Lock()
	l.lines = append(l.lines, msg)
	l.mu.Unlock()
}

func (l *logSink) joined() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// count is how many lines contain s.
func (l *logSink) count(s string) int {
	return strings.Count(l.joined(), s)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// event is one V2 event whose body is {"org_id": org, "id": id}.
func event(org, id string) []byte {
	body := cat([]byte{0x82, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xa0 | byte(len(org))}, []byte(org),
		[]byte{0xa2, 'i', 'd', 0xa0 | byte(len(id))}, []byte(id))
	return chunks.V2(chunks.EventTime(time.Unix(1769611845, 0)), body)
}

func TestConcurrentFlushesDeliverEverythingOnce(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}, failN: 3}
	sink := &logSink{}
	in, err := start(testConfig(t), "test", sink.log, fake, testHooks{})
	if err != nil {
		t.Fatal(err)
	}
	const workers, chunksEach, perChunk = 6, 40, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunksEach {
				var chunk []byte
				for r := range perChunk {
					chunk = append(chunk, event(fmt.Sprintf("org-%d", r%2), fmt.Sprintf("%d-%d-%d", w, c, r))...)
				}
				if got := in.Flush(chunk, "audit.api"); got != OK {
					t.Errorf("Flush = %v", got)
				}
			}
		}()
	}
	wg.Wait()
	in.Close()

	seen := deliveredIDs(t, fake)
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
	fake := &fakeS3{objects: map[string][]byte{}}
	sink := &logSink{}
	cfg := testConfig(t)
	in, err := start(cfg, "test", sink.log, fake, testHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Flush(cat(event("../x", "bad"), event("org-a", "good")), "audit.user"); got != OK {
		t.Fatalf("Flush = %v", got)
	}
	in.Close()
	if len(fake.objects) != 1 {
		t.Errorf("objects %v", fake.objects)
	}
	joined := strings.Join(sink.lines, "\n")
	if !strings.Contains(joined, `rejected 1 record`) || !strings.Contains(joined, "deadletter.jsonl") {
		t.Errorf("log:\n%s", joined)
	}
}

func TestCloseLeavesUndeliveredBatchesOnDisk(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}, failN: 1 << 30}
	sink := &logSink{}
	cfg := testConfig(t)
	cfg.ShutdownTimeout = 200 * time.Millisecond
	in, err := start(cfg, "test", sink.log, fake, testHooks{})
	if err != nil {
		t.Fatal(err)
	}
	in.Flush(event("org-a", "1"), "audit.org")
	in.Close()
	if !strings.Contains(strings.Join(sink.lines, "\n"), "1 batches stay in") {
		t.Errorf("log:\n%s", strings.Join(sink.lines, "\n"))
	}
	fake.failN = 0
	in, err = start(cfg, "test", sink.log, fake, testHooks{})
	if err != nil {
		t.Fatal(err)
	}
	in.Close()
	if len(fake.objects) != 1 {
		t.Errorf("after restart %d objects, want 1", len(fake.objects))
	}
}

// TestFlushAsksForRetryWhenTheDiskRefuses: Store_Dir removed while running, with a file where it was: every
// chunk is retried, and the refusals, whatever the stream, log one line per cause every 30 s, not one per
// chunk. Once the folder can be created again it is, and records acknowledged before and after are delivered.
func TestFlushAsksForRetryWhenTheDiskRefuses(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}}
	cfg := testConfig(t)
	sink := &logSink{}
	in, err := start(cfg, "test", sink.log, fake, testHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
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
	seen := deliveredIDs(t, fake)
	for _, id := range []string{"1", "2"} {
		if seen[id] != 1 {
			t.Errorf("record %s delivered %d times, want once (acknowledged before the removal or after)", id, seen[id])
		}
	}
	if !strings.Contains(strings.Join(sink.lines, "\n"), "removed while in use") {
		t.Errorf("no line says the Store_Dir was removed:\n%s", strings.Join(sink.lines, "\n"))
	}
	if n := sink.count("cannot buffer records"); n != 1 {
		t.Errorf("%d lines for 20 chunks refused for one cause:\n%s", n, sink.joined())
	}
}

func TestTakenKeyMovesToTheNextFreeMillisecond(t *testing.T) {
	frozen := time.UnixMilli(1769611845000)
	taken := "org-a/org-audit-logs-1769611845000.json.gz"
	fake := &fakeS3{objects: map[string][]byte{taken: nil, "org-a/org-audit-logs-1769611845001.json.gz": nil}}
	sink := &logSink{}
	in, err := start(testConfig(t), "test", sink.log, fake, testHooks{keyClock: func() time.Time { return frozen }})
	if err != nil {
		t.Fatal(err)
	}
	in.Flush(event("org-a", "1"), "audit.org")
	in.Close()
	if _, ok := fake.objects["org-a/org-audit-logs-1769611845002.json.gz"]; !ok || len(fake.objects) != 3 {
		t.Errorf("objects %v", fake.objects)
	}
	if !strings.Contains(strings.Join(sink.lines, "\n"), "already exists in S3") {
		t.Errorf("log:\n%s", strings.Join(sink.lines, "\n"))
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
			fake := &fakeS3{objects: map[string][]byte{}}
			sink := &logSink{}
			cfg := testConfig(t)
			tc.prepare(t, cfg)
			in, err := start(cfg, "test", sink.log, fake, testHooks{})
			if err != nil {
				t.Fatal(err)
			}
			if got := in.Flush(cat(event("../x", "bad"), event("org-a", "good")), "audit.user"); got != tc.want {
				t.Errorf("Flush = %v, want %v", got, tc.want)
			}
			in.Close()
			if len(fake.objects) != tc.objects {
				t.Errorf("%d objects, want %d", len(fake.objects), tc.objects)
			}
			if joined := strings.Join(sink.lines, "\n"); !strings.Contains(joined, tc.log) {
				t.Errorf("no log line has %q:\n%s", tc.log, joined)
			}
		})
	}
}

func TestStatusLineReportsFailuresAndWhatWaits(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}, failN: 1 << 30}
	sink := &logSink{}
	cfg := testConfig(t)
	cfg.StatusInterval = time.Millisecond
	cfg.ShutdownTimeout = 0
	in, err := start(cfg, "test", sink.log, fake, testHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if got := in.Flush(cat(event("org-a", "1"), event("org-a", "2"), event("../x", "3")), "audit.user"); got != OK {
		t.Fatalf("Flush = %v", got)
	}
	m := waitLogMatch(t, sink, regexp.MustCompile(`status: 2 records accepted, 1 rejected, 0 delivered in 0 objects; `+
		`failed upload attempts: ([1-9][0-9]*) retriable, 0 credentials, 0 refused; 0 key conflicts \(412\), 0 role re-assumptions, 0 batches quarantined; `+
		`1 sealed batches waiting for upload; the oldest undelivered record arrived [0-9]+s ago; ([1-9][0-9]*) bytes buffered in Store_Dir`))
	t.Logf("status after %s failed attempts, %s bytes buffered", m[1], m[2])
}

func TestStatusLineOnlyWhenSomethingHappenedOrWaits(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}}
	sink := &logSink{}
	cfg := testConfig(t)
	cfg.StatusInterval = time.Hour // the sealer's own report stays quiet; the test drives one with its clock
	in, err := start(cfg, "test", sink.log, fake, testHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var st statusReport
	t0 := time.Now()
	logged := func(at time.Duration) bool {
		before := sink.count("status: ")
		st.maybe(in, t0.Add(at))
		return sink.count("status: ") > before
	}
	steps := []struct {
		at   time.Duration
		act  func()
		want bool
	}{
		{0, nil, false},         // starts the clock
		{time.Hour, nil, false}, // idle since start
		{90 * time.Minute, func() { in.Flush(event("org-a", "1"), "audit.org") }, false}, // not yet due
		{2 * time.Hour, nil, true},                                // a record was accepted
		{3 * time.Hour, func() { waitDelivered(t, in, 1) }, true}, // it was delivered
		{4 * time.Hour, nil, false},                               // idle again
	}
	for i, s := range steps {
		if s.act != nil {
			s.act()
		}
		if got := logged(s.at); got != s.want {
			t.Errorf("step %d at %s: logged %v, want %v:\n%s", i, s.at, got, s.want, sink.joined())
		}
	}
}

func waitDelivered(t *testing.T, in *Instance, n int64) {
	t.Helper()
	waitUntil(t, func() bool { return in.delivered.Load() >= n }, func() string {
		return fmt.Sprintf("%d of %d records delivered", in.delivered.Load(), n)
	})
}

// deliveredIDs counts the ids of the records in the objects delivered to the fake.
func deliveredIDs(t *testing.T, fake *fakeS3) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for key, body := range fake.objects {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		var recs []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(plain, &recs); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		for _, r := range recs {
			seen[r.ID]++
		}
	}
	return seen
}

// TestClockStepBackUnderFailingUploads: a batch waits for upload while the clock moves on and then steps back
// to its millisecond; the next batch of the stream must not take that millisecond (it used to be renamed over
// the waiting batch), and every record is delivered once uploads work again.
func TestClockStepBackUnderFailingUploads(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}, down: "b-1"}
	t1 := time.UnixMilli(1769611845000)
	var mu sync.Mutex
	keyNow := t1
	keyClock := func() time.Time { mu.Lock(); defer mu.Unlock(); return keyNow }
	setClock := func(t time.Time) { mu.Lock(); keyNow = t; mu.Unlock() }
	sink := &logSink{}
	in, err := start(testConfig(t), "test", sink.log, fake, testHooks{keyClock: keyClock})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	sealed := func(n int) {
		in.store.Rotate(time.Time{})
		signal(in.sealNow)
		waitUntil(t, func() bool { return in.queue.len() == n }, func() string { return fmt.Sprintf("%d batches queued, want %d", in.queue.len(), n) })
	}
	in.Flush(event("org-a", "1"), "audit.org")
	sealed(1)
	setClock(t1.Add(5 * time.Second))
	in.store.Rotate(keyClock()) // rotations used to forget the stream's last millisecond once the clock passed it
	setClock(t1)
	in.Flush(event("org-a", "2"), "audit.org")
	sealed(2)
	fake.mu.Lock()
	fake.down = ""
	fake.mu.Unlock()
	in.Close()
	seen := deliveredIDs(t, fake)
	if seen["1"] != 1 || seen["2"] != 1 || len(seen) != 2 {
		t.Errorf("delivered %v, want records 1 and 2 once each", seen)
	}
}

// TestBatchWhoseFilesAreGoneIsDropped: a batch whose object was deleted from Store_Dir while it waited for a
// retry is not retried forever: it leaves the queue with one error line naming it, and is counted.
func TestBatchWhoseFilesAreGoneIsDropped(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}, down: "b-1"}
	sink := &logSink{}
	cfg := testConfig(t)
	in, err := start(cfg, "test", sink.log, fake, testHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	waitLog(t, sink, "upload of org-a/org-audit-logs-")
	objects, _ := filepath.Glob(filepath.Join(cfg.StoreDir, "batches", "*.json.gz"))
	if len(objects) != 1 {
		t.Fatalf("batches %v", objects)
	}
	if err := os.Remove(objects[0]); err != nil {
		t.Fatal(err)
	}
	m := waitLogMatch(t, sink, regexp.MustCompile(`batch (org-a/org-audit-logs-[0-9]+\.json\.gz) \(2 records of org-a/org\) cannot be delivered: its object .*\.json\.gz is gone from Store_Dir, deleted while it waited for upload; dropped from the upload queue$`))
	if n := sink.count(m[1] + " (2 records of org-a/org) cannot be delivered"); n != 1 || in.queue.len() != 0 || in.lost.Load() != 1 {
		t.Errorf("%d lines, %d batches queued, %d lost:\n%s", n, in.queue.len(), in.lost.Load(), sink.joined())
	}
	if !strings.Contains(in.counters(), ", 1 batches lost (their files were deleted from Store_Dir)") {
		t.Errorf("counters: %s", in.counters())
	}
	if left, _ := filepath.Glob(filepath.Join(cfg.StoreDir, "batches", "*")); len(left) != 0 {
		t.Errorf("left in batches/: %v", left)
	}
}
