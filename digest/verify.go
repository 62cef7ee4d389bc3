package digest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// ObjectInfo is one object of a listing.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time // set by S3 when the object was written; no writer chooses it
}

// Reader is read access to the customer's bucket (s3:ListBucket and s3:GetObject).
type Reader interface {
	// List lists every object whose key starts with prefix.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Open reads an object and its user metadata (keys without x-amz-meta-, any case); an error wrapping
	// ErrNotFound when it does not exist.
	Open(ctx context.Context, key string) (io.ReadCloser, map[string]string, error)
}

// ErrNotFound is what a Reader's Open wraps for a missing object.
var ErrNotFound = errors.New("no such object")

// Query says what to verify.
type Query struct {
	Org, Prefix string              // the organisation's objects are under {Prefix}{Org}/
	Keys        []ed25519.PublicKey // digests signed by any of them pass
	From, To    time.Time           // the period to verify; zero From: from the first digest; zero To: Now
	Now         time.Time           // zero: time.Now()
	// Grace is how late after its interval's end a digest may appear before its absence is a gap (it is made
	// at the end of the interval and uploaded within seconds unless the bucket refuses it); 0: DefaultGrace.
	Grace   time.Duration
	Workers int // objects read at once; 0: 8
}

// DefaultGrace is Query.Grace when not set.
const DefaultGrace = 15 * time.Minute

// Severity of a finding.
type Severity int

// Severities, the worst first.
const (
	Problem      Severity = iota // evidence missing or contradicted: verification fails
	CannotVerify                 // something could not be read (access denied, network)
	Notice                       // worth knowing, not a failure
)

func (s Severity) String() string { return [...]string{"PROBLEM", "CANNOT VERIFY", "notice"}[s] }

// Kinds of findings.
const (
	BadSignature   = "bad-signature"   // a digest's signature does not verify, or it has none
	UnknownKey     = "unknown-key"     // digests name a signing key other than the public keys given
	BadDigest      = "bad-digest"      // a digest verifies but its content is not what its key says
	MissingDigest  = "missing-digest"  // a digest named by the next one's link is not in the bucket
	BrokenChain    = "broken-chain"    // two digests of a chain do not link (sequence, signature, interval)
	StoppedChain   = "stopped-chain"   // a chain's last digest ends too long before the period's end
	NoDigest       = "no-digest"       // no digest in the period
	MissingObject  = "missing-object"  // a digest lists it, the bucket does not hold it
	AlteredObject  = "altered-object"  // its SHA-256 is not what a digest says
	UnlistedObject = "unlisted-object" // under the organisation's prefix, no digest lists it
	NotYetCovered  = "not-yet-covered" // written after the last digest's interval end
	Probe          = "probe"           // a `wivaudit check --write-probe` object
	NeverDelivered = "never-delivered" // an unconfirmed upload that did not land (a retry delivered it)
	Unreadable     = "unreadable"      // could not be listed or read
)

// Finding is one thing verification found, naming the object or digest.
type Finding struct {
	Severity Severity
	Kind     string
	Key      string
	Detail   string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s %s %s: %s", f.Severity, f.Kind, f.Key, f.Detail)
}

// Report is the outcome of Verify.
type Report struct {
	Findings []Finding // the worst first, then by key
	Digests  int       // digests whose signature and content verified
	Objects  int       // listed objects found with their SHA-256
	Chains   []string  // the chains seen
}

// Code is the exit code: 0 verified, 1 problems found, 2 could not verify.
func (r Report) Code() int {
	code := 0
	for _, f := range r.Findings {
		switch f.Severity {
		case Problem:
			return 1
		case CannotVerify:
			code = 2
		}
	}
	return code
}

// verified is a digest whose signature and content checked out.
type verified struct {
	key, sig string
	doc      Document
}

type verifier struct {
	q     Query
	r     Reader
	base  string
	to    time.Time
	given map[string]bool // the fingerprints of the keys given

	mu       sync.Mutex
	findings []Finding
	unknown  map[string]*unknownKey // by the fingerprint the digests name
}

// unknownKey is what digests whose signature fails say of the key that signed them, when it is not a key
// given: a customer holding the wrong public key would otherwise see every digest as forged.
type unknownKey struct {
	digests []string
	objects []string // what they list, unchecked
}

func (v *verifier) add(sev Severity, kind, key, format string, args ...any) {
	v.mu.Lock()
	v.findings = append(v.findings, Finding{sev, kind, key, fmt.Sprintf(format, args...)})
	v.mu.Unlock()
}

// Verify checks an organisation's digests and objects over a period: every digest's signature, the links of
// each chain, that every object a digest lists is there with its SHA-256, and that no object written in the
// period is listed by no digest.
func Verify(ctx context.Context, r Reader, q Query) Report {
	if q.Now.IsZero() {
		q.Now = time.Now()
	}
	if q.Grace <= 0 {
		q.Grace = DefaultGrace
	}
	if q.Workers <= 0 {
		q.Workers = 8
	}
	v := &verifier{q: q, r: r, base: q.Prefix + q.Org + "/", to: q.To, given: map[string]bool{}, unknown: map[string]*unknownKey{}}
	for _, k := range q.Keys {
		v.given[Fingerprint(k)] = true
	}
	if v.to.IsZero() || v.to.After(q.Now) {
		v.to = q.Now
	}
	rep := Report{}
	listing, err := r.List(ctx, v.base)
	if err != nil {
		v.add(CannotVerify, Unreadable, v.base, "cannot list: %v", err)
		rep.Findings = v.findings
		return rep
	}
	present := map[string]ObjectInfo{}
	chains := map[string][]digestName{}
	for _, o := range listing {
		present[o.Key] = o
		if d, ok := v.parseName(o.Key); ok {
			chains[d.chain] = append(chains[d.chain], d)
		}
	}
	var selected, tails []digestName
	for id, names := range chains {
		slices.SortFunc(names, func(a, b digestName) int { return a.end.Compare(b.end) })
		rep.Chains = append(rep.Chains, id)
		inPeriod := v.selectRange(names)
		selected = append(selected, inPeriod...)
		if len(inPeriod) == 0 {
			// Its last digest ends before the period: whether the chain stopped in it depends on its interval.
			tails = append(tails, names[len(names)-1])
		}
	}
	slices.Sort(rep.Chains)
	digests := v.readDigests(ctx, selected)
	rep.Digests = len(digests)
	if len(selected) == 0 {
		v.add(Problem, NoDigest, v.base+"digests/", "no digest covers %s to %s%s", fmtTime(q.From), fmtTime(v.to), v.elsewhere(ctx, len(chains) == 0))
	}
	horizon := v.checkChains(chains, digests, v.readDigests(ctx, tails), present)
	rep.Objects = v.checkObjects(ctx, digests, present)
	v.checkUnlisted(listing, digests, horizon)
	v.reportUnknownKeys()
	slices.SortFunc(v.findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Severity, b.Severity), strings.Compare(a.Key, b.Key), strings.Compare(a.Kind, b.Kind))
	})
	rep.Findings = v.findings
	return rep
}

// digestName is what a digest's key says.
type digestName struct {
	key, chain string
	end        time.Time
}

// parseName reads {base}digests/{chain}/{org}-digest-{end}.json.
func (v *verifier) parseName(key string) (digestName, bool) {
	return parseName(v.q.Prefix, v.q.Org, key)
}

func parseName(prefix, org, key string) (digestName, bool) {
	rest, ok := strings.CutPrefix(key, prefix+org+"/digests/")
	if !ok {
		return digestName{}, false
	}
	chain, file, ok := strings.Cut(rest, "/")
	stamp, ok2 := strings.CutPrefix(file, org+"-digest-")
	stamp, ok3 := strings.CutSuffix(stamp, ".json")
	if !ok || !ok2 || !ok3 || chain == "" {
		return digestName{}, false
	}
	end, err := time.Parse(keyTime, stamp)
	if err != nil {
		return digestName{}, false
	}
	return digestName{key: key, chain: chain, end: end}, true
}

// selectRange is the digests of one chain, oldest first, that cover the period: those ending after From, up to the first
// that ends at or after To (it covers objects written just before To).
func (v *verifier) selectRange(names []digestName) []digestName {
	var out []digestName
	for _, d := range names {
		if !d.end.After(v.q.From) {
			continue
		}
		out = append(out, d)
		if !d.end.Before(v.to) {
			break
		}
	}
	return out
}

// parallel runs fn for 0..n-1 on the query's workers.
func (v *verifier) parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(v.q.Workers, n) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// maxDigestBytes bounds what is read of one digest.
const maxDigestBytes = 256 << 20

// readDigests reads the digests named and keeps those whose signature and content verify.
func (v *verifier) readDigests(ctx context.Context, names []digestName) map[string]*verified {
	out := map[string]*verified{}
	var mu sync.Mutex
	v.parallel(len(names), func(i int) {
		if d := v.readDigest(ctx, names[i]); d != nil {
			mu.Lock()
			out[d.key] = d
			mu.Unlock()
		}
	})
	return out
}

func (v *verifier) readDigest(ctx context.Context, n digestName) *verified {
	rc, meta, err := v.r.Open(ctx, n.key)
	if err != nil {
		v.add(CannotVerify, Unreadable, n.key, "cannot read the digest: %v", err)
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(rc, maxDigestBytes))
	rc.Close()
	if err != nil {
		v.add(CannotVerify, Unreadable, n.key, "cannot read the digest: %v", err)
		return nil
	}
	var sig string
	for k, val := range meta {
		if strings.EqualFold(k, MetadataSignature) {
			sig = val
		}
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if sig == "" || err != nil {
		v.add(Problem, BadSignature, n.key, "no signature in its x-amz-meta-%s metadata: altered or not written by wivaudit", MetadataSignature)
		return nil
	}
	if !slices.ContainsFunc(v.q.Keys, func(k ed25519.PublicKey) bool { return ed25519.Verify(k, body, raw) }) {
		if !v.signedByUnknownKey(n.key, body) {
			v.add(Problem, BadSignature, n.key, "the signature does not verify with the public key given: the digest or its signature was altered, or another key signed it")
		}
		return nil
	}
	var doc Document
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil || doc.Version != Version {
		v.add(Problem, BadDigest, n.key, "signed, but not a version %d digest this verifier reads (%v): use a newer wivaudit", Version, err)
		return nil
	}
	if want := Key(v.q.Prefix, doc.OrgID, doc.Chain, doc.End); want != n.key || doc.OrgID != v.q.Org {
		v.add(Problem, BadDigest, n.key, "signed for another place (%s): a digest copied or moved here", want)
		return nil
	}
	return &verified{key: n.key, sig: sig, doc: doc}
}

// signedByUnknownKey notes a digest whose signature failed and which names a signing key other than the keys
// given, and reports whether it does. What it says is not trusted: it only tells a wrong public key from an
// altered digest, and either way nothing it lists counts as verified.
func (v *verifier) signedByUnknownKey(key string, body []byte) bool {
	var claim struct {
		Fingerprint string `json:"public_key_fingerprint"`
		Objects     []struct {
			Key string `json:"key"`
		} `json:"objects"`
	}
	if json.Unmarshal(body, &claim) != nil || claim.Fingerprint == "" || v.given[claim.Fingerprint] {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	u := v.unknown[claim.Fingerprint]
	if u == nil {
		u = &unknownKey{}
		v.unknown[claim.Fingerprint] = u
	}
	u.digests = append(u.digests, key)
	for _, o := range claim.Objects {
		u.objects = append(u.objects, o.Key)
	}
	return true
}

// reportUnknownKeys says once per signing key that digests name a key not given, instead of one bad
// signature per digest.
func (v *verifier) reportUnknownKeys() {
	given := "the public key given has fingerprint "
	if len(v.given) > 1 {
		given = "the public keys given have fingerprints "
	}
	given += strings.Join(slices.Sorted(maps.Keys(v.given)), ", ")
	for fp, u := range v.unknown {
		slices.Sort(u.digests)
		which, its, they := "this digest names", "its signature", "it was"
		if n := len(u.digests); n > 1 {
			which, its, they = fmt.Sprintf("this and %d more digests, to %s, name", n-1, u.digests[n-1]), "their signatures", "they were"
		}
		v.add(Problem, UnknownKey, u.digests[0], "%s the signing key of fingerprint %s, but %s, so %s cannot verify: verify with the public key of fingerprint %s "+
			"(after a key rotation, keep the old and the new key in one file); if wivaudit never gave you that key, %s not written by wivaudit. "+
			"%d objects listed there are not checked", which, fp, given, its, fp, they, len(u.objects))
	}
}

// elsewhere looks, when the organisation's place holds no digest at all, for its digests under another key
// prefix, and says which prefix to verify with.
func (v *verifier) elsewhere(ctx context.Context, noneHere bool) string {
	if !noneHere {
		return ""
	}
	all, err := v.r.List(ctx, "")
	if err != nil {
		return ""
	}
	found := map[string]bool{}
	for _, o := range all {
		i := strings.Index("/"+o.Key, "/"+v.q.Org+"/digests/")
		if i < 0 {
			continue
		}
		if prefix := o.Key[:i]; prefix != v.q.Prefix {
			if _, ok := parseName(prefix, v.q.Org, o.Key); ok {
				found[prefix] = true
			}
		}
	}
	if len(found) == 0 {
		return ""
	}
	var places, flags []string
	for _, p := range slices.Sorted(maps.Keys(found)) {
		places = append(places, p+v.q.Org+"/digests/")
		if p == "" {
			flags = append(flags, "without --prefix")
		} else {
			flags = append(flags, "with --prefix "+p)
		}
	}
	return fmt.Sprintf(", but the bucket holds digests of %s under %s: the delivery uses another key prefix; verify %s",
		v.q.Org, strings.Join(places, " and "), strings.Join(flags, ", or "))
}

// checkChains checks each chain's links and that it reaches the end of the period; tails are the last
// digests of the chains with none in the period. It returns the horizon: the earliest end of the chains' last
// digests, after which objects are not yet covered.
func (v *verifier) checkChains(chains map[string][]digestName, digests, tails map[string]*verified, present map[string]ObjectInfo) time.Time {
	successor := map[string]string{}
	for _, d := range digests {
		doc := d.doc
		if doc.Sequence <= 1 {
			if doc.PreviousKey != nil || doc.Sequence == 0 {
				v.add(Problem, BrokenChain, d.key, "sequence %d with previous digest %v: not a chain's first digest", doc.Sequence, doc.PreviousKey)
			}
			continue
		}
		if doc.PreviousKey == nil || doc.PreviousSignature == nil {
			v.add(Problem, BrokenChain, d.key, "sequence %d names no previous digest", doc.Sequence)
			continue
		}
		prevKey := *doc.PreviousKey
		if other, ok := successor[prevKey]; ok {
			v.add(Problem, BrokenChain, d.key, "%s names the same previous digest %s", other, prevKey)
		}
		successor[prevKey] = d.key
		prev, checked := digests[prevKey]
		switch {
		case checked:
			v.checkLink(prev, d)
		case present[prevKey].Key == "":
			v.add(Problem, MissingDigest, prevKey, "named as the previous digest by %s (sequence %d), not in the bucket: deleted", d.key, doc.Sequence-1)
		}
	}
	var horizon time.Time
	for id, names := range chains {
		last := names[len(names)-1]
		var every time.Duration
		for i := len(names) - 1; i >= 0 && every == 0; i-- {
			if d := cmp.Or(digests[names[i].key], tails[names[i].key]); d != nil {
				every = time.Duration(d.doc.IntervalSeconds) * time.Second
			}
		}
		if every == 0 {
			continue // nothing of it verified: reported digest by digest
		}
		if due := last.end.Add(every + v.q.Grace); due.Before(v.to) {
			sev, when := Problem, "later digests were deleted, or the replica writing the chain stopped (removed, or its Store_Dir lost)"
			if due.Before(v.q.From) {
				sev, when = Notice, "it stopped before the period verified; verify from before "+fmtTime(due)+" to see it as a problem"
			}
			v.add(sev, StoppedChain, last.key, "chain %s has no digest after this one, which ends %s, though one is due every %s (the next would be %s): %s",
				id, fmtTime(last.end), every, Key(v.q.Prefix, v.q.Org, id, last.end.Add(every)), when)
			continue
		}
		if horizon.IsZero() || last.end.Before(horizon) {
			horizon = last.end
		}
	}
	return horizon
}

// checkLink checks that next follows prev in their chain.
func (v *verifier) checkLink(prev, next *verified) {
	switch {
	case *next.doc.PreviousSignature != prev.sig:
		v.add(Problem, BrokenChain, next.key, "its previous digest's signature is not the one %s carries: that digest was replaced", prev.key)
	case next.doc.Sequence != prev.doc.Sequence+1 || next.doc.Chain != prev.doc.Chain:
		v.add(Problem, BrokenChain, next.key, "sequence %d of chain %s follows %s, sequence %d of chain %s", next.doc.Sequence, next.doc.Chain, prev.key, prev.doc.Sequence, prev.doc.Chain)
	case !next.doc.Start.Equal(prev.doc.End):
		v.add(Problem, BrokenChain, next.key, "starts %s, but the previous digest %s ends %s: the time between is not covered", fmtTime(next.doc.Start), prev.key, fmtTime(prev.doc.End))
	}
}

// listing is one digest's entry for an object.
type listing struct {
	digest string
	obj    Object
}

// checkObjects checks that every object the digests list is in the bucket with its SHA-256, and returns how
// many are.
func (v *verifier) checkObjects(ctx context.Context, digests map[string]*verified, present map[string]ObjectInfo) int {
	listed := map[string][]listing{}
	for _, d := range digests {
		for _, o := range d.doc.Objects {
			listed[o.Key] = append(listed[o.Key], listing{d.key, o})
		}
	}
	keys := make([]string, 0, len(listed))
	for k := range listed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var good int
	var mu sync.Mutex
	v.parallel(len(keys), func(i int) {
		if v.checkObject(ctx, keys[i], listed[keys[i]], present) {
			mu.Lock()
			good++
			mu.Unlock()
		}
	})
	return good
}

func (v *verifier) checkObject(ctx context.Context, key string, ls []listing, present map[string]ObjectInfo) bool {
	confirmed := slices.IndexFunc(ls, func(l listing) bool { return !l.obj.Unconfirmed })
	if _, ok := present[key]; !ok {
		if confirmed < 0 {
			v.add(Notice, NeverDelivered, key, "listed by %s as an upload S3 never confirmed, and not in the bucket: it did not land (its batch was delivered under another key)", ls[0].digest)
			return false
		}
		v.add(Problem, MissingObject, key, "listed by %s (%d bytes, SHA-256 %s), not in the bucket: deleted", ls[confirmed].digest, ls[confirmed].obj.Bytes, ls[confirmed].obj.SHA256)
		return false
	}
	sum, err := v.hash(ctx, key)
	if errors.Is(err, ErrNotFound) {
		v.add(Problem, MissingObject, key, "listed by %s, deleted while being verified", ls[0].digest)
		return false
	}
	if err != nil {
		v.add(CannotVerify, Unreadable, key, "cannot read: %v", err)
		return false
	}
	if slices.ContainsFunc(ls, func(l listing) bool { return l.obj.SHA256 == sum }) {
		return true
	}
	l := ls[max(confirmed, 0)]
	v.add(Problem, AlteredObject, key, "its SHA-256 is %s, %s lists %s: altered or replaced", sum, l.digest, l.obj.SHA256)
	return false
}

func (v *verifier) hash(ctx context.Context, key string) (string, error) {
	rc, _, err := v.r.Open(ctx, key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkUnlisted reports the objects written in the period that no digest lists.
func (v *verifier) checkUnlisted(objects []ObjectInfo, digests map[string]*verified, horizon time.Time) {
	listed := map[string]bool{}
	for _, d := range digests {
		listed[d.key] = true
		for _, o := range d.doc.Objects {
			listed[o.Key] = true
		}
	}
	// What digests signed with an unknown key list is reported with them, once.
	for _, u := range v.unknown {
		for _, k := range u.objects {
			listed[k] = true
		}
	}
	for _, o := range objects {
		if listed[o.Key] || o.LastModified.Before(v.q.From) || !o.LastModified.Before(v.to) {
			continue
		}
		if _, ok := v.parseName(o.Key); ok {
			continue // a digest outside the period, or one already reported
		}
		name := path.Base(o.Key)
		switch {
		case strings.HasPrefix(name, "wivaudit-delivery-check-") && strings.HasSuffix(name, ".txt"):
			v.add(Notice, Probe, o.Key, "a delivery check's probe object (wivaudit check --write-probe), written %s", fmtTime(o.LastModified))
		case !horizon.IsZero() && !o.LastModified.Before(horizon):
			v.add(Notice, NotYetCovered, o.Key, "written %s, after the last digest's interval end %s: the next digest lists it", fmtTime(o.LastModified), fmtTime(horizon))
		case !horizon.IsZero() && !o.LastModified.Before(horizon.Add(-v.q.Grace)):
			// S3 dates an object when its upload starts, the ledger when S3 has answered: an upload under way at
			// an interval's end is listed by the next digest.
			v.add(Notice, NotYetCovered, o.Key, "written %s, within the grace (%s) before the last digest's interval end %s: an upload under way then is listed by the next digest",
				fmtTime(o.LastModified), v.q.Grace, fmtTime(horizon))
		default:
			v.add(Problem, UnlistedObject, o.Key, "written %s, listed by no digest: not delivered by wivaudit, or its digest is missing or failed", fmtTime(o.LastModified))
		}
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "the beginning"
	}
	return t.UTC().Format(time.RFC3339)
}
