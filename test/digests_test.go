package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wiv/out_wivaudit/digest"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/hostrun"
)

var digestKey = regexp.MustCompile(`^([^/]+)/digests/([0-9a-f]{16})/([^/]+)-digest-([0-9]{8}T[0-9]{6}Z)\.json$`)

// digestEnds picks org's digests out of a bucket listing, by key, with the end of the interval each key names.
func digestEnds(keys []string, org string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, k := range keys {
		if m := digestKey.FindStringSubmatch(k); m != nil && m[1] == org {
			end, _ := time.Parse("20060102T150405Z", m[4])
			out[k] = end
		}
	}
	return out
}

// pollBucket lists the bucket until done says the keys are what the test waits for, or fails with what it
// holds after a minute. moto has no change notification: the listing is the state to wait on, and the pause
// between two listings is only the polling interval.
func (e *env) pollBucket(what string, done func(keys []string) bool) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		keys, err := e.moto.Keys(context.Background(), e.p.Bucket)
		if err != nil {
			e.t.Fatal(err)
		}
		if done(keys) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: the bucket holds %v", what, keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDigestAfter waits until a digest of org ends after t, and returns the digests then.
func (e *env) waitDigestAfter(org string, t time.Time) map[string]time.Time {
	e.t.Helper()
	var ends map[string]time.Time
	e.pollBucket("no digest of "+org+" ends after "+t.UTC().Format(time.RFC3339), func(keys []string) bool {
		ends = digestEnds(keys, org)
		for _, end := range ends {
			if end.After(t) {
				return true
			}
		}
		return false
	})
	return ends
}

// waitObjects waits until the bucket holds at least n audit log objects, and returns their keys.
func (e *env) waitObjects(n int) []string {
	e.t.Helper()
	var objects []string
	e.pollBucket(fmt.Sprintf("%d audit log objects wanted", n), func(keys []string) bool {
		objects = objects[:0]
		for _, k := range keys {
			if keyPattern.MatchString(k) {
				objects = append(objects, k)
			}
		}
		return len(objects) >= n
	})
	return objects
}

// put writes an object into the bucket as the platform's own credentials may.
func (e *env) put(key string, body []byte, meta map[string]string) {
	e.t.Helper()
	if _, err := e.moto.S3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(e.p.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), Metadata: meta}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) remove(key string) {
	e.t.Helper()
	if _, err := e.moto.S3().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(e.p.Bucket), Key: aws.String(key)}); err != nil {
		e.t.Fatal(err)
	}
}

// digestKeys makes a digest signing key and gives its public key to a customer auditor allowed only
// s3:ListBucket and s3:GetObject on the bucket; verify runs wivaudit verify for org as that auditor and checks
// its exit code and what it says.
func (e *env) digestKeys(org string) (key string, verify func(want int, says ...string) string) {
	t := e.t
	ctx := context.Background()
	key = filepath.Join(e.dir, "digest-key.pem")
	if code, _, _ := e.wivaudit(nil, "digest", "keygen", key); code != 0 {
		t.Fatal("digest keygen failed")
	}
	code, pubPEM, _ := e.wivaudit(nil, "digest", "public-key", "--key", key)
	pub := filepath.Join(e.dir, "wivaudit-digest-public-key.pem")
	if code != 0 || os.WriteFile(pub, []byte(pubPEM), 0o600) != nil {
		t.Fatal("digest public-key failed")
	}
	reader, err := e.moto.AddReader(ctx, "customer-auditor", e.p.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	verify = func(want int, says ...string) string {
		t.Helper()
		code, out, _ := e.wivaudit(reader, "verify", "--bucket", e.p.Bucket, "--org", org, "--public-key", pub, "--grace", "4s",
			"--endpoint", e.moto.URL, "--allow-plain-http")
		if code != want {
			t.Errorf("verify: exit %d, want %d", code, want)
		}
		for _, s := range says {
			if !strings.Contains(out, s) {
				t.Errorf("verify does not say %q", s)
			}
		}
		return out
	}
	return key, verify
}

// TestDigestsVerifiedByTheCustomer: the real .so writes a signed digest every 2 s (an interval boundary each)
// while records arrive over several intervals; wivaudit verify, run with the customer's own read-only
// credentials (s3:ListBucket and s3:GetObject only), passes on the untouched bucket, and fails naming the key
// after each tampering: an object deleted, an object altered, a digest in the middle deleted, a digest
// altered, a foreign object added under the organisation's prefix. Each tampering is undone before the next.
func TestDigestsVerifiedByTheCustomer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const org = "3f7539ad-7f8b-4688-aee0-b9dbf2db728e"
	key, verify := e.digestKeys(org)

	conf := e.config("digests.conf", map[string]string{"Org_ID": org, "Unlisted_Orgs": "", "Upload_Timeout": "1s",
		"Digests": "on", "Digest_Signing_Key": key, "Digest_Interval": "2s"})
	p := e.start(conf, "-", false)
	defer func() {
		p.Stdin.Close()
		p.Signal(syscall.SIGTERM)
		if r := p.Wait(time.Minute); r.ExitCode != 0 {
			t.Errorf("host exit %d:\n%s", r.ExitCode, tail(r.Stderr, 40))
		}
	}()
	// Three waves, each sent once the previous one is in the bucket: their objects fall in different intervals.
	var objects []string
	for wave := range 3 {
		_, data := rawRecords(org, "wave"+string(rune('a'+wave)), 5, 20)
		if err := chunks.WriteFrame(p.Stdin, "audit.org", data); err != nil {
			t.Fatal(err)
		}
		objects = e.waitObjects(wave + 1)
	}
	// Every object is recorded by now; the digest after the next boundary lists the last of them.
	ends := e.waitDigestAfter(org, time.Now().Add(2*time.Second))
	if len(ends) < 3 {
		t.Fatalf("%d digests", len(ends))
	}
	var middle string
	listed := map[string]bool{}
	for k, end := range ends {
		body, err := e.moto.Get(ctx, e.p.Bucket, k)
		if err != nil {
			t.Fatal(err)
		}
		var doc digest.Document
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !doc.End.Equal(end) || doc.End.Unix()%2 != 0 || doc.Start.Unix()%2 != 0 && doc.Sequence > 1 || doc.IntervalSeconds != 2 {
			t.Errorf("%s covers %s to %s: not on 2 s boundaries", k, doc.Start, doc.End)
		}
		for _, o := range doc.Objects {
			listed[o.Key] = true
		}
		if doc.Sequence == 2 {
			middle = k
		}
	}
	for _, o := range objects {
		if !listed[o] {
			t.Errorf("%s is in no digest", o)
		}
	}
	verify(0, "result: verified (exit 0)")

	original := func(key string) ([]byte, map[string]string) {
		t.Helper()
		o, err := e.moto.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.p.Bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Body.Close()
		body, err := e.moto.Get(ctx, e.p.Bucket, key)
		if err != nil {
			t.Fatal(err)
		}
		return body, o.Metadata
	}

	object := objects[1]
	body, _ := original(object)
	e.remove(object)
	verify(1, "PROBLEM missing-object "+object+":")
	e.put(object, body, nil)
	verify(0)

	e.put(object, append(append([]byte{}, body...), 0), nil)
	verify(1, "PROBLEM altered-object "+object+":")
	e.put(object, body, nil)
	verify(0)

	digestBody, meta := original(middle)
	e.remove(middle)
	verify(1, "PROBLEM missing-digest "+middle+":")
	e.put(middle, digestBody, meta)
	verify(0)

	e.put(middle, []byte(strings.Replace(string(digestBody), `"bytes": `, `"bytes": 1`, 1)), meta)
	verify(1, "PROBLEM bad-signature "+middle+":")
	e.put(middle, digestBody, meta)
	verify(0)

	foreign := org + "/org-audit-logs-1769611845000.json.gz"
	e.put(foreign, []byte("not ours"), nil)
	// Past the grace (4 s) before the last digest's end: the digests had their chance to list it.
	e.waitDigestAfter(org, time.Now().Add(8*time.Second))
	verify(1, "PROBLEM unlisted-object "+foreign+":")
}

// TestCopiedStoreDirStartsItsOwnChain: a second replica started from a copy of the first one's Store_Dir (a
// cloned volume) has the same chain id and chain state, so both make the same digest key at each boundary.
// The one whose first upload of it is answered 412 starts a new chain instead of counting the other's digest
// as its own; wivaudit verify passes on the untouched bucket with both replicas' objects, and still names an
// object of either replica deleted.
func TestCopiedStoreDirStartsItsOwnChain(t *testing.T) {
	e := newEnv(t)
	const org = "6d1f9a52-0b7e-4c1e-9d55-2f6a3c8b7e01"
	key, verify := e.digestKeys(org)
	replica := func(i int) string {
		return e.config(fmt.Sprintf("replica-%d.conf", i), map[string]string{"Org_ID": org, "Unlisted_Orgs": "", "Upload_Timeout": "1s",
			"Digests": "on", "Digest_Signing_Key": key, "Digest_Interval": "2s", "Store_Dir": filepath.Join(e.dir, fmt.Sprint("store-", i))})
	}
	send := func(p *hostrun.Proc, prefix string) {
		t.Helper()
		_, data := rawRecords(org, prefix, 5, 20)
		if err := chunks.WriteFrame(p.Stdin, "audit.org", data); err != nil {
			t.Fatal(err)
		}
	}
	stop := func(p *hostrun.Proc) string {
		t.Helper()
		p.Stdin.Close()
		p.Signal(syscall.SIGTERM)
		r := p.Wait(time.Minute)
		if r.ExitCode != 0 {
			t.Errorf("host exit %d:\n%s", r.ExitCode, tail(r.Stderr, 40))
		}
		return r.Stderr
	}

	first := e.start(replica(0), "-", false)
	send(first, "before-copy")
	e.waitObjects(1)
	e.waitDigestAfter(org, time.Now().Add(2*time.Second))
	stop(first)
	if out, err := exec.Command("cp", "-a", filepath.Join(e.dir, "store-0"), filepath.Join(e.dir, "store-1")).CombinedOutput(); err != nil {
		t.Fatalf("copying the Store_Dir: %v %s", err, out)
	}

	procs := []*hostrun.Proc{e.start(replica(0), "-", false), e.start(replica(1), "-", false)}
	for i, p := range procs {
		send(p, fmt.Sprint("replica-", i))
	}
	objects := e.waitObjects(3)
	// Both replicas have made the digests of a few boundaries by then.
	e.waitDigestAfter(org, time.Now().Add(6*time.Second))
	var logs string
	for _, p := range procs {
		logs += stop(p)
	}
	if !strings.Contains(logs, "already taken by another writer when first sent") {
		t.Errorf("no replica found its digest key taken:\n%s", tail(logs, 40))
	}
	verify(0, "result: verified (exit 0)")

	for _, object := range objects[1:] {
		body, err := e.moto.Get(context.Background(), e.p.Bucket, object)
		if err != nil {
			t.Fatal(err)
		}
		e.remove(object)
		verify(1, "PROBLEM missing-object "+object+":")
		e.put(object, body, nil)
	}
}
