package plugin

import (
	"context"
	"io"
	"iter"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
)

// panickySender is the fake S3, except that its next Put or PutDigest panics once armed.
type panickySender struct {
	*fakeS3
	put, putDigest atomic.Bool
}

func (p *panickySender) Put(ctx context.Context, d conf.Destination, b *buffer.Batch, body []byte, sum string) (string, error) {
	if p.put.CompareAndSwap(true, false) {
		panic("injected: Put panicked")
	}
	return p.fakeS3.Put(ctx, d, b, body, sum)
}

func (p *panickySender) PutDigest(ctx context.Context, d conf.Destination, key string, body []byte, metaKey, signature string) error {
	if p.putDigest.CompareAndSwap(true, false) {
		panic("injected: PutDigest panicked")
	}
	return p.fakeS3.PutDigest(ctx, d, key, body, metaKey, signature)
}

func startPanicky(t *testing.T, cfg *conf.Config) (*testInstance, *panickySender) {
	t.Helper()
	p := &panickySender{fakeS3: &fakeS3{}}
	clk := newFakeClock()
	return startWith(t, cfg, "test", &testInstance{clock: clk, s3: p.fakeS3, sink: &logSink{}}, deps{send: p, clock: clk}), p
}

// checkPanics checks the panics counted by loop: every loop has its series, at 0 unless want says otherwise.
func checkPanics(t *testing.T, in *testInstance, want map[string]float64) {
	t.Helper()
	got := scrape(t, in.Instance, "test")
	for _, l := range []string{"sealer", "uploader", "reloader", "digests", "metrics"} {
		key := "wivaudit_panics_total{loop=" + l + "}"
		if v, ok := got[key]; !ok || v != want[l] {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want[l])
		}
	}
}

// checkPanicLine checks that the panic was logged once, on one line, with the stack down to where it was
// raised (a file:line the stack names).
func checkPanicLine(t *testing.T, in *testInstance, what, raisedAt string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(in.sink.joined(), "\n") {
		if strings.Contains(l, " panicked: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], what+" panicked: ") || !strings.Contains(lines[0], "goroutine ") ||
		!strings.Contains(lines[0], raisedAt) {
		t.Errorf("want one line saying %q with the stack of the panic:\n%s", what+" panicked", in.sink.joined())
	}
}

// TestUploaderPanicIsContained: an upload attempt panics (here the sender). Fluent Bit lives on; the batch
// goes back to its lane, is tried again after a backoff and delivered once; the panic is logged and counted.
func TestUploaderPanicIsContained(t *testing.T) {
	in, p := startPanicky(t, testConfig(t))
	checkPanics(t, in, nil)
	p.put.Store(true)
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.sealDue()
	in.waitLogged(t, "panicked: injected: Put panicked")
	in.clock.Advance(backoffCap)
	in.waitDelivered(t, 2)
	in.waitSettled(t)
	if seen := p.deliveredIDs(t); seen["1"] != 1 || seen["2"] != 1 || len(seen) != 2 {
		t.Errorf("delivered %v, want records 1 and 2 once each", seen)
	}
	checkPanicLine(t, in, "an uploader", "_test.go:")
	checkPanics(t, in, map[string]float64{"uploader": 1})
}

// TestSealerPanicIsContained: the sealer panics between two seals (here its status line); it starts again
// after a backoff and seals what closed meanwhile.
func TestSealerPanicIsContained(t *testing.T) {
	cfg := testConfig(t)
	cfg.StatusInterval = cfg.UploadTimeout
	in := startTest(t, cfg, "test", &fakeS3{}, TestHooks{})
	in.sink.panicAt("status: ")
	in.Flush(event("org-a", "1"), "audit.org")
	in.sealDue() // starts the status clock, and seals
	in.waitDelivered(t, 1)
	in.Flush(event("org-a", "2"), "audit.org")
	in.sealDue() // the status line panics before this tick's seal
	in.waitLogged(t, "panicked: injected: the log function panicked")
	in.clock.Advance(time.Minute)
	in.waitDelivered(t, 2)
	checkPanicLine(t, in, "the sealer", "_test.go:")
	checkPanics(t, in, map[string]float64{"sealer": 1})
}

// TestReloaderPanicIsContained: the destinations reloader panics (here as it logs the reload); it starts
// again after a backoff and applies the next version of the file.
func TestReloaderPanicIsContained(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	in := startRouted(t, "hold", file, &fakeS3{})
	in.sink.panicAt("Destinations_File reloaded")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-b"})
	in.reload()
	in.waitLogged(t, "panicked: injected: the log function panicked")
	in.clock.Advance(time.Minute)
	writeDestinations(t, file, map[string]string{"org-a": "bucket-c"})
	in.reload()
	in.waitLogged(t, "Destinations_File reloaded")
	in.Flush(event("org-a", "1"), "audit.org")
	in.sealDue()
	in.waitRoute(t, "org-a", "bucket-c")
	checkPanicLine(t, in, "the destinations reloader", "_test.go:")
	checkPanics(t, in, map[string]float64{"reloader": 1})
}

// TestDigestPanicIsContained: a digest upload panics (here the sender); the digest stays pending and is
// uploaded at the next round.
func TestDigestPanicIsContained(t *testing.T) {
	cfg, pub := digestConfig(t, nil)
	in, p := startPanicky(t, cfg)
	p.putDigest.Store(true)
	in.clock.Advance(10 * time.Second)
	in.waitLogged(t, "panicked: injected: PutDigest panicked")
	in.clock.Advance(time.Minute)
	in.waitDigests(t, "org-a", 1, pub)
	checkPanicLine(t, in, "the digest loop", "_test.go:")
	checkPanics(t, in, map[string]float64{"digests": 1})
}

// TestCollectorPanicIsContained: a scrape panics in the collector (here its role counts are missing),
// which Prometheus runs in a goroutine of its own; the scrape is cut short, the next one works.
func TestCollectorPanicIsContained(t *testing.T) {
	in := startTest(t, testConfig(t), "test", &fakeS3{}, TestHooks{})
	roles := in.roles
	in.roles = nil
	scrape(t, in.Instance, "test")
	in.roles = roles
	in.waitLogged(t, "the metrics collector panicked: runtime error: invalid memory address or nil pointer dereference")
	checkPanicLine(t, in, "the metrics collector", "metrics.go:")
	checkPanics(t, in, map[string]float64{"metrics": 1})
}

// TestSealEncoderPanicIsContained: the encoder panics while it composes a batch's object from the log for its
// upload. The uploader's attempt ends as after a failed one: the batch stays in the log, is composed again
// after its backoff, and delivered once.
func TestSealEncoderPanicIsContained(t *testing.T) {
	var armed atomic.Bool
	armed.Store(true)
	gzip := objectEncoder(6)
	encode := func(w io.Writer, records iter.Seq[[]byte]) error {
		if armed.CompareAndSwap(true, false) {
			for range records {
				panic("injected: the encoder panicked") // mid-object, once its first records were read
			}
		}
		return gzip(w, records)
	}
	clk, fake := newFakeClock(), &fakeS3{}
	cfg := testConfig(t)
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, encode: encode})
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.sealDue()
	in.waitLogged(t, "panicked: injected: the encoder panicked")
	in.clock.Advance(backoffCap)
	in.waitDelivered(t, 2)
	in.waitSettled(t)
	if seen := fake.deliveredIDs(t); seen["1"] != 1 || seen["2"] != 1 || len(seen) != 2 {
		t.Errorf("delivered %v, want records 1 and 2 once each", seen)
	}
	if left, _ := filepath.Glob(filepath.Join(cfg.StoreDir, "batches", "*")); len(left) != 0 {
		t.Errorf("left in batches/: %v", left)
	}
	checkPanicLine(t, in, "an uploader", "_test.go:")
	checkPanics(t, in, map[string]float64{"uploader": 1})
}

func TestRestartAfter(t *testing.T) {
	cases := []struct {
		inARow   int
		ran      time.Duration
		wait     time.Duration
		nowInRow int
	}{
		{0, 0, time.Second, 1},                        // the first panic
		{1, time.Second, 2 * time.Second, 2},          // again soon after its restart
		{5, 0, 32 * time.Second, 6},                   // doubling
		{6, 0, time.Minute, 7},                        // capped
		{40, 0, time.Minute, 41},                      // capped, however many
		{6, time.Minute, time.Second, 1},              // it ran for the cap since its restart: a new row
		{6, 59 * time.Second, time.Minute, 7},         // not quite
		{3, -time.Hour, 8 * time.Second, 4},           // the clock stepped back meanwhile
		{0, 24 * time.Hour, restartBase, 1},           // a first panic after a long run
		{2, restartCap + time.Second, restartBase, 1}, // a panic a while after the last
	}
	for _, tc := range cases {
		wait, row := restartAfter(tc.inARow, tc.ran)
		if wait != tc.wait || row != tc.nowInRow {
			t.Errorf("restartAfter(%d, %s) = %s, %d; want %s, %d", tc.inARow, tc.ran, wait, row, tc.wait, tc.nowInRow)
		}
	}
}
