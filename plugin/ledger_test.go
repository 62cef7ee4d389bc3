package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
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
	fsys.Only(ledgerSync)
	fsys.FailFrom(1, vfs.EIO)
	clk, fake := newFakeClock(), &fakeS3{}
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: fsys})
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.sealDue()
	in.waitLogged(t, "in the delivery ledger")
	due := in.waitRetry(t)
	// It stays in the log: S3 has its object, and a batch file would only take room.
	if n, queued := len(batchFiles(t, cfg)), in.queue.len(); n != 0 || queued != 1 || in.s3.callCount() != 1 {
		t.Fatalf("%d batch files in Store_Dir, %d batches queued after %d uploads; want the batch queued in the log after 1", n, queued, in.s3.callCount())
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

// TestDeliveredBatchLeftOnDiskIsRemovedAtStart: a batch that S3 stored and the ledger recorded, but whose
// removal from Store_Dir failed, is removed at the next start and not uploaded again (S3 would answer 412, and
// it would land a second time under a new key, the first one listed as unconfirmed). One whose ledger line is
// missing (a crash between S3's answer and the ledger) is uploaded again as before: its key is listed as
// unconfirmed and it lands under the next one.
func TestDeliveredBatchLeftOnDiskIsRemovedAtStart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lineLost bool
		uploads  int
		statuses []string
		removed  int // lines saying the batch was removed at start
	}{
		{"removal failed", false, 0, []string{ledger.Delivered}, 1},
		{"ledger line lost", true, 2, []string{ledger.Unconfirmed, ledger.Delivered}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			clk := newFakeClock()
			fake := &fakeS3{down: "b-1"}
			in := startOn(t, clk, cfg, "test", fake, TestHooks{})
			in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
			in.sealDue()
			in.waitPuts(t, 1)
			in.shutDown(t)
			kept := map[string][]byte{}
			for _, name := range batchFiles(t, cfg) {
				data, err := os.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				kept[name] = data
			}

			fake.setDown("")
			in = startOn(t, clk, cfg, "test", fake, TestHooks{})
			in.waitSettled(t)
			in.shutDown(t)
			// Delivered and recorded; its removal failed, leaving its files.
			for name, data := range kept {
				if err := os.WriteFile(name, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.lineLost {
				if err := os.RemoveAll(filepath.Join(cfg.StoreDir, ledger.Folder)); err != nil {
					t.Fatal(err)
				}
			}
			calls := fake.callCount()

			in = startOn(t, clk, cfg, "test", fake, TestHooks{})
			in.waitSettled(t)
			in.shutDown(t)
			if n := fake.callCount() - calls; n != tc.uploads {
				t.Errorf("%d uploads after the restart, want %d:\n%s", n, tc.uploads, in.sink.joined())
			}
			var statuses []string
			for _, e := range readLedger(t, cfg) {
				statuses = append(statuses, e.Status)
			}
			if !slices.Equal(statuses, tc.statuses) {
				t.Errorf("the ledger lists %v, want %v", statuses, tc.statuses)
			}
			if left := batchFiles(t, cfg); len(left) != 0 {
				t.Errorf("left in Store_Dir: %v", left)
			}
			if removed := in.sink.count("removed 1 batches the delivery ledger lists as delivered"); removed != tc.removed {
				t.Errorf("%d lines say the batch was removed at start:\n%s", removed, in.sink.joined())
			}
		})
	}
}

func TestListsDelivery(t *testing.T) {
	const key, sum = "org-a/org-audit-logs-1.json.gz", "ab12"
	for _, tc := range []struct {
		name string
		e    ledger.Entry
		want bool
	}{
		{"delivered, same key and SHA-256", ledger.Entry{Status: ledger.Delivered, Key: key, SHA256: sum}, true},
		{"unconfirmed", ledger.Entry{Status: ledger.Unconfirmed, Key: key, SHA256: sum}, false},
		{"another object at the key", ledger.Entry{Status: ledger.Delivered, Key: key, SHA256: "cd34"}, false},
		{"another key", ledger.Entry{Status: ledger.Delivered, Key: "org-a/org-audit-logs-2.json.gz", SHA256: sum}, false},
		{"no SHA-256", ledger.Entry{Status: ledger.Delivered, Key: key}, false},
	} {
		batchSum := sum
		if tc.e.SHA256 == "" {
			batchSum = ""
		}
		if got := listsDelivery(tc.e, key, batchSum); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
