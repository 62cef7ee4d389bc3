package test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/faultproxy"
	"github.com/wiv/out_wivaudit/test/hostrun"
)

// The bucket-owner and checksum tests run against versitygw, not moto: moto 5.2.1 checks neither
// x-amz-expected-bucket-owner nor x-amz-checksum-sha256, and versitygw v1.8.0 checks both as S3 documents
// (403 AccessDenied for a bucket of another owner; 400 BadDigest for a body that does not match its checksum)
// and keeps the checksum with the object. A proxy answering in S3's place would only prove our reading of the
// documentation. versitygw has no STS, so the plugin writes with base credentials and the expected owner comes
// from Account_ID; the role's account as the default owner is checked on moto's recording in TestDeliverySpine.

var versitygw struct {
	once sync.Once
	bin  string
	err  error
}

// versitygwBin is the binary `make integration` built (WIVAUDIT_VERSITYGW), or build/bin/versitygw, built now
// if missing.
func versitygwBin(t *testing.T) string {
	versitygw.once.Do(func() {
		if versitygw.bin = os.Getenv("WIVAUDIT_VERSITYGW"); versitygw.bin != "" {
			return
		}
		versitygw.bin, _ = filepath.Abs("../build/bin/versitygw")
		if _, err := os.Stat(versitygw.bin); err != nil {
			cmd := exec.Command("make", "-C", "..", "versitygw")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			versitygw.err = cmd.Run()
		}
	})
	if versitygw.err != nil {
		t.Fatalf("building versitygw (make versitygw): %v", versitygw.err)
	}
	return versitygw.bin
}

const (
	platformKey    = "wivplatform"
	platformSecret = "wivplatform-secret-4f1c9e"
	otherAccount   = "444455556666"
)

// newVersityEnv starts versitygw with the platform's user, and returns an env whose config and start use it:
// the plugin's Endpoint is endpoint (the server, or a proxy before it), and its only credentials the platform's.
func newVersityEnv(t *testing.T, endpoint func(v *backend.Versity) string) (*env, *backend.Versity) {
	t.Helper()
	dir := t.TempDir()
	v, err := backend.StartVersity(dir, versitygwBin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	if err := v.AddUser(platformKey, platformSecret); err != nil {
		t.Fatal(err)
	}
	secret(platformSecret)
	// config and start need only the server's URL and the platform's identity.
	e := &env{t: t, dir: dir, moto: &backend.Moto{URL: endpoint(v)}, p: &backend.Platform{AccessKey: platformKey, SecretKey: platformSecret}}
	return e, v
}

// ownerConfig is one organisation's output writing with base credentials (no role) to bucket, expecting owner,
// and leaving at exit what it could not deliver within shutdown.
func (e *env) ownerConfig(name, bucket, owner, shutdown string) string {
	return e.config(name, map[string]string{"Org_ID": "org-a", "Bucket": bucket, "Account_ID": owner, "Role_ARN": "", "External_ID": "",
		"STS_Endpoint": "", "Unlisted_Orgs": "", "Upload_Timeout": "1s", "Hold_Retry_Interval": "1s", "Shutdown_Timeout": shutdown})
}

// versityRecords downloads every object of bucket and returns how many times each event id is in it, checking
// that each object's stored SHA-256, which versitygw keeps only after checking the body against it, is the
// SHA-256 of its bytes.
func versityRecords(t *testing.T, v *backend.Versity, bucket string) map[string]int {
	t.Helper()
	ctx := context.Background()
	list, err := v.S3().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, o := range list.Contents {
		got, err := v.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key, ChecksumMode: s3types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(got.Body)
		got.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		if want := base64.StdEncoding.EncodeToString(sum[:]); aws.ToString(got.ChecksumSHA256) != want {
			t.Errorf("%s: stored SHA-256 %q, its bytes' %q", *o.Key, aws.ToString(got.ChecksumSHA256), want)
		}
		plain, err := gunzip(body)
		if err != nil {
			t.Fatalf("%s: %v", *o.Key, err)
		}
		var recs []struct{ ID string }
		if err := json.Unmarshal(plain, &recs); err != nil {
			t.Fatalf("%s: %v", *o.Key, err)
		}
		for _, r := range recs {
			seen[r.ID]++
		}
	}
	return seen
}

func orgAEvents(t *testing.T, n int, prefix string) ([]genEvent, []chunk) {
	rng := rand.New(rand.NewPCG(11, 12))
	events := genEventsFor(t, n, rng, prefix, []string{"org-a"})
	return events, chunkEvents(events, rng, 10)
}

func checkOnce(t *testing.T, events []genEvent, seen map[string]int) {
	t.Helper()
	for _, ev := range events {
		if seen[ev.id] != 1 {
			t.Errorf("event %s delivered %d times", ev.id, seen[ev.id])
		}
	}
	if len(seen) != len(events) {
		t.Errorf("%d distinct events delivered, want %d", len(seen), len(events))
	}
}

// TestBucketOfAnotherAccount: a bucket owned by another account than the customer's receives nothing, although
// the platform may write to it; the batches are held with an error line naming the expected account and what to
// check. Told the bucket's real owner, the same Store_Dir delivers every record once.
func TestBucketOfAnotherAccount(t *testing.T) {
	e, v := newVersityEnv(t, func(v *backend.Versity) string { return v.URL })
	ctx := context.Background()
	if err := v.AddUser(otherAccount, "other-account-secret"); err != nil {
		t.Fatal(err)
	}
	const bucket = "not-the-customers"
	if err := v.AddBucket(ctx, bucket, otherAccount, platformKey); err != nil {
		t.Fatal(err)
	}
	events, cs := orgAEvents(t, 90, "own-")
	input := e.input("input.chunks", cs)

	p := e.start(e.ownerConfig("wrong-owner.conf", bucket, backend.RootAccount, "1s"), input, false)
	line := "S3 PutObject to " + bucket + " failed (403 AccessDenied): the bucket is not in account " + backend.RootAccount +
		" (the account_id) or s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::" + bucket + "/* are not allowed"
	if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool {
		return strings.Contains(r.Stderr, "refused, attempt") && strings.Contains(r.Stderr, line)
	}); err != nil {
		t.Fatalf("%v:\n%s", err, tail(p.Snapshot().Stderr, 10))
	}
	p.Signal(syscall.SIGTERM)
	if r := p.Wait(time.Minute); r.ExitCode != 0 {
		t.Fatalf("host: exit %d\n%s", r.ExitCode, tail(r.Stderr, 10))
	}
	if seen := versityRecords(t, v, bucket); len(seen) != 0 {
		t.Fatalf("%d events reached a bucket of another account", len(seen))
	}
	if sealed, _ := storedStreams(t, filepath.Join(e.dir, "store")); len(sealed) == 0 {
		t.Fatal("no batch is held in Store_Dir")
	}

	r := e.runToEnd(e.ownerConfig("right-owner.conf", bucket, otherAccount, "20s"), e.input("empty.chunks", nil))
	if r.ExitCode != 0 {
		t.Fatalf("host: exit %d", r.ExitCode)
	}
	checkOnce(t, events, versityRecords(t, v, bucket))
}

// TestAlteredBodyIsRefusedThenDelivered: every object arrives with the SHA-256 computed when it was sealed,
// which the server checks and keeps; a body altered on the way (one byte, by the proxy) is refused, not
// stored, and sent again intact from Store_Dir. Over this test's plain HTTP the SDK also signs the body's hash,
// which the server checks first (XAmzContentSHA256Mismatch); over HTTPS, as in production, the body is not
// signed and the Content-MD5 and SHA-256 are what S3 refuses it by (BadDigest). Both are retried alike.
func TestAlteredBodyIsRefusedThenDelivered(t *testing.T) {
	var px *faultproxy.Proxy
	e, v := newVersityEnv(t, func(v *backend.Versity) string {
		var err error
		if px, err = faultproxy.Start(v.URL, time.Second); err != nil {
			t.Fatal(err)
		}
		return px.URL
	})
	defer px.Close()
	const bucket = "customer-audit"
	if err := v.AddBucket(context.Background(), bucket, backend.RootAccount, platformKey); err != nil {
		t.Fatal(err)
	}
	px.CorruptPuts(1)
	events, cs := orgAEvents(t, 150, "sum-")
	p := e.start(e.ownerConfig("checksum.conf", bucket, backend.RootAccount, "20s"), e.input("input.chunks", cs), false)
	waitFor(t, 2*time.Minute, "every event in the bucket", func() bool { return len(versityRecords(t, v, bucket)) == len(events) })
	p.Signal(syscall.SIGTERM)
	r := p.Wait(time.Minute)
	checkOnce(t, events, versityRecords(t, v, bucket))
	counts := px.Counts()
	if counts["s3:corrupted"] != 1 || counts["s3:PUT:400"] != 1 || counts["s3:PUT:200"] != counts["s3:PUT"]-1 {
		t.Errorf("proxy counts %v: want one body altered, refused with 400, and every other PutObject stored", counts)
	}
	i := strings.Index(r.Stderr, "the body S3 received does not match its checksum (altered on the way); it is sent again")
	if i < 0 {
		t.Fatalf("no line explains the refused body:\n%s", tail(r.Stderr, 20))
	}
	t.Logf("the refusal: %s", r.Stderr[strings.LastIndex(r.Stderr[:i], "\n")+1:i+strings.Index(r.Stderr[i:], "\n")])
}

// checkPutHeaders checks, on moto's recording, that every PutObject of the plugin named the role's account as the
// bucket's expected owner and carried a SHA-256 and no checksum of the SDK's own choosing. (moto checks neither.)
func (e *env) checkPutHeaders() {
	e.t.Helper()
	reqs, err := e.moto.Requests()
	if err != nil {
		e.t.Fatal(err)
	}
	puts := 0
	for _, r := range reqs {
		if e.moto.ByAdmin(r) || r.Operation() != "PutObject" {
			continue
		}
		puts++
		if r.Header.Get("X-Amz-Expected-Bucket-Owner") != backend.Account || len(r.Header.Get("X-Amz-Checksum-Sha256")) != 44 ||
			r.Header.Get("X-Amz-Checksum-Crc32") != "" {
			e.t.Errorf("PutObject %s: expected owner %q (want the role's account %s), SHA-256 %q, CRC32 %q", r.Path,
				r.Header.Get("X-Amz-Expected-Bucket-Owner"), backend.Account, r.Header.Get("X-Amz-Checksum-Sha256"), r.Header.Get("X-Amz-Checksum-Crc32"))
		}
	}
	if puts == 0 {
		e.t.Error("the recording holds no PutObject")
	}
}
