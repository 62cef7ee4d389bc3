package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/vfs"
)

// TestLedgerRecordsEveryObject: each object S3 stored is in the delivery ledger with its bucket, size, SHA-256
// (of the bytes S3 got), record count, first and last event and version; a key S3 said was taken is there as
// unconfirmed.
func TestLedgerRecordsEveryObject(t *testing.T) {
	frozen := time.UnixMilli(1769611845000)
	taken := "org-a/org-audit-logs-1769611845000.json.gz"
	fake := &fakeS3{objects: map[string][]byte{taken: nil}}
	cfg := testConfig(t)
	in := startTest(t, cfg, "test", fake, TestHooks{keyClock: func() time.Time { return frozen }})
	in.Flush(cat(event("org-a", "1"), event("org-a", "2"), event("org-a", "3")), "audit.org")
	in.Close()

	got := map[string]ledger.Entry{}
	for e, err := range ledger.Read(vfs.OS, filepath.Join(cfg.StoreDir, ledger.Folder), ledger.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		got[e.Status+" "+e.Key] = e
	}
	const delivered = "org-a/org-audit-logs-1769611845001.json.gz"
	d, ok := got[ledger.Delivered+" "+delivered]
	sum := sha256.Sum256(fake.objects[delivered])
	if !ok || d.Bucket != "b-1" || d.Org != "org-a" || d.Kind != "org" || d.Records != 3 || d.Bytes != int64(len(fake.objects[delivered])) ||
		d.SHA256 != hex.EncodeToString(sum[:]) || string(d.First.ID) != `"1"` || string(d.Last.ID) != `"3"` || d.VersionID != "v2" {
		t.Errorf("delivered entry %+v (found %v)", d, ok)
	}
	if u, ok := got[ledger.Unconfirmed+" "+taken]; !ok || u.SHA256 != d.SHA256 || len(got) != 2 {
		t.Errorf("ledger %v: want the taken key as unconfirmed with the batch's SHA-256, and the delivered one", got)
	}
}

// readLedger reads the instance's delivery ledger.
func readLedger(t *testing.T, cfg *conf.Config) []ledger.Entry {
	t.Helper()
	var out []ledger.Entry
	for e, err := range ledger.Read(vfs.OS, filepath.Join(cfg.StoreDir, ledger.Folder), ledger.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// batchFiles lists the files of the batches in Store_Dir.
func batchFiles(t *testing.T, cfg *conf.Config) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cfg.StoreDir, "batches", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// waitRetry waits until the batch stays queued with no attempt under way, and an uploader waits on the clock
// for when it is due, which it returns; it fails the test when the batch left the queue instead.
func (ti *testInstance) waitRetry(t *testing.T) time.Time {
	t.Helper()
	q, limit := ti.queue, giveUp(t)
	for {
		set := ti.clock.set.next() // before looking: a timer set in between is not missed
		q.mu.Lock()
		idle := q.count > 0 && len(q.ready) > 0
		for _, l := range q.lanes {
			idle = idle && l.busy == nil
		}
		left, due := q.count == 0, time.Time{}
		if idle {
			due = q.ready[0].key()
		}
		q.mu.Unlock()
		switch {
		case left:
			t.Fatalf("the batch left the queue:\n%s", ti.sink.joined())
		case idle && ti.clock.waitsFor(due):
			return due
		}
		select {
		case <-set:
		case <-q.changed:
		case <-limit:
			t.Fatalf("no retry waits on the clock:\n%s", ti.sink.joined())
		}
	}
}

// TestLedgerLineFailingAfterUploadIsRetried: when the delivery ledger cannot record an object S3 stored, the
// batch stays in Store_Dir and its line is tried again after a backoff, on the clock, without uploading it
// again; once the line is recorded, the batch is removed. Before, it was removed at once, and the object was in
// no ledger line and no digest.
func TestLedgerLineFailingAfterUploadIsRetried(t *testing.T) {
	cfg := testConfig(t)
	fsys := vfs.NewFaults(vfs.OS)
	inLedger := string(filepath.Separator) + ledger.Folder + string(filepath.Separator)
	fsys.Only(func(op vfs.Op) bool { return op.Kind == vfs.OpDatasync && strings.Contains(op.Path, inLedger) })
	fsys.FailFrom(1, vfs.EIO)
	clk, fake := newFakeClock(), &fakeS3{}
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: fsys})
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.sealDue()
	in.waitLogged(t, "in the delivery ledger")
	due := in.waitRetry(t)
	if n := len(batchFiles(t, cfg)); n != 2 || in.s3.callCount() != 1 {
		t.Fatalf("%d batch files in Store_Dir after %d uploads, want the batch's 2 after 1", n, in.s3.callCount())
	}

	fsys.Repair()
	in.clock.Advance(due.Sub(in.clock.Now()))
	in.waitSettled(t)
	var key string
	var sum [sha256.Size]byte
	in.s3.mu.Lock()
	for k, body := range in.s3.objects {
		key, sum = k, sha256.Sum256(body)
	}
	in.s3.mu.Unlock()
	got := readLedger(t, cfg)
	if len(got) != 1 || got[0].Key != key || got[0].Status != ledger.Delivered || got[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("the ledger holds %+v, want %s delivered once with its SHA-256", got, key)
	}
	if calls, left := in.s3.callCount(), batchFiles(t, cfg); calls != 1 || len(left) != 0 || in.delivered.Load() != 2 {
		t.Errorf("%d uploads, %d records counted, left in Store_Dir: %v; want 1 upload, 2 records, nothing left", calls, in.delivered.Load(), left)
	}
}
