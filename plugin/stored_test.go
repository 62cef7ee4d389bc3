package plugin

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/vfs"
)

// ledgerSync is an fdatasync of one of the delivery ledger's segments.
func ledgerSync(op vfs.Op) bool {
	return op.Kind == vfs.OpDatasync &&
		strings.Contains(op.Path, string(filepath.Separator)+ledger.Folder+string(filepath.Separator))
}

// ledgerSyncs counts the fdatasyncs of the delivery ledger's segments on fsys.
func ledgerSyncs(fsys *vfs.Faults) *atomic.Int64 {
	var n atomic.Int64
	fsys.Hook(func(op vfs.Op) error {
		if ledgerSync(op) {
			n.Add(1)
		}
		return nil
	})
	return &n
}

// flushAndSeal flushes one record for each of orgs organisations and has the sealer seal them all at once.
func (ti *testInstance) flushAndSeal(t *testing.T, orgs int) {
	t.Helper()
	if r := ti.Flush(chunks.AuditChunk(orgs, orgs), "audit.org"); r != OK {
		t.Fatalf("flush: %v", r)
	}
	ti.store.Rotate(time.Time{})
	signal(ti.sealNow)
}

// ledgerListsOnce checks that the ledger lists n objects, each once.
func ledgerListsOnce(t *testing.T, cfg *conf.Config, n int) {
	t.Helper()
	lines := map[string]int{}
	for _, e := range readLedger(t, cfg) {
		lines[e.Key]++
	}
	if len(lines) != n {
		t.Errorf("the ledger lists %d objects, want %d", len(lines), n)
	}
	for key, k := range lines {
		if k != 1 {
			t.Errorf("%s is in the ledger %d times", key, k)
		}
	}
}

// inRounds lets uploads reach S3 in rounds of n at once, as uploads under way at the same time do against a
// real S3, whose answers take a network round trip: the fake's are instant.
type inRounds struct {
	*fakeS3
	n       int
	mu      sync.Mutex
	changed *sync.Cond
	arrived int
}

func (r *inRounds) Put(ctx context.Context, d conf.Destination, b *buffer.Batch, body []byte, sum string) (string, error) {
	r.mu.Lock()
	r.arrived++
	round := (r.arrived + r.n - 1) / r.n
	r.changed.Broadcast()
	for r.arrived < round*r.n {
		r.changed.Wait()
	}
	r.mu.Unlock()
	return r.fakeS3.Put(ctx, d, b, body, sum)
}

// TestStoredObjectsShareLedgerSyncs: uploaders whose uploads are under way together leave their ledger lines
// to one group, recorded in one fdatasync, while they go on with their next batches: with 4 uploaders, at most
// about one sync per round of 4 uploads. Every object is in the ledger once and every record delivered once.
// Before, each uploader waited for its line's sync, and they shared one about every second object.
func TestStoredObjectsShareLedgerSyncs(t *testing.T) {
	cfg := testConfig(t)
	cfg.TotalFileSize = 1 << 20
	cfg.UploadWorkers = 4
	fsys := vfs.NewFaults(vfs.OS)
	syncs := ledgerSyncs(fsys)
	fake := &fakeS3{}
	rounds := &inRounds{fakeS3: fake, n: cfg.UploadWorkers}
	rounds.changed = sync.NewCond(&rounds.mu)
	clk := newFakeClock()
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: rounds, clock: clk, fs: fsys})
	const orgs = 256
	in.flushAndSeal(t, orgs)
	in.waitDelivered(t, orgs)
	in.waitSettled(t)
	if n, most := syncs.Load(), int64(orgs/cfg.UploadWorkers+cfg.UploadWorkers); n > most {
		t.Errorf("%d ledger fdatasyncs for %d objects uploaded %d at a time, want at most %d", n, orgs, cfg.UploadWorkers, most)
	}
	ledgerListsOnce(t, cfg, orgs)
	for id, n := range fake.deliveredIDs(t) {
		if n != 1 {
			t.Errorf("record %s delivered %d times", id, n)
		}
	}
}

// TestRecordDue: the lines pending wait while other uploads are under way, up to a group and up to
// recordWithin; the last upload under way to end records them.
func TestRecordDue(t *testing.T) {
	for _, tc := range []struct {
		pending, group, others int
		waited                 time.Duration
		due                    bool
	}{
		{pending: 1, group: 8, others: 0, due: true},
		{pending: 1, group: 8, others: 3, due: false},
		{pending: 7, group: 8, others: 3, due: false},
		{pending: 8, group: 8, others: 3, due: true},
		{pending: 1, group: 2, others: 1, waited: recordWithin - time.Millisecond, due: false},
		{pending: 1, group: 2, others: 1, waited: recordWithin, due: true},
	} {
		if got := recordDue(tc.pending, tc.group, tc.others, tc.waited); got != tc.due {
			t.Errorf("%+v: due %v", tc, got)
		}
	}
}

// TestAFailedGroupOfLinesIsRecordedLater: when the ledger cannot record a group of lines, every batch of the
// group stays (in the log: S3 has its object) and its line is tried again after a backoff, without uploading it
// again; then every object is in the ledger once and every batch is removed.
func TestAFailedGroupOfLinesIsRecordedLater(t *testing.T) {
	cfg := testConfig(t)
	cfg.TotalFileSize = 1 << 20
	fsys := vfs.NewFaults(vfs.OS)
	fsys.Only(ledgerSync)
	fsys.FailFrom(1, vfs.EIO)
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free)
	fake := &fakeS3{script: func(int, string) error { <-release; return nil }}
	clk := newFakeClock()
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}},
		deps{send: fake, clock: clk, fs: fsys, jitter: func() float64 { return 0 }})
	const orgs = 64
	in.flushAndSeal(t, orgs)
	in.waitQueued(t, orgs)
	free()
	in.waitLogged(t, "in the delivery ledger")
	due := in.waitRetry(t)
	if calls, queued := fake.callCount(), in.queue.len(); calls != orgs || queued != orgs || len(batchFiles(t, cfg)) != 0 {
		t.Fatalf("%d uploads, %d batches queued, %d batch files; want %d uploads and every batch queued in the log", calls, queued, len(batchFiles(t, cfg)), orgs)
	}

	fsys.Repair()
	in.clock.Advance(due.Sub(in.clock.Now()))
	in.waitSettled(t)
	ledgerListsOnce(t, cfg, orgs)
	if fake.callCount() != orgs || in.delivered.Load() != orgs {
		t.Errorf("%d uploads, %d records counted; want %d of each", fake.callCount(), in.delivered.Load(), orgs)
	}
}
