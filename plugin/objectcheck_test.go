package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
)

// flipByte alters one byte in the middle of a file, its size unchanged.
func flipByte(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitingBatch seals two records of org-a that S3 refuses once, and returns the batch's object while it waits
// for a retry.
func waitingBatch(t *testing.T, in *testInstance) string {
	t.Helper()
	in.s3.setDown("b-1")
	in.Flush(cat(event("org-a", "1"), event("org-a", "2")), "audit.org")
	in.sealDue()
	in.waitLogged(t, "upload of org-a/org-audit-logs-")
	objects, _ := filepath.Glob(filepath.Join(in.cfg.StoreDir, "batches", "*.json.gz"))
	if len(objects) != 1 {
		t.Fatalf("batches %v", objects)
	}
	return objects[0]
}

// TestCorruptObjectIsQuarantinedAndTheStreamGoesOn: a byte of a sealed object flipped in Store_Dir while it
// waited for a retry. S3 would refuse every upload of it (BadDigest), and every later batch of its stream
// would wait behind it: it is quarantined without being sent, with one line naming it, its expected and actual
// SHA-256 and where it went, and the stream's next batch is delivered.
func TestCorruptObjectIsQuarantinedAndTheStreamGoesOn(t *testing.T) {
	in := startTest(t, testConfig(t), "test", &fakeS3{}, TestHooks{})
	object := waitingBatch(t, in)
	manifest := strings.TrimSuffix(object, ".json.gz") + ".manifest.json"
	var m struct {
		Key    string `json:"key"`
		SHA256 string `json:"sha256"`
	}
	if data, err := os.ReadFile(manifest); err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("manifest: %v", err)
	}
	flipByte(t, object)
	data, _ := os.ReadFile(object)
	actual := sha256.Sum256(data)
	sealed, _ := base64.StdEncoding.DecodeString(m.SHA256)

	in.Flush(event("org-a", "3"), "audit.org")
	in.store.Rotate(time.Time{})
	signal(in.sealNow) // the next batch: it waits behind the first, not yet due
	in.s3.setDown("")
	calls := in.s3.callCount()
	in.clock.Advance(backoffCap)
	in.waitPuts(t, calls+1)
	if seen := in.s3.deliveredIDs(t); len(seen) != 1 || seen["3"] != 1 {
		t.Fatalf("the first upload after the flip delivered %v, want the stream's next batch (record 3): the corrupt batch was sent\n%s", seen, in.sink.joined())
	}
	in.waitSettled(t)
	line := regexp.MustCompile(`(?m)^.*` + regexp.QuoteMeta(m.Key) + ` \(2 records of org-a/org\).*SHA-256 is ` + hex.EncodeToString(actual[:]) +
		` where its manifest says ` + hex.EncodeToString(sealed) + `.*not sent, moved to quarantine .*its records undelivered.*$`)
	if got := line.FindAllString(in.sink.joined(), -1); len(got) != 1 {
		t.Errorf("want one line naming %s, its SHA-256 and the manifest's, and its quarantine:\n%s", m.Key, in.sink.joined())
	}
	if in.s3.callCount() != calls+1 {
		t.Errorf("%d uploads after the flip, want 1 (the next batch's)", in.s3.callCount()-calls)
	}
	moved, _ := filepath.Glob(filepath.Join(in.cfg.StoreDir, "quarantine", filepath.Base(strings.TrimSuffix(object, ".json.gz"))+".*"))
	if len(moved) != 2 {
		t.Errorf("quarantine holds %v, want the batch's object and manifest", moved)
	}
	got := scrape(t, in.Instance, "test")
	if got["wivaudit_batches_corrupt_total{}"] != 1 || got["wivaudit_batches_quarantined_total{}"] != 1 {
		t.Errorf("corrupt %v, quarantined %v; want 1 and 1", got["wivaudit_batches_corrupt_total{}"], got["wivaudit_batches_quarantined_total{}"])
	}
}

// TestUnreadableObjectIsRetriedNotQuarantined: an object that cannot be read (a folder in its place: EISDIR,
// as EIO from a failing disk) is not corruption: the batch stays queued, tried again after a backoff, and is
// delivered once it can be read again.
func TestUnreadableObjectIsRetriedNotQuarantined(t *testing.T) {
	in := startTest(t, testConfig(t), "test", &fakeS3{}, TestHooks{})
	object := waitingBatch(t, in)
	if err := os.Rename(object, object+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(object, 0o700); err != nil {
		t.Fatal(err)
	}
	in.s3.setDown("")
	calls := in.s3.callCount()
	in.clock.Advance(backoffCap)
	in.waitLogged(t, "cannot read the object of org-a/org-audit-logs-")
	if err := os.Remove(object); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(object+".saved", object); err != nil {
		t.Fatal(err)
	}
	in.clock.Advance(backoffCap)
	in.waitDelivered(t, 2)
	if quarantined, _ := filepath.Glob(filepath.Join(in.cfg.StoreDir, "quarantine", "*")); len(quarantined) != 0 || in.s3.callCount() != calls+1 {
		t.Errorf("quarantine holds %v; %d uploads, want 1 (none while unreadable)", quarantined, in.s3.callCount()-calls)
	}
	if got := scrape(t, in.Instance, "test"); got["wivaudit_batches_corrupt_total{}"] != 0 {
		t.Errorf("counted as corrupt")
	}
}

// TestReadObject: what reading a sealed object for its upload finds against its manifest, as the object was
// altered in Store_Dir; an object that cannot be read is an error, not a difference.
func TestReadObject(t *testing.T) {
	in := startTest(t, testConfig(t), "test", &fakeS3{}, TestHooks{})
	object := waitingBatch(t, in) // not due again while the clock stands
	var b *buffer.Batch
	in.queue.mu.Lock()
	for _, l := range in.queue.lanes {
		if l.busy != nil {
			b = l.busy.batch
		}
		for _, it := range l.items {
			b = it.batch // a batch file: the one waitingBatch spilled
		}
	}
	in.queue.mu.Unlock()
	intact, err := os.ReadFile(object)
	if err != nil {
		t.Fatal(err)
	}
	write := func(data []byte) func() {
		return func() {
			if err := os.WriteFile(object, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name    string
		alter   func()
		differs []string // what altered says, in part; none: intact
		err     func(error) bool
	}{
		{"intact", func() {}, nil, nil},
		{"a byte flipped", func() { flipByte(t, object) }, []string{"its SHA-256 is ", "its MD5 is "}, nil},
		{"cut short", write(intact[:len(intact)-1]), []string{"its SHA-256 is ", fmt.Sprintf("it has %d bytes where its manifest says %d", len(intact)-1, len(intact))}, nil},
		{"grown", write(append(slices.Clone(intact), make([]byte, 5000)...)), []string{fmt.Sprintf("it has %d bytes where its manifest says %d", len(intact)+5000, len(intact))}, nil},
		{"gone", func() { os.Remove(object) }, nil, func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{"a folder in its place", func() { os.Remove(object); os.Mkdir(object, 0o700) }, nil,
			func(err error) bool {
				return err != nil && !errors.Is(err, fs.ErrNotExist) && strings.Contains(err.Error(), object)
			}},
	}
	for _, tc := range cases {
		os.RemoveAll(object)
		write(intact)()
		tc.alter()
		body, sums, err := readObject(b)
		if tc.err != nil {
			if !tc.err(err) || body != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := altered(b.Manifest, sums)
		if tc.differs == nil && (got != "" || !bytes.Equal(*body, intact)) {
			t.Errorf("%s: altered %q, or not the bytes on disk", tc.name, got)
		}
		for _, d := range tc.differs {
			if !strings.Contains(got, d) {
				t.Errorf("%s: altered %q, want it to say %q", tc.name, got, d)
			}
		}
		objectBuffers.Put(body)
	}
	os.RemoveAll(object)
	write(intact)()
}
