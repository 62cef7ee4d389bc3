package digest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/record"
)

const hour = time.Hour

var t0 = time.Date(2026, 1, 28, 14, 0, 0, 0, time.UTC)

func testSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := GenerateKeyFile(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestMakeChain(t *testing.T) {
	s := testSigner(t)
	st := NewChain("00112233aabbccdd", t0)
	obj := Object{Key: "p/org-a/org-audit-logs-1.json.gz", SHA256: sha([]byte("x")), Bytes: 1, Records: 1,
		First: record.EventRef{ID: json.RawMessage(`"e1"`), CreatedAt: json.RawMessage(`1769611845`)}, DeliveredAt: t0.Add(time.Minute)}
	st, err := s.Make(st, Interval{Org: "org-a", Prefix: "p/", End: t0.Add(hour), Every: hour, Objects: []Object{obj}, MadeAt: t0.Add(hour + time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	first := st.Pending
	if first.Key != "p/org-a/digests/00112233aabbccdd/org-a-digest-20260128T150000Z.json" {
		t.Fatalf("key %s", first.Key)
	}
	sig, _ := base64.StdEncoding.DecodeString(first.Signature)
	if !ed25519.Verify(s.PublicKey(), first.Body, sig) {
		t.Fatal("the signature does not verify")
	}
	for _, want := range []string{`"sequence": 1,`, `"interval_start": "2026-01-28T14:00:00Z"`, `"interval_end": "2026-01-28T15:00:00Z"`,
		`"digest_interval_seconds": 3600`, `"previous_digest_key": null`, `"previous_digest_signature": null`, `"id": "e1"`,
		`"created_at": 1769611845`, `"public_key_fingerprint": "` + s.Fingerprint() + `"`} {
		if !strings.Contains(string(first.Body), want) {
			t.Errorf("the body has no %s:\n%s", want, first.Body)
		}
	}
	if _, err := s.Make(st, Interval{Org: "org-a", End: t0.Add(2 * hour), Every: hour}); err == nil {
		t.Fatal("made a second digest while the first is pending")
	}

	// The state survives a restart, pending digest included, byte for byte.
	data, _ := st.Encode()
	st, err = DecodeChainState(data)
	if err != nil || string(st.Pending.Body) != string(first.Body) {
		t.Fatalf("decoded %v: %v", st, err)
	}
	st = st.Uploaded()
	if st.Pending != nil || st.Sequence != 1 || st.LastKey != first.Key || !st.End.Equal(t0.Add(hour)) {
		t.Fatalf("after upload: %+v", st)
	}

	// After a downtime the next digest covers from the previous end to the last boundary, with no objects.
	end, due := st.Due(t0.Add(4*hour+30*time.Minute), hour)
	if !due || !end.Equal(t0.Add(4*hour)) {
		t.Fatalf("due %v at %s", due, end)
	}
	st, err = s.Make(st, Interval{Org: "org-a", Prefix: "p/", End: end, Every: hour, MadeAt: end})
	if err != nil {
		t.Fatal(err)
	}
	var doc Document
	json.Unmarshal(st.Pending.Body, &doc)
	if doc.Sequence != 2 || *doc.PreviousKey != first.Key || *doc.PreviousSignature != first.Signature ||
		!doc.Start.Equal(t0.Add(hour)) || doc.Objects == nil || !strings.Contains(string(st.Pending.Body), `"objects": []`) {
		t.Fatalf("second digest: %s", st.Pending.Body)
	}
	if _, due := st.Uploaded().Due(end.Add(59*time.Minute), hour); due {
		t.Fatal("a digest is due before the next boundary")
	}
}

func TestMakeRefuses(t *testing.T) {
	s := testSigner(t)
	st := NewChain("c", t0)
	good := Object{Key: "org-a/org-audit-logs-1.json.gz", SHA256: sha(nil)}
	for _, tc := range []struct {
		name string
		st   ChainState
		iv   Interval
		want string
	}{
		{"end before start", st, Interval{Org: "org-a", End: t0}, "not a whole second after"},
		{"fractional end", st, Interval{Org: "org-a", End: t0.Add(hour + time.Millisecond)}, "not a whole second"},
		{"no chain", ChainState{End: t0}, Interval{Org: "org-a", End: t0.Add(hour)}, "no chain id"},
		{"other org's object", st, Interval{Org: "org-a", End: t0.Add(hour), Objects: []Object{{Key: "org-b/x", SHA256: sha(nil)}}}, "not under org-a/"},
		{"digest as object", st, Interval{Org: "org-a", End: t0.Add(hour), Objects: []Object{{Key: "org-a/digests/x", SHA256: sha(nil)}}}, "not under"},
		{"base64 sha", st, Interval{Org: "org-a", End: t0.Add(hour), Objects: []Object{{Key: good.Key, SHA256: base64.StdEncoding.EncodeToString(make([]byte, 32))}}}, "64 lower-case hex"},
		{"upper-case sha", st, Interval{Org: "org-a", End: t0.Add(hour), Objects: []Object{{Key: good.Key, SHA256: strings.ToUpper(sha(nil))}}}, "64 lower-case hex"},
	} {
		if _, err := s.Make(tc.st, tc.iv); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := DecodeChainState([]byte(`{}`)); err == nil {
		t.Error("an empty chain state was accepted")
	}
}

func TestFromLedger(t *testing.T) {
	e := ledger.Entry{Time: t0, Status: ledger.Unconfirmed, Key: "k", SHA256: "s", Bytes: 3, Records: 2,
		First: record.EventRef{ID: json.RawMessage(`1`)}, Last: record.EventRef{ID: json.RawMessage(`2`)}, VersionID: "v"}
	o := FromLedger(e)
	if fmt.Sprint(o) != fmt.Sprint(Object{Key: "k", SHA256: "s", Bytes: 3, Records: 2, First: e.First, Last: e.Last, VersionID: "v", DeliveredAt: t0, Unconfirmed: true}) {
		t.Fatalf("%+v", o)
	}
	e.Status = ledger.Delivered
	if FromLedger(e).Unconfirmed {
		t.Fatal("a delivered entry is unconfirmed")
	}
}

// TestRechain: a digest made is unsent until Sending; made again for a new chain, it is that chain's first,
// covering the same interval and listing the same objects.
func TestRechain(t *testing.T) {
	s := testSigner(t)
	obj := Object{Key: "p/org-a/org-audit-logs-1.json.gz", SHA256: sha([]byte("x")), DeliveredAt: t0.Add(2 * hour)}
	st := NewChain("00112233aabbccdd", t0).Uploaded()
	st.Sequence, st.LastKey, st.LastSignature = 4, "p/org-a/digests/00112233aabbccdd/org-a-digest-20260128T140000Z.json", "c2ln"
	st, err := s.Make(st, Interval{Org: "org-a", Prefix: "p/", Bucket: "b", End: t0.Add(3 * hour), Every: hour, Objects: []Object{obj}, MadeAt: t0.Add(3 * hour)})
	if err != nil || !st.Pending.Unsent {
		t.Fatalf("made %+v, %v", st.Pending, err)
	}
	if sent := st.Sending(); sent.Pending.Unsent || !st.Pending.Unsent {
		t.Errorf("Sending: %v, the state it came from %v", sent.Pending.Unsent, st.Pending.Unsent)
	}
	again, err := s.Rechain(st, "ffeeddccbbaa9988", t0.Add(3*hour+time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var doc Document
	json.Unmarshal(again.Pending.Body, &doc)
	if again.Pending.Key != "p/org-a/digests/ffeeddccbbaa9988/org-a-digest-20260128T170000Z.json" || !again.Pending.Unsent ||
		doc.Sequence != 1 || doc.PreviousKey != nil || !doc.Start.Equal(t0) || !doc.End.Equal(t0.Add(3*hour)) ||
		len(doc.Objects) != 1 || doc.Objects[0].Key != obj.Key || doc.IntervalSeconds != 3600 || again.Moved("b", "p/") {
		t.Errorf("made again: %s\n%s", again.Pending.Key, again.Pending.Body)
	}
	if _, err := s.Rechain(again.Uploaded(), "ffeeddccbbaa9988", t0); err == nil {
		t.Error("made again with nothing pending")
	}
}
