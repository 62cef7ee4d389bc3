package digest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// memBucket is an in-memory bucket; LastModified is the bucket's clock when an object is put.
type memBucket struct {
	mu      sync.Mutex
	objects map[string]memObject
	now     time.Time
	denied  map[string]bool
}

type memObject struct {
	body []byte
	meta map[string]string
	mod  time.Time
}

func (b *memBucket) put(key string, body []byte, meta map[string]string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.objects[key] = memObject{body: body, meta: meta, mod: b.now}
}

func (b *memBucket) List(_ context.Context, prefix string) ([]ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.denied[prefix] {
		return nil, errors.New("AccessDenied")
	}
	var out []ObjectInfo
	for k, o := range b.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, ObjectInfo{Key: k, Size: int64(len(o.body)), LastModified: o.mod})
		}
	}
	return out, nil
}

func (b *memBucket) Open(_ context.Context, key string) (io.ReadCloser, map[string]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.denied[key] {
		return nil, nil, errors.New("AccessDenied")
	}
	o, ok := b.objects[key]
	if !ok {
		return nil, nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(o.body)), o.meta, nil
}

// replica delivers objects for one organisation and writes its digests, as the plugin does.
type replica struct {
	t       *testing.T
	b       *memBucket
	s       *Signer
	org     string
	st      ChainState
	pending []Object
	n       int
}

const prefix = "logs/"

func newReplica(t *testing.T, b *memBucket, s *Signer, org, chain string) *replica {
	return &replica{t: t, b: b, s: s, org: org, st: NewChain(chain, t0)}
}

// deliver puts an object at the bucket's current time and notes it for the next digest.
func (r *replica) deliver(kind string) string {
	r.n++
	// Replicas' keys differ by the chain's last digit, as if they had sealed in different milliseconds.
	key := fmt.Sprintf("%s%s/%s-audit-logs-%d.json.gz", prefix, r.org, kind, r.b.now.UnixMilli()+int64(r.st.Chain[len(r.st.Chain)-1])*1000+int64(r.n))
	body := fmt.Appendf(nil, "object %d of %s", r.n, r.st.Chain)
	r.b.put(key, body, nil)
	r.pending = append(r.pending, Object{Key: key, SHA256: sha(body), Bytes: int64(len(body)), Records: 1, DeliveredAt: r.b.now})
	return key
}

// digest writes the digest due at the bucket's current time.
func (r *replica) digest() string {
	end, due := r.st.Due(r.b.now, hour)
	if !due {
		r.t.Fatalf("no digest due at %s", r.b.now)
	}
	st, err := r.s.Make(r.st, Interval{Org: r.org, Prefix: prefix, End: end, Every: hour, Objects: r.pending, MadeAt: r.b.now})
	if err != nil {
		r.t.Fatal(err)
	}
	r.b.put(st.Pending.Key, st.Pending.Body, map[string]string{"Signature": st.Pending.Signature})
	r.st, r.pending = st.Uploaded(), nil
	return st.Pending.Key
}

// history is four hourly intervals for org-a by one replica: two objects, none, one, two.
type history struct {
	b       *memBucket
	s       *Signer
	objects [][]string // per interval
	digests []string
}

func newHistory(t *testing.T) *history {
	h := &history{b: &memBucket{objects: map[string]memObject{}, denied: map[string]bool{}}, s: testSigner(t)}
	r := newReplica(t, h.b, h.s, "org-a", "00000000000000aa")
	for i, n := range []int{2, 0, 1, 2} {
		var keys []string
		for j := range n {
			h.b.now = t0.Add(time.Duration(i)*hour + time.Duration(j+1)*10*time.Minute)
			keys = append(keys, r.deliver([]string{"org", "user"}[j%2]))
		}
		h.b.now = t0.Add(time.Duration(i+1)*hour + 2*time.Second)
		h.digests = append(h.digests, r.digest())
		h.objects = append(h.objects, keys)
	}
	h.b.now = t0.Add(4*hour + time.Minute)
	return h
}

// putAt puts an object as if at a time, the bucket's clock left as it was.
func (h *history) putAt(at time.Time, key, body string) {
	now := h.b.now
	h.b.now = at
	h.b.put(key, []byte(body), nil)
	h.b.now = now
}

func (h *history) verify(q Query) Report {
	q.Org, q.Prefix, q.Keys = "org-a", prefix, []ed25519.PublicKey{h.s.PublicKey()}
	if q.Now.IsZero() {
		q.Now = h.b.now
	}
	return Verify(context.Background(), h.b, q)
}

func problems(r Report) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity != Notice {
			out = append(out, f)
		}
	}
	return out
}

// expect checks the report's code and that each wanted finding (kind and key) is in it.
func expect(t *testing.T, r Report, code int, want ...Finding) {
	t.Helper()
	if r.Code() != code {
		t.Errorf("exit code %d, want %d", r.Code(), code)
	}
	for _, w := range want {
		found := false
		for _, f := range r.Findings {
			found = found || (f.Kind == w.Kind && f.Key == w.Key && f.Severity == w.Severity)
		}
		if !found {
			t.Errorf("no %s %s %s", w.Severity, w.Kind, w.Key)
		}
	}
	if t.Failed() {
		for _, f := range r.Findings {
			t.Log(f)
		}
	}
}

func TestVerifyIntactChain(t *testing.T) {
	h := newHistory(t)
	r := h.verify(Query{})
	expect(t, r, 0)
	if len(r.Findings) != 0 || r.Digests != 4 || r.Objects != 5 || len(r.Chains) != 1 {
		t.Fatalf("intact: %d digests, %d objects, %v", r.Digests, r.Objects, r.Findings)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, h *history) []Finding
	}{
		{"deleted object", func(t *testing.T, h *history) []Finding {
			delete(h.b.objects, h.objects[2][0])
			return []Finding{{Problem, MissingObject, h.objects[2][0], ""}}
		}},
		{"altered object", func(t *testing.T, h *history) []Finding {
			o := h.b.objects[h.objects[0][1]]
			o.body = append(o.body, '!')
			h.b.objects[h.objects[0][1]] = o
			return []Finding{{Problem, AlteredObject, h.objects[0][1], ""}}
		}},
		{"deleted middle digest", func(t *testing.T, h *history) []Finding {
			delete(h.b.objects, h.digests[2])
			return []Finding{{Problem, MissingDigest, h.digests[2], ""}, {Problem, UnlistedObject, h.objects[2][0], ""}}
		}},
		{"deleted first digest", func(t *testing.T, h *history) []Finding {
			delete(h.b.objects, h.digests[0])
			return []Finding{{Problem, MissingDigest, h.digests[0], ""}, {Problem, UnlistedObject, h.objects[0][0], ""}}
		}},
		{"deleted empty digest", func(t *testing.T, h *history) []Finding {
			delete(h.b.objects, h.digests[1])
			return []Finding{{Problem, MissingDigest, h.digests[1], ""}}
		}},
		{"deleted last digest, once its grace is over", func(t *testing.T, h *history) []Finding {
			delete(h.b.objects, h.digests[3])
			h.b.now = h.b.now.Add(DefaultGrace)
			return []Finding{{Problem, StoppedChain, h.digests[2], ""}, {Problem, UnlistedObject, h.objects[3][1], ""}}
		}},
		{"altered digest", func(t *testing.T, h *history) []Finding {
			o := h.b.objects[h.digests[1]]
			o.body = bytes.Replace(o.body, []byte(`"objects": []`), []byte(`"objects": [ ]`), 1)
			h.b.objects[h.digests[1]] = o
			return []Finding{{Problem, BadSignature, h.digests[1], ""}}
		}},
		{"digest with another signature", func(t *testing.T, h *history) []Finding {
			o := h.b.objects[h.digests[2]]
			o.meta = map[string]string{"signature": h.b.objects[h.digests[1]].meta["Signature"]}
			h.b.objects[h.digests[2]] = o
			return []Finding{{Problem, BadSignature, h.digests[2], ""}, {Problem, UnlistedObject, h.objects[2][0], ""}}
		}},
		{"digest without signature", func(t *testing.T, h *history) []Finding {
			o := h.b.objects[h.digests[0]]
			o.meta = nil
			h.b.objects[h.digests[0]] = o
			return []Finding{{Problem, BadSignature, h.digests[0], ""}}
		}},
		{"digest replaced by one signed with another key", func(t *testing.T, h *history) []Finding {
			r := newReplica(t, h.b, testSigner(t), "org-a", "00000000000000aa")
			h.b.now = t0.Add(hour + 2*time.Second)
			r.digest()
			return []Finding{{Problem, UnknownKey, h.digests[0], ""}}
		}},
		{"foreign object in a covered interval", func(t *testing.T, h *history) []Finding {
			k := prefix + "org-a/org-audit-logs-1769700000000.json.gz"
			h.putAt(t0.Add(2*hour+30*time.Minute), k, "forged")
			return []Finding{{Problem, UnlistedObject, k, ""}}
		}},
		{"foreign file under digests/", func(t *testing.T, h *history) []Finding {
			k := prefix + "org-a/digests/notes.txt"
			h.putAt(t0.Add(2*hour+30*time.Minute), k, "x")
			return []Finding{{Problem, UnlistedObject, k, ""}}
		}},
		{"digest copied from another organisation", func(t *testing.T, h *history) []Finding {
			b := &memBucket{objects: map[string]memObject{}, now: t0.Add(hour + 2*time.Second)}
			r := newReplica(t, b, h.s, "org-b", "00000000000000bb")
			key := r.digest()
			moved := strings.ReplaceAll(key, "org-b", "org-a")
			h.b.objects[moved] = b.objects[key]
			return []Finding{{Problem, BadDigest, moved, ""}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory(t)
			want := tc.tamper(t, h)
			expect(t, h.verify(Query{}), 1, want...)
		})
	}
}

func TestVerifyNotices(t *testing.T) {
	h := newHistory(t)
	probe := prefix + "org-a/wivaudit-delivery-check-1769700000000.txt"
	h.putAt(t0.Add(30*time.Minute), probe, "probe")
	fresh := prefix + "org-a/org-audit-logs-1769800000000.json.gz"
	h.putAt(t0.Add(4*hour+30*time.Second), fresh, "not yet in a digest")
	// Written just before the last digest's end but recorded after it (an upload under way at the boundary):
	// within the grace it is not yet covered; written earlier than that, no digest listing it is a problem.
	boundary := prefix + "org-a/org-audit-logs-1769790000000.json.gz"
	h.putAt(t0.Add(4*hour-10*time.Second), boundary, "under way at the boundary")
	r := h.verify(Query{Now: t0.Add(4*hour + time.Minute)})
	expect(t, r, 0, Finding{Notice, Probe, probe, ""}, Finding{Notice, NotYetCovered, fresh, ""}, Finding{Notice, NotYetCovered, boundary, ""})
	r = h.verify(Query{Now: t0.Add(4*hour + time.Minute), Grace: 5 * time.Second})
	expect(t, r, 1, Finding{Notice, Probe, probe, ""}, Finding{Notice, NotYetCovered, fresh, ""}, Finding{Problem, UnlistedObject, boundary, ""})
	delete(h.b.objects, boundary)

	// Right after the last digest's deletion, within the grace, nothing says it was deleted yet: its objects
	// are not yet covered. Past the grace the chain is stopped (TestVerifyFindsTampering).
	delete(h.b.objects, h.digests[3])
	expect(t, h.verify(Query{Now: t0.Add(4*hour + time.Minute)}), 0, Finding{Notice, NotYetCovered, h.objects[3][0], ""})
}

func TestVerifyTwoChains(t *testing.T) {
	b := &memBucket{objects: map[string]memObject{}}
	s := testSigner(t)
	r1 := newReplica(t, b, s, "org-a", "00000000000000aa")
	r2 := newReplica(t, b, s, "org-a", "00000000000000bb")
	var keys2 []string
	for i := range 3 {
		b.now = t0.Add(time.Duration(i)*hour + 5*time.Minute)
		r1.deliver("org")
		keys2 = append(keys2, r2.deliver("org"))
		b.now = t0.Add(time.Duration(i+1)*hour + time.Second)
		r1.digest()
		b.now = b.now.Add(3 * time.Second)
		r2.digest()
	}
	b.now = t0.Add(3*hour + time.Minute)
	q := Query{Org: "org-a", Prefix: prefix, Keys: []ed25519.PublicKey{s.PublicKey()}, Now: b.now}
	r := Verify(context.Background(), b, q)
	expect(t, r, 0)
	if r.Digests != 6 || r.Objects != 6 || len(r.Chains) != 2 {
		t.Fatalf("%d digests, %d objects, chains %v", r.Digests, r.Objects, r.Chains)
	}

	delete(b.objects, keys2[1])
	expect(t, Verify(context.Background(), b, q), 1, Finding{Problem, MissingObject, keys2[1], ""})
}

// TestVerifyUnconfirmed: an upload S3 never confirmed may be absent, or hold another writer's object that
// that writer's chain lists.
func TestVerifyUnconfirmed(t *testing.T) {
	b := &memBucket{objects: map[string]memObject{}, now: t0.Add(10 * time.Minute)}
	s := testSigner(t)
	r1 := newReplica(t, b, s, "org-a", "00000000000000aa")
	r2 := newReplica(t, b, s, "org-a", "00000000000000bb")
	lost := r1.deliver("org")
	delete(b.objects, lost)
	r1.pending[0].Unconfirmed = true
	taken := r2.deliver("org")
	r1.pending = append(r1.pending, Object{Key: taken, SHA256: sha([]byte("r1's own bytes")), Unconfirmed: true, DeliveredAt: b.now})
	b.now = t0.Add(hour + time.Second)
	r1.digest()
	r2.digest()
	b.now = t0.Add(hour + time.Minute)
	q := Query{Org: "org-a", Prefix: prefix, Keys: []ed25519.PublicKey{s.PublicKey()}, Now: b.now}
	r := Verify(context.Background(), b, q)
	expect(t, r, 0, Finding{Notice, NeverDelivered, lost, ""})

	o := b.objects[taken]
	o.body = []byte("altered")
	b.objects[taken] = o
	expect(t, Verify(context.Background(), b, q), 1, Finding{Problem, AlteredObject, taken, ""})
}

func TestVerifyTimeRange(t *testing.T) {
	h := newHistory(t)
	delete(h.b.objects, h.objects[0][0])
	foreign := prefix + "org-a/org-audit-logs-1769600000000.json.gz"
	h.putAt(t0.Add(30*time.Minute), foreign, "forged")

	r := h.verify(Query{From: t0.Add(2 * hour), To: t0.Add(3 * hour)})
	expect(t, r, 0)
	if r.Digests != 1 || r.Objects != 1 {
		t.Fatalf("from 2h to 3h: %d digests, %d objects checked, want 1 and 1", r.Digests, r.Objects)
	}

	expect(t, h.verify(Query{To: t0.Add(hour)}), 1, Finding{Problem, MissingObject, h.objects[0][0], ""},
		Finding{Problem, UnlistedObject, foreign, ""})

	// A period after the chain's last digest (and its grace) has no digest.
	expect(t, h.verify(Query{From: t0.Add(4 * hour), Now: t0.Add(6 * hour)}), 1, Finding{Problem, NoDigest, prefix + "org-a/digests/", ""})
}

func TestVerifyCannotRead(t *testing.T) {
	h := newHistory(t)
	h.b.denied[prefix+"org-a/"] = true
	expect(t, h.verify(Query{}), 2, Finding{CannotVerify, Unreadable, prefix + "org-a/", ""})

	h = newHistory(t)
	h.b.denied[h.objects[3][0]] = true
	expect(t, h.verify(Query{}), 2, Finding{CannotVerify, Unreadable, h.objects[3][0], ""})

	// Problems found weigh more than what could not be read.
	delete(h.b.objects, h.objects[0][0])
	expect(t, h.verify(Query{}), 1)
	if n := len(problems(h.verify(Query{}))); n != 2 {
		t.Fatalf("%d findings, want the missing object and the unreadable one", n)
	}
}

func TestVerifyDowntime(t *testing.T) {
	b := &memBucket{objects: map[string]memObject{}}
	s := testSigner(t)
	r := newReplica(t, b, s, "org-a", "00000000000000aa")
	b.now = t0.Add(10 * time.Minute)
	r.deliver("org")
	b.now = t0.Add(hour + time.Second)
	r.digest()
	// Down from 1h to 5h20: the next digest spans it.
	b.now = t0.Add(5*hour + 20*time.Minute)
	r.deliver("api")
	b.now = t0.Add(6*hour + time.Second)
	key := r.digest()
	if !strings.HasSuffix(key, "-digest-20260128T200000Z.json") {
		t.Fatalf("digest key %s", key)
	}
	q := Query{Org: "org-a", Prefix: prefix, Keys: []ed25519.PublicKey{s.PublicKey()}, Now: b.now}
	expect(t, Verify(context.Background(), b, q), 0)
	if len(b.objects) != 4 {
		t.Fatalf("%d objects in the bucket, want 2 and 2 digests", len(b.objects))
	}
}

// TestVerifyChainStoppedBeforeThePeriod: a replica's chain whose digests of the period were all deleted (with
// the objects they listed) still shows, verifying from a time after its last remaining digest: it stopped
// within the period, a problem; a chain that stopped before the period began is a notice.
func TestVerifyChainStoppedBeforeThePeriod(t *testing.T) {
	b := &memBucket{objects: map[string]memObject{}}
	s := testSigner(t)
	r1 := newReplica(t, b, s, "org-a", "00000000000000aa")
	r2 := newReplica(t, b, s, "org-a", "00000000000000bb")
	var kept string
	for i := range 5 {
		b.now = t0.Add(time.Duration(i)*hour + 5*time.Minute)
		r1.deliver("org")
		var obj string
		if i < 3 {
			obj = r2.deliver("org")
		}
		b.now = t0.Add(time.Duration(i+1)*hour + time.Second)
		r1.digest()
		switch {
		case i == 0:
			kept = r2.digest()
		case i < 3:
			delete(b.objects, r2.digest())
			delete(b.objects, obj)
		}
	}
	b.now = t0.Add(5*hour + time.Minute)
	q := Query{Org: "org-a", Prefix: prefix, Keys: []ed25519.PublicKey{s.PublicKey()}, Now: b.now, From: t0.Add(hour)}
	expect(t, Verify(context.Background(), b, q), 1, Finding{Problem, StoppedChain, kept, ""})

	q.From = t0.Add(3 * hour)
	expect(t, Verify(context.Background(), b, q), 0, Finding{Notice, StoppedChain, kept, ""})
}

// TestVerifyWithAnotherKey: verifying with a public key other than the one that signed the digests says so
// once, naming both fingerprints, rather than one bad signature per digest and one unlisted object per object.
func TestVerifyWithAnotherKey(t *testing.T) {
	h := newHistory(t)
	wrong, other := testSigner(t), testSigner(t)
	for _, keys := range [][]*Signer{{wrong}, {wrong, other}} {
		q := Query{Org: "org-a", Prefix: prefix, Now: h.b.now}
		for _, k := range keys {
			q.Keys = append(q.Keys, k.PublicKey())
		}
		r := Verify(context.Background(), h.b, q)
		expect(t, r, 1, Finding{Problem, UnknownKey, h.digests[0], ""})
		if len(r.Findings) != 1 {
			t.Fatalf("%d findings, want one", len(r.Findings))
		}
		d := r.Findings[0].Detail
		for _, want := range []string{"this and 3 more digests, to " + h.digests[3], "the signing key of fingerprint " + h.s.Fingerprint(),
			"5 objects listed there are not checked", wrong.Fingerprint()} {
			if !strings.Contains(d, want) {
				t.Errorf("%q lacks %q", d, want)
			}
		}
		if len(keys) == 2 && (!strings.Contains(d, "the public keys given have fingerprints ") || !strings.Contains(d, other.Fingerprint())) {
			t.Errorf("%q does not name every key given", d)
		}
	}
	// The right key among others verifies.
	q := Query{Org: "org-a", Prefix: prefix, Now: h.b.now, Keys: []ed25519.PublicKey{wrong.PublicKey(), h.s.PublicKey()}}
	expect(t, Verify(context.Background(), h.b, q), 0)
}

// TestVerifyNamesThePrefix: with nothing under {prefix}{org}/, digests of the organisation under another key
// prefix are named, with the prefix to verify with.
func TestVerifyNamesThePrefix(t *testing.T) {
	h := newHistory(t)
	noDigest := func(q Query) string {
		t.Helper()
		q.Org, q.Keys = "org-a", []ed25519.PublicKey{h.s.PublicKey()}
		if q.Now.IsZero() {
			q.Now = h.b.now
		}
		r := Verify(context.Background(), h.b, q)
		expect(t, r, 1, Finding{Problem, NoDigest, q.Prefix + "org-a/digests/", ""})
		return r.Findings[0].Detail
	}
	for _, p := range []string{"", "other/"} {
		if d := noDigest(Query{Prefix: p}); !strings.Contains(d, "the bucket holds digests of org-a under logs/org-a/digests/: the delivery uses another key prefix; verify with --prefix logs/") {
			t.Errorf("prefix %q: %s", p, d)
		}
	}
	// Also at the top of the bucket, and under two prefixes.
	for k, o := range h.b.objects {
		h.b.objects[strings.TrimPrefix(k, prefix)] = o
	}
	if d := noDigest(Query{Prefix: "other/"}); !strings.Contains(d, "under org-a/digests/ and logs/org-a/digests/: the delivery uses another key prefix; verify without --prefix, or with --prefix logs/") {
		t.Errorf("two prefixes: %s", d)
	}
	// Digests of the organisation under its place, none in the period: no other place to name.
	if d := noDigest(Query{Prefix: prefix, From: t0.Add(4 * hour), Now: t0.Add(6 * hour)}); strings.Contains(d, "--prefix") {
		t.Errorf("digests under the prefix, none in the period: %s", d)
	}
	// A bucket that cannot be listed whole: no hint, the problem stays.
	h.b.denied[""] = true
	if d := noDigest(Query{Prefix: "other/"}); strings.Contains(d, "--prefix") {
		t.Errorf("bucket not listable: %s", d)
	}
}
