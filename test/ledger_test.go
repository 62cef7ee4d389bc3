package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/plugin"
	"github.com/wiv/out_wivaudit/vfs"
)

// TestLedgerListsWhatTheBucketHolds kills the plugin right after S3 stored an object and before the delivery
// ledger recorded it, restarts it on the same Store_Dir (re-sending what was not acknowledged), and checks that
// the ledger then lists exactly the objects the bucket holds, each with the SHA-256 of its bytes, and that
// `wivaudit store ledger` prints them.
func TestLedgerListsWhatTheBucketHolds(t *testing.T) {
	e := newEnv(t)
	events, cs := smallInput(t, 300)
	store := filepath.Join(e.dir, "store")
	conf := e.config("ledger.conf", map[string]string{"Upload_Timeout": "1s", "Total_File_Size": "2K", "Store_Dir": store})
	again := e.crashRun(t, conf, cs, plugin.CrashAfterUpload, "first.chunks")
	r := e.runToEnd(conf, e.input("again.chunks", again))
	if r.ExitCode != 0 || r.Summary("ok") != len(again) {
		t.Fatalf("restart: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	e.checkAll(events)

	ctx := context.Background()
	keys, err := e.moto.Keys(ctx, e.p.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]ledger.Entry{}
	unconfirmed := 0
	for entry, err := range ledger.Read(vfs.OS, filepath.Join(store, ledger.Folder), ledger.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if entry.Status == ledger.Unconfirmed {
			unconfirmed++
		}
		if entry.Bucket != e.p.Bucket || entry.Records == 0 || entry.First.ID == nil || entry.Last.ID == nil {
			t.Errorf("entry %+v", entry)
		}
		listed[entry.Key] = entry
	}
	if unconfirmed == 0 {
		t.Error("no entry is unconfirmed: the object stored before the crash was not met again at its key (412)")
	}
	ledgerKeys := slices.Sorted(func(yield func(string) bool) {
		for k := range listed {
			if !yield(k) {
				return
			}
		}
	})
	slices.Sort(keys)
	if !slices.Equal(ledgerKeys, keys) {
		t.Fatalf("the ledger lists %d keys, the bucket holds %d:\nledger %v\nbucket %v", len(ledgerKeys), len(keys), ledgerKeys, keys)
	}
	for _, k := range keys {
		body, err := e.moto.Get(ctx, e.p.Bucket, k)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(body); listed[k].SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: the ledger says SHA-256 %s, the object's is %x", k, listed[k].SHA256, sum)
		}
	}
	out, err := exec.Command(wivauditBin(t), "store", "ledger", store, "--org", strings.ToUpper(listed[keys[0]].Org)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), " entries\n") || !strings.Contains(string(out), listed[keys[0]].SHA256) {
		t.Errorf("wivaudit store ledger: %v\n%s", err, out)
	}
	t.Logf("%d objects, %d of them recorded as unconfirmed (stored before the crash, met again as a 412)", len(keys), unconfirmed)
}
