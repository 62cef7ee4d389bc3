package plugin

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/test/chunks"
)

// The unit tests never wait on real time: the instances run on a fake clock the tests move, and the tests
// wait for what they expect (a log line, an upload) on channels. giveUp only bounds how long a failing test
// waits before it says what it waited for, long enough for the slowest disk: what the tests wait for
// happens as soon as the plugin's own work (its fsyncs) is done.
func giveUp(t *testing.T) <-chan time.Time {
	d := 2 * time.Minute
	if deadline, ok := t.Deadline(); ok {
		d = min(d, time.Until(deadline)-5*time.Second)
	}
	return time.After(d)
}

// events lets a test wait for something without polling: next returns a channel that is closed at the next
// event.
type events struct {
	mu sync.Mutex
	ch chan struct{}
}

func (e *events) next() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	return e.ch
}

func (e *events) fire() {
	e.mu.Lock()
	if e.ch != nil {
		close(e.ch)
		e.ch = nil
	}
	e.mu.Unlock()
}

// waitFor waits until cond holds, looking again at each event of e, and fails the test with why() when it
// gives up.
func waitFor(t *testing.T, e *events, cond func() bool, why func() string) {
	t.Helper()
	limit := giveUp(t)
	for {
		next := e.next() // before cond: an event between the two is not missed
		if cond() {
			return
		}
		select {
		case <-next:
		case <-limit:
			t.Fatal(why())
		}
	}
}

// goReturns runs f in a goroutine; the function it returns waits for f to return, and fails the test with
// why when it gives up.
func goReturns(f func()) func(t *testing.T, why string) {
	returned := make(chan struct{})
	go func() {
		f()
		close(returned)
	}()
	return func(t *testing.T, why string) {
		t.Helper()
		select {
		case <-returned:
		case <-giveUp(t):
			t.Fatal(why)
		}
	}
}

// fakeClock is a clock that moves only when a test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter
	set     events // fired whenever a timer or ticker is set
}

// fakeWaiter is a timer (every 0) or a ticker.
type fakeWaiter struct {
	at    time.Time
	every time.Duration
	c     chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.UnixMilli(1769611845000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) (<-chan time.Time, func()) { return c.add(t, 0) }

func (c *fakeClock) Every(d time.Duration) (<-chan time.Time, func()) { return c.add(time.Time{}, d) }

// add sets a timer at t, or a ticker every d from now.
func (c *fakeClock) add(t time.Time, every time.Duration) (<-chan time.Time, func()) {
	w := &fakeWaiter{at: t, every: every, c: make(chan time.Time, 1)}
	c.mu.Lock()
	if every > 0 {
		w.at = c.now.Add(every)
	} else if !t.After(c.now) {
		w.c <- c.now
		c.mu.Unlock()
		return w.c, func() {}
	}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	c.set.fire()
	return w.c, func() {
		c.mu.Lock()
		c.waiters = slices.DeleteFunc(c.waiters, func(x *fakeWaiter) bool { return x == w })
		c.mu.Unlock()
	}
}

// Advance moves the clock by d and fires the timers and tickers it passes; like real ones, a ticker whose
// reader is not ready drops the tick.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			select {
			case w.c <- c.now:
			default:
			}
			if w.every == 0 {
				continue
			}
			for !w.at.After(c.now) {
				w.at = w.at.Add(w.every)
			}
		}
		kept = append(kept, w)
	}
	c.waiters = kept
}

func (c *fakeClock) waitsFor(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.waiters, func(w *fakeWaiter) bool { return w.at.Equal(t) })
}

// fakeS3 is S3 with conditional writes, behind the sender the uploads go through: it keeps what it is given,
// and can fail the first calls or every call to one bucket. The integration tests use a real server; this one
// lets the race detector watch the flush, seal and upload paths.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte
	buckets map[string]string            // key -> bucket
	meta    map[string]map[string]string // key -> user metadata (digests)
	failN   int
	calls   int
	down    string // a bucket that refuses every upload
	refused string // a bucket whose role refuses to be assumed, as STS does with a wrong External ID
	// script, when set, fails the calls for which it returns an error (the nth call since the first, to key).
	script func(n int, key string) error
	taken  int    // uploads refused because their key was stored already
	puts   events // fired after each call
}

// Put stores the object, its version "v<n>" for the nth object stored. Like S3, it refuses a body that does
// not match its checksums (BadDigest).
func (f *fakeS3) Put(_ context.Context, d conf.Destination, b *buffer.Batch, body []byte, sum string) (string, error) {
	defer f.puts.fire()
	body = slices.Clone(body) // the caller reuses its buffer
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refuse(d, b.Key); err != nil {
		return "", err
	}
	if md, sha := md5.Sum(body), sha256.Sum256(body); base64.StdEncoding.EncodeToString(md[:]) != b.ContentMD5 ||
		base64.StdEncoding.EncodeToString(sha[:]) != sum {
		return "", &smithy.GenericAPIError{Code: "BadDigest", Message: "The Content-MD5 or checksum value that you specified did not match what the server received."}
	}
	if f.objects == nil {
		f.objects = map[string][]byte{}
	}
	if f.buckets == nil {
		f.buckets = map[string]string{}
	}
	f.objects[b.Key] = body
	f.buckets[b.Key] = d.Bucket
	return fmt.Sprintf("v%d", len(f.objects)), nil
}

// refuse counts a call and says how it fails, if it does: the first failN calls and every call to the bucket
// that is down, the refused bucket's role, the script, a key taken. The caller holds mu.
func (f *fakeS3) refuse(d conf.Destination, key string) error {
	f.calls++
	if f.calls <= f.failN || d.Bucket == f.down {
		return errors.New("injected failure")
	}
	if d.Bucket == f.refused {
		return &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole", Err: &smithy.GenericAPIError{
			Code: "AccessDenied", Message: "not authorized to perform sts:AssumeRole with ExternalId " + d.ExternalID}}
	}
	if f.script != nil {
		if err := f.script(f.calls, key); err != nil {
			return err
		}
	}
	if _, dup := f.objects[key]; dup {
		f.taken++
		return &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"}
	}
	return nil
}

// PutDigest keeps a digest and its signature, as S3 with conditional writes would.
func (f *fakeS3) PutDigest(_ context.Context, d conf.Destination, key string, body []byte, metaKey, signature string) error {
	defer f.puts.fire()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refuse(d, key); err != nil {
		return err
	}
	if f.objects == nil {
		f.objects, f.buckets = map[string][]byte{}, map[string]string{}
	}
	if f.meta == nil {
		f.meta = map[string]map[string]string{}
	}
	f.objects[key], f.buckets[key], f.meta[key] = slices.Clone(body), d.Bucket, map[string]string{metaKey: signature}
	return nil
}

func (f *fakeS3) MayReassume(conf.Destination, time.Time) bool { return false }
func (f *fakeS3) Reassume(conf.Destination, time.Time) bool    { return false }

// setDown makes every upload to bucket fail ("": none).
func (f *fakeS3) setDown(bucket string) {
	f.mu.Lock()
	f.down = bucket
	f.mu.Unlock()
}

func (f *fakeS3) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// bucketsOf returns the bucket each organisation's objects went to.
func (f *fakeS3) bucketsOf() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for key, bucket := range f.buckets {
		out[strings.SplitN(key, "/", 2)[0]] = bucket
	}
	return out
}

// deliveredIDs counts the ids of the records in the objects delivered.
func (f *fakeS3) deliveredIDs(t *testing.T) map[string]int {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]int{}
	for key, body := range f.objects {
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

type logSink struct {
	mu    sync.Mutex
	lines []string
	added events
	// panicOn makes the next line that contains it panic instead of being logged: a panic in whichever
	// goroutine logs that line.
	panicOn string
}

func (l *logSink) log(level Level, msg string) {
	l.mu.Lock()
	if l.panicOn != "" && strings.Contains(msg, l.panicOn) {
		l.panicOn = ""
		l.mu.Unlock()
		panic("injected: the log function panicked")
	}
	l.lines = append(l.lines, msg)
	l.mu.Unlock()
	l.added.fire()
}

// panicAt arms panicOn.
func (l *logSink) panicAt(s string) {
	l.mu.Lock()
	l.panicOn = s
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

// testInstance is an instance under test: on a fake clock, uploading to a fake S3, logging to a sink.
type testInstance struct {
	*Instance
	clock *fakeClock
	s3    *fakeS3
	sink  *logSink
}

// startTest starts an instance named name with cfg. It is shut down when the test ends, if it was not
// before.
func startTest(t *testing.T, cfg *conf.Config, name string, s3 *fakeS3, hooks TestHooks) *testInstance {
	t.Helper()
	return startOn(t, newFakeClock(), cfg, name, s3, hooks)
}

// startOn starts an instance as startTest does, on a clock of the test's: a restart goes on from where the
// clock is.
func startOn(t *testing.T, clk *fakeClock, cfg *conf.Config, name string, s3 *fakeS3, hooks TestHooks) *testInstance {
	t.Helper()
	return startWith(t, cfg, name, &testInstance{clock: clk, s3: s3, sink: &logSink{}}, deps{send: s3, clock: clk, hooks: hooks})
}

// startWith starts ti's instance with cfg and the dependencies given: a sender other than ti's fake S3, or
// test hooks of the package's own.
func startWith(t *testing.T, cfg *conf.Config, name string, ti *testInstance, with deps) *testInstance {
	t.Helper()
	in, err := start(cfg, name, ti.sink.log, with)
	if err != nil {
		t.Fatal(err)
	}
	ti.Instance = in
	t.Cleanup(func() { ti.shutDown(t) })
	return ti
}

// shutDown closes the instance; when Close waits out Shutdown_Timeout for batches it cannot deliver, the
// clock is moved past it.
func (ti *testInstance) shutDown(t *testing.T) {
	t.Helper()
	deadline := ti.clock.Now().Add(ti.cfg.ShutdownTimeout)
	closed := make(chan struct{})
	go func() {
		ti.Close()
		close(closed)
		ti.clock.set.fire()
	}()
	isClosed := func() bool {
		select {
		case <-closed:
			return true
		default:
			return false
		}
	}
	waitFor(t, &ti.clock.set, func() bool { return isClosed() || ti.clock.waitsFor(deadline) }, func() string {
		return "Close neither returned nor waited for Shutdown_Timeout"
	})
	ti.clock.Advance(ti.cfg.ShutdownTimeout)
	waitFor(t, &ti.clock.set, isClosed, func() string { return "Close did not return after Shutdown_Timeout" })
}

// waitLog waits for a log line that matches want and returns its submatches.
func (ti *testInstance) waitLog(t *testing.T, want *regexp.Regexp) []string {
	t.Helper()
	var m []string
	waitFor(t, &ti.sink.added, func() bool { m = want.FindStringSubmatch(ti.sink.joined()); return m != nil }, func() string {
		return fmt.Sprintf("no log line says %q:\n%s", want, ti.sink.joined())
	})
	return m
}

// waitLogged waits for a log line that says want.
func (ti *testInstance) waitLogged(t *testing.T, want string) {
	t.Helper()
	ti.waitLog(t, regexp.MustCompile(regexp.QuoteMeta(want)))
}

// waitRoute waits until org's records reached bucket.
func (ti *testInstance) waitRoute(t *testing.T, org, bucket string) {
	t.Helper()
	waitFor(t, &ti.s3.puts, func() bool { return ti.s3.bucketsOf()[org] == bucket }, func() string {
		return fmt.Sprintf("%s's records did not reach %s: %v\n%s", org, bucket, ti.s3.bucketsOf(), ti.sink.joined())
	})
}

// waitDelivered waits until n records were delivered: the debug line of an upload follows its count.
func (ti *testInstance) waitDelivered(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, &ti.sink.added, func() bool { return ti.delivered.Load() >= n }, func() string {
		return fmt.Sprintf("%d of %d records delivered", ti.delivered.Load(), n)
	})
}

// waitSettled waits until no batch is queued or in flight.
func (ti *testInstance) waitSettled(t *testing.T) {
	t.Helper()
	if !ti.queue.drain(giveUp(t)) {
		t.Fatalf("%d batches still queued:\n%s", ti.queue.len(), ti.sink.joined())
	}
}

// waitQueued waits until n batches are queued or in flight: a delivered batch leaves the queue just after its
// records are counted.
func (ti *testInstance) waitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := giveUp(t)
	for ti.queue.len() != n {
		select {
		case <-ti.queue.changed:
		case <-deadline:
			t.Fatalf("%d batches queued, want %d:\n%s", ti.queue.len(), n, ti.sink.joined())
		}
	}
}

// waitPuts waits until S3 was called n times.
func (ti *testInstance) waitPuts(t *testing.T, n int) {
	t.Helper()
	waitFor(t, &ti.s3.puts, func() bool { return ti.s3.callCount() >= n }, func() string {
		return fmt.Sprintf("%d uploads, want %d:\n%s", ti.s3.callCount(), n, ti.sink.joined())
	})
}

// sealDue moves the clock by Upload_Timeout: the sealer closes and seals the batches open until then, and
// queues them for upload.
func (ti *testInstance) sealDue() { ti.clock.Advance(ti.cfg.UploadTimeout) }

func testConfig(t *testing.T) *conf.Config {
	c, err := conf.Parse(conf.Map{"Bucket": "b-1", "Unlisted_Orgs": "archive", "Store_Dir": t.TempDir(), "Upload_Timeout": "1s", "Total_File_Size": "2K", "Shutdown_Timeout": "30s"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// event is one V2 event whose body is {"org_id": org, "id": id}.
func event(org, id string) []byte {
	body := cat([]byte{0x82, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xa0 | byte(len(org))}, []byte(org),
		[]byte{0xa2, 'i', 'd', 0xa0 | byte(len(id))}, []byte(id))
	return chunks.V2(chunks.EventTime(time.Unix(1769611845, 0)), body)
}
