package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

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
