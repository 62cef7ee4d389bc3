package plugin

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/digest"
	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/record"
)

// digestConfig is an output for org-a with digests every 10 s, signed by a new key; more settings replace
// or add to these.
func digestConfig(t *testing.T, more conf.Map) (*conf.Config, ed25519.PublicKey) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "digest-key.pem")
	signer, err := digest.GenerateKeyFile(key)
	if err != nil {
		t.Fatal(err)
	}
	m := conf.Map{"Org_ID": "org-a", "Bucket": "b-1", "Store_Dir": t.TempDir(), "Upload_Timeout": "1s", "Shutdown_Timeout": "30s",
		"Digests": "on", "Digest_Signing_Key": key, "Digest_Interval": "10s"}
	for k, v := range more {
		m[k] = v
	}
	c, err := conf.Parse(m)
	if err != nil {
		t.Fatal(err)
	}
	return c, signer.PublicKey()
}

// delivered records in the instance's ledger, at its clock's time, an object delivered for org.
func (ti *testInstance) deliveredObject(t *testing.T, bucket, key string) ledger.Entry {
	t.Helper()
	sum := sha256.Sum256([]byte(key))
	e := ledger.Entry{Status: ledger.Delivered, Org: strings.Split(key, "/")[0], Kind: "org", Bucket: bucket, Key: key,
		Bytes: 100, SHA256: hex.EncodeToString(sum[:]), Records: 2,
		First: record.EventRef{ID: json.RawMessage(`"ev-1"`)}, Last: record.EventRef{ID: json.RawMessage(`"ev-2"`)}}
	if err := ti.ledger.Record(e); err != nil {
		t.Fatal(err)
	}
	return e
}

// digestsOf returns the digests the fake S3 holds for org, oldest first, each checked against its signature.
func (f *fakeS3) digestsOf(t *testing.T, org string, pub ed25519.PublicKey) []digest.Document {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var docs []digest.Document
	for key, body := range f.objects {
		if !strings.HasPrefix(key, org+"/digests/") {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(f.meta[key][digest.MetadataSignature])
		if err != nil || !ed25519.Verify(pub, body, sig) {
			t.Errorf("%s: its signature does not verify", key)
		}
		var doc digest.Document
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if want := digest.Key("", doc.OrgID, doc.Chain, doc.End); key != want {
			t.Errorf("digest at %s, want %s", key, want)
		}
		docs = append(docs, doc)
	}
	slices.SortFunc(docs, func(a, b digest.Document) int { return a.End.Compare(b.End) })
	return docs
}

// waitDigests waits until the fake S3 holds n digests of org.
func (ti *testInstance) waitDigests(t *testing.T, org string, n int, pub ed25519.PublicKey) []digest.Document {
	t.Helper()
	var docs []digest.Document
	waitFor(t, &ti.s3.puts, func() bool { docs = ti.s3.digestsOf(t, org, pub); return len(docs) >= n }, func() string {
		return "digests: " + strings.Join(ti.s3.keys(), ", ") + "\n" + ti.sink.joined()
	})
	return docs
}

func (f *fakeS3) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.objects))
	for k := range f.objects {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkChain checks that the digests follow one another from start, each ending at the given end.
func checkChain(t *testing.T, docs []digest.Document, start time.Time, ends ...time.Time) {
	t.Helper()
	if len(docs) != len(ends) {
		t.Fatalf("%d digests, want %d", len(docs), len(ends))
	}
	for i, d := range docs {
		if d.Sequence != uint64(i+1) || !d.Start.Equal(start) || !d.End.Equal(ends[i]) || d.IntervalSeconds != 10 {
			t.Errorf("digest %d: sequence %d, %s to %s every %ds; want %s to %s", i, d.Sequence, d.Start, d.End, d.IntervalSeconds, start, ends[i])
		}
		if i > 0 {
			prev := digest.Key("", docs[i-1].OrgID, docs[i-1].Chain, docs[i-1].End)
			if d.PreviousKey == nil || *d.PreviousKey != prev || d.Chain != docs[0].Chain {
				t.Errorf("digest %d: previous %v, chain %s; want %s, %s", i, d.PreviousKey, d.Chain, prev, docs[0].Chain)
			}
		}
		start = d.End
	}
}

func keysOf(d digest.Document) []string {
	var keys []string
	for _, o := range d.Objects {
		keys = append(keys, o.Key)
	}
	return keys
}

// startRounds starts an instance whose digest loop is stopped: the test runs the rounds, at the times it gives.
func startRounds(t *testing.T, cfg *conf.Config, s3 *fakeS3) *testInstance {
	t.Helper()
	in := startTest(t, cfg, "test", s3, TestHooks{})
	in.stopDigests()
	<-in.digestsDone
	return in
}

// nextRound moves the clock by an interval and runs a round then.
func (ti *testInstance) nextRound() {
	ti.clock.Advance(10 * time.Second)
	ti.digests.round(context.Background(), ti.clock.Now())
}

// TestDigestsEveryInterval: at each interval's end (multiples of Digest_Interval since the epoch) a signed
// digest lists what the ledger recorded for the organisation's bucket in it, and nothing of other
// organisations or buckets; empty intervals get one too, and a pause gets one digest spanning it. The state
// in Store_Dir says where the chain stands.
func TestDigestsEveryInterval(t *testing.T) {
	cfg, pub := digestConfig(t, nil)
	in := startTest(t, cfg, "test", &fakeS3{}, TestHooks{})
	t0 := in.clock.Now() // 14:50:45
	start := t0.Truncate(10 * time.Second)
	first := in.deliveredObject(t, "b-1", "org-a/org-audit-logs-1.json.gz")
	in.deliveredObject(t, "b-1", "org-b/org-audit-logs-2.json.gz")
	in.deliveredObject(t, "archive", "org-a/org-audit-logs-3.json.gz")
	in.clock.Advance(10 * time.Second)
	docs := in.waitDigests(t, "org-a", 1, pub)
	checkChain(t, docs, start, start.Add(10*time.Second))
	if got := keysOf(docs[0]); !slices.Equal(got, []string{first.Key}) {
		t.Errorf("the first digest lists %v", got)
	}
	if o := docs[0].Objects[0]; o.SHA256 != first.SHA256 || o.Bytes != 100 || o.Records != 2 || string(o.First.ID) != `"ev-1"` || !o.DeliveredAt.Equal(t0) {
		t.Errorf("listed as %+v", o)
	}

	in.clock.Advance(10 * time.Second)
	in.waitDigests(t, "org-a", 2, pub)
	late := in.deliveredObject(t, "b-1", "org-a/user-audit-logs-4.json.gz")
	in.clock.Advance(20 * time.Second)
	docs = in.waitDigests(t, "org-a", 3, pub)
	checkChain(t, docs, start, start.Add(10*time.Second), start.Add(20*time.Second), start.Add(40*time.Second))
	if len(docs[1].Objects) != 0 || !slices.Equal(keysOf(docs[2]), []string{late.Key}) {
		t.Errorf("the empty interval lists %v, the long one %v", keysOf(docs[1]), keysOf(docs[2]))
	}
	in.waitLogged(t, "written (sequence 3)")
	data, err := os.ReadFile(filepath.Join(cfg.StoreDir, "digests", "org-a.json"))
	st, derr := digest.DecodeChainState(data)
	if err != nil || derr != nil || st.Sequence != 3 || st.Pending != nil || !st.End.Equal(start.Add(40*time.Second)) {
		t.Errorf("state %+v (%v, %v)", st, err, derr)
	}
	if keep := in.digests.keepFrom(); !keep.Equal(start.Add(40 * time.Second)) {
		t.Errorf("the ledger keeps entries from %s", keep)
	}
}

// TestDigestChainSurvivesRestarts: a restart goes on with the chain in Store_Dir; a digest that could not be
// uploaded stays pending through a restart, is uploaded as it was made, and a 412 for it (written before the
// answer was lost) counts as written.
func TestDigestChainSurvivesRestarts(t *testing.T) {
	cfg, pub := digestConfig(t, nil)
	s3 := &fakeS3{}
	clk := newFakeClock()
	start := clk.Now().Truncate(10 * time.Second)
	in := startOn(t, clk, cfg, "test", s3, TestHooks{})
	in.clock.Advance(10 * time.Second)
	in.waitDigests(t, "org-a", 1, pub)
	in.shutDown(t)

	s3.setDown("b-1")
	in = startOn(t, clk, cfg, "test", s3, TestHooks{})
	in.clock.Advance(10 * time.Second)
	in.waitLogged(t, ".json failed, attempt 1")
	in.shutDown(t)
	data, _ := os.ReadFile(filepath.Join(cfg.StoreDir, "digests", "org-a.json"))
	st, err := digest.DecodeChainState(data)
	if err != nil || st.Pending == nil || st.Sequence != 1 {
		t.Fatalf("state after a failed upload: %+v, %v", st, err)
	}
	// The upload went through after all; its answer was lost.
	s3.mu.Lock()
	s3.objects[st.Pending.Key], s3.meta[st.Pending.Key] = st.Pending.Body, map[string]string{digest.MetadataSignature: st.Pending.Signature}
	s3.mu.Unlock()

	s3.setDown("")
	in = startOn(t, clk, cfg, "test", s3, TestHooks{})
	in.clock.Advance(10 * time.Second)
	in.waitLogged(t, "written (sequence 2)")
	in.clock.Advance(10 * time.Second)
	docs := in.waitDigests(t, "org-a", 3, pub)
	checkChain(t, docs, start, start.Add(10*time.Second), st.Pending.End, clk.Now().Truncate(10*time.Second))
	var chain []byte
	for range 2 {
		id, err := os.ReadFile(filepath.Join(cfg.StoreDir, "digests", "chain-id"))
		if err != nil || (chain != nil && string(id) != string(chain)) {
			t.Errorf("chain id %q, %v", id, err)
		}
		chain = id
	}
}

// TestRefusedDigestIsHeld: a bucket that refuses the digest holds it pending, tried again every
// Hold_Retry_Interval and no sooner, and no later digest is made meanwhile; once it is accepted, the next one
// spans the time it was held. The rounds run here, one by one, at the times the test gives.
func TestRefusedDigestIsHeld(t *testing.T) {
	cfg, pub := digestConfig(t, conf.Map{"Hold_Retry_Interval": "60s"})
	s3 := &fakeS3{refused: "b-1"}
	in := startRounds(t, cfg, s3)
	ctx := context.Background()
	start := in.clock.Now().Truncate(10 * time.Second)
	failed := start.Add(11 * time.Second)
	in.digests.round(ctx, failed)
	in.waitLogged(t, "refused, attempt 1; it stays pending in Store_Dir")
	for i := range 5 {
		in.digests.round(ctx, failed.Add(time.Duration(i+1)*10*time.Second))
	}
	if n := s3.callCount(); n != 1 {
		t.Errorf("%d attempts before Hold_Retry_Interval passed", n)
	}
	s3.mu.Lock()
	s3.refused = ""
	s3.mu.Unlock()
	in.digests.round(ctx, failed.Add(60*time.Second))
	in.digests.round(ctx, failed.Add(61*time.Second))
	docs := s3.digestsOf(t, "org-a", pub)
	checkChain(t, docs, start, start.Add(10*time.Second), start.Add(70*time.Second))
	if n := in.digests.failed.Load(); n != 1 || in.digests.written.Load() != 2 {
		t.Errorf("%d failed, %d written", n, in.digests.written.Load())
	}
}

// TestDigestsOnlyWhereSwitchedOn: with a destinations file, only entries with digests on get them (the
// output's Digests is the default), each in its own bucket, and the archive never does.
func TestDigestsOnlyWhereSwitchedOn(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "destinations.json")
	entry := func(org, bucket, more string) string {
		return `{"org_id":"` + org + `","bucket_name":"` + bucket + `","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"ext-` + org + `"` + more + `}`
	}
	os.WriteFile(file, []byte("["+entry("org-a", "bucket-a", "")+","+entry("org-b", "bucket-b", `,"digests":false`)+","+
		entry("Org-C", "bucket-c", "")+"]"), 0o600)
	cfg, pub := digestConfig(t, conf.Map{"Org_ID": "", "Bucket": "archive", "Unlisted_Orgs": "archive", "Destinations_File": file})
	s3 := &fakeS3{}
	in := startTest(t, cfg, "test", s3, TestHooks{})
	in.deliveredObject(t, "archive", "org-x/org-audit-logs-1.json.gz")
	in.deliveredObject(t, "bucket-c", "Org-C/org-audit-logs-2.json.gz")
	in.clock.Advance(10 * time.Second)
	in.waitDigests(t, "org-a", 1, pub)
	c := in.waitDigests(t, "Org-C", 1, pub)
	if got := keysOf(c[0]); !slices.Equal(got, []string{"Org-C/org-audit-logs-2.json.gz"}) {
		t.Errorf("Org-C's digest lists %v", got)
	}
	for key, bucket := range s3.buckets {
		if strings.Contains(key, "/digests/") && bucket != map[string]string{"org-a": "bucket-a", "Org-C": "bucket-c"}[strings.Split(key, "/")[0]] {
			t.Errorf("%s went to %s", key, bucket)
		}
	}
	if n := len(s3.keys()); n != 2 {
		t.Errorf("S3 holds %v; want the digests of org-a and Org-C only", s3.keys())
	}
}

// TestDigestKeyErrors: a signing key that cannot be used fails Init naming Digest_Signing_Key, never showing
// what the file holds.
func TestDigestKeyErrors(t *testing.T) {
	const secret = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LW11c3Qtbm90LWxlYWs="
	for _, tc := range []struct{ content, want string }{
		{"", "no such file"},
		{"-----BEGIN PRIVATE KEY-----\n" + secret + "\n-----END PRIVATE KEY-----\n", "not a readable PKCS#8 key"},
		{secret, "no PEM block"},
	} {
		cfg, _ := digestConfig(t, nil)
		if tc.content != "" {
			os.WriteFile(cfg.DigestSigningKey, []byte(tc.content), 0o600)
		} else {
			os.Remove(cfg.DigestSigningKey)
		}
		_, err := start(cfg, "test", func(Level, string) {}, deps{send: &fakeS3{}, clock: newFakeClock()})
		if err == nil || !strings.HasPrefix(err.Error(), "Digest_Signing_Key: ") || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), secret) {
			t.Errorf("%q: %v", tc.want, err)
		}
	}
}

// TestDigestKeyTakenByAnotherWriter: a digest whose key is already taken when it is first sent was not written
// by this chain (a Store_Dir copied to a second replica, or an organisation's state removed while the clock
// was behind): its 412 must not count as written. The digest is made again as the first of a new chain,
// starting where the old one stood, so what was delivered is still listed; the other writer's is left alone.
// The rounds run here, one by one.
func TestDigestKeyTakenByAnotherWriter(t *testing.T) {
	cfg, pub := digestConfig(t, nil)
	s3 := &fakeS3{}
	in := startRounds(t, cfg, s3)
	start := in.clock.Now().Truncate(10 * time.Second)
	old := in.digests.chain
	// The other replica, from a copy of this Store_Dir, wrote its digest of the interval first.
	signer, err := digest.LoadSigner(cfg.DigestSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := signer.Make(digest.NewChain(old, start), digest.Interval{Org: "org-a", End: start.Add(10 * time.Second), Every: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	taken := theirs.Pending.Key
	s3.mu.Lock()
	s3.objects, s3.buckets, s3.meta = map[string][]byte{taken: theirs.Pending.Body}, map[string]string{taken: "b-1"},
		map[string]map[string]string{taken: {digest.MetadataSignature: theirs.Pending.Signature}}
	s3.mu.Unlock()
	obj := in.deliveredObject(t, "b-1", "org-a/org-audit-logs-1.json.gz")

	ctx := context.Background()
	for _, at := range []time.Duration{10, 11, 20} {
		in.digests.round(ctx, start.Add(at*time.Second))
	}
	docs := slices.DeleteFunc(s3.digestsOf(t, "org-a", pub), func(d digest.Document) bool { return d.Chain == old })
	checkChain(t, docs, start, start.Add(10*time.Second), start.Add(20*time.Second))
	if len(docs) > 0 && !slices.Equal(keysOf(docs[0]), []string{obj.Key}) {
		t.Errorf("the new chain lists %v", keysOf(docs[0]))
	}
	if string(s3.objects[taken]) != string(theirs.Pending.Body) {
		t.Errorf("the other writer's digest was replaced")
	}
	id, _ := os.ReadFile(filepath.Join(cfg.StoreDir, "digests", "chain-id"))
	if len(docs) > 0 && strings.TrimSpace(string(id)) != docs[0].Chain {
		t.Errorf("chain-id %q, the new chain %s", id, docs[0].Chain)
	}
	if in.sink.count("already taken by another writer when first sent") != 1 {
		t.Errorf("not logged once:\n%s", in.sink.joined())
	}
}

// TestDigestChainFollowsTheBucket: when an organisation's bucket changes, its digests start a new chain in the
// new bucket, from where the old one stood, instead of naming as previous a digest the new bucket does not
// hold (which its verification would report as deleted); a digest made for the old bucket and not uploaded
// there is not put into the new one. The rounds run here, one by one.
func TestDigestChainFollowsTheBucket(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	cfg, pub := digestConfig(t, conf.Map{"Org_ID": "", "Bucket": "archive", "Unlisted_Orgs": "archive", "Destinations_File": file})
	s3 := &fakeS3{}
	in := startRounds(t, cfg, s3)
	start := in.clock.Now().Truncate(10 * time.Second)
	in.nextRound()
	in.deliveredObject(t, "bucket-a", "org-a/org-audit-logs-1.json.gz")
	s3.setDown("bucket-a")
	in.nextRound()
	in.waitLogged(t, "failed, attempt 1")

	writeDestinations(t, file, map[string]string{"org-a": "bucket-b"})
	if _, err := in.dests.reload(); err != nil {
		t.Fatal(err)
	}
	s3.setDown("")
	moved := in.deliveredObject(t, "bucket-b", "org-a/org-audit-logs-2.json.gz")
	in.nextRound()
	var inB []digest.Document
	for _, doc := range s3.digestsOf(t, "org-a", pub) {
		if s3.buckets[digest.Key("", doc.OrgID, doc.Chain, doc.End)] == "bucket-b" {
			inB = append(inB, doc)
		}
	}
	checkChain(t, inB, start.Add(10*time.Second), start.Add(30*time.Second))
	if len(inB) == 1 && !slices.Equal(keysOf(inB[0]), []string{moved.Key}) {
		t.Errorf("bucket-b's digest lists %v", keysOf(inB[0]))
	}
	if in.sink.count("now go to s3://bucket-b/ instead of s3://bucket-a/ (the digest org-a/digests/") != 1 {
		t.Errorf("the move is not logged once:\n%s", in.sink.joined())
	}
}

// TestRemovedOrganisationDoesNotHoldTheLedger: an organisation removed from the destinations file (or whose
// digests are switched off) makes no more digests, so its chain no longer keeps the ledger's entries: the
// ledger keeps from where the remaining chains stand, not from the removed one's last digest forever.
func TestRemovedOrganisationDoesNotHoldTheLedger(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a", "org-b": "bucket-b"})
	cfg, _ := digestConfig(t, conf.Map{"Org_ID": "", "Bucket": "archive", "Unlisted_Orgs": "archive", "Destinations_File": file})
	in := startRounds(t, cfg, &fakeS3{})
	in.nextRound()
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	if _, err := in.dests.reload(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		in.nextRound()
	}
	if keep, want := in.digests.keepFrom(), in.clock.Now().Truncate(10*time.Second); !keep.Equal(want) {
		t.Errorf("the ledger keeps entries from %s, want %s", keep, want)
	}
}

// TestDigestsThroughClockSteps: a clock set ahead, then back (NTP correcting a host booted with a wrong clock),
// makes no digest until the clock reaches the last digest's end again, never one with an earlier end under a
// key the chain already used; what is delivered meanwhile is in the next digest, not left out for being
// stamped before the interval it starts.
func TestDigestsThroughClockSteps(t *testing.T) {
	cfg, pub := digestConfig(t, nil)
	s3 := &fakeS3{}
	in := startRounds(t, cfg, s3)
	ctx := context.Background()
	start := in.clock.Now().Truncate(10 * time.Second)
	at := func(d time.Duration) {
		in.clock.Advance(start.Add(d).Sub(in.clock.Now()))
		in.digests.round(ctx, in.clock.Now())
	}
	at(105 * time.Second) // ahead
	at(15 * time.Second)  // back
	late := in.deliveredObject(t, "b-1", "org-a/org-audit-logs-1.json.gz")
	at(55 * time.Second)
	if n := len(s3.digestsOf(t, "org-a", pub)); n != 1 {
		t.Fatalf("%d digests before the clock is back at the last one's end", n)
	}
	at(115 * time.Second)
	docs := s3.digestsOf(t, "org-a", pub)
	checkChain(t, docs, start, start.Add(100*time.Second), start.Add(110*time.Second))
	if len(docs) == 2 && !slices.Equal(keysOf(docs[1]), []string{late.Key}) {
		t.Errorf("the digest after the clock caught up lists %v", keysOf(docs[1]))
	}
}

// readThen is the ledger as the digests read it, calling then once, right after the first read.
type readThen struct {
	ledgerReader
	then func()
}

func (r *readThen) Entries(f ledger.Filter) iter.Seq2[ledger.Entry, error] {
	return func(yield func(ledger.Entry, error) bool) {
		for e, err := range r.ledgerReader.Entries(f) {
			if !yield(e, err) {
				return
			}
		}
		if then := r.then; then != nil {
			r.then = nil
			then()
		}
	}
}

// TestDigestListsWhatIsRecordedWhileItIsMade: an object recorded after the ledger was read for a digest and
// before the chain's end moved, with the clock just set back before that end, is listed by the next digest.
// Before, the ledger's floor rose only once the digest was made: the object was stamped before the end, and
// the next digest, which starts there, did not list it.
func TestDigestListsWhatIsRecordedWhileItIsMade(t *testing.T) {
	cfg, pub := digestConfig(t, nil)
	s3 := &fakeS3{}
	in := startRounds(t, cfg, s3)
	start := in.clock.Now().Truncate(10 * time.Second)
	var late ledger.Entry
	in.digests.ledger = &readThen{ledgerReader: in.digests.ledger, then: func() {
		in.clock.Advance(start.Add(9 * time.Second).Sub(in.clock.Now())) // set back, before the end being made
		late = in.deliveredObject(t, "b-1", "org-a/org-audit-logs-1.json.gz")
		in.clock.Advance(start.Add(15 * time.Second).Sub(in.clock.Now()))
	}}
	in.nextRound()
	in.nextRound()
	docs := s3.digestsOf(t, "org-a", pub)
	checkChain(t, docs, start, start.Add(10*time.Second), start.Add(20*time.Second))
	if len(docs) == 2 && (len(docs[0].Objects) != 0 || !slices.Equal(keysOf(docs[1]), []string{late.Key})) {
		t.Errorf("the digests list %v and %v, want the late object in the second", keysOf(docs[0]), keysOf(docs[1]))
	}
}
