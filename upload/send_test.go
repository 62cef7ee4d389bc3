package upload

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
)

// sealedBatch is a batch of two records sealed by the real store, its object the records as the store hands
// them to the encoder.
func sealedBatch(t *testing.T) *buffer.Batch {
	t.Helper()
	store, _, err := buffer.Open(t.TempDir(), buffer.Options{MaxBatch: 1 << 20, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	c := buffer.NewChunk()
	st := buffer.Stream{Org: "org-a", Kind: "user"}
	c.Add(st, []byte(`{"id":"1"}`))
	c.Add(st, []byte(`{"id":"2"}`))
	if err := store.Append(c, nil); err != nil {
		t.Fatal(err)
	}
	store.Rotate(time.Time{})
	naming := func(p *buffer.Pending) (string, func(int64) string) {
		return "default", func(int64) string { return "org-a/user-audit-logs-1.json.gz" }
	}
	encode := func(w io.Writer, records iter.Seq[[]byte]) error {
		for r := range records {
			w.Write(r)
		}
		return nil
	}
	sealed := store.Seal(store.TakeClosed(), naming, encode)
	if len(sealed) != 1 || sealed[0].Err != nil || sealed[0].Batch == nil {
		t.Fatalf("sealed %+v", sealed)
	}
	return sealed[0].Batch
}

// objectOf is a sealed batch's object and its SHA-256, as the uploader reads and checks them.
func objectOf(t *testing.T, b *buffer.Batch) ([]byte, string) {
	t.Helper()
	object, _ := b.Files()
	body, err := os.ReadFile(object)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := b.ObjectSHA256()
	if err != nil {
		t.Fatal(err)
	}
	return body, sum
}

// recorder keeps the request it is given and its body.
type recorder struct {
	in   *s3.PutObjectInput
	body []byte
}

func (r *recorder) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	body, err := io.ReadAll(in.Body)
	r.in, r.body = in, body
	return &s3.PutObjectOutput{VersionId: aws.String("v-1")}, err
}

func TestSendRequest(t *testing.T) {
	b := sealedBatch(t)
	body, sha := objectOf(t, b)
	const role = "arn:aws:iam::111122223333:role/wiv-audit-logs-sync"
	cases := []struct {
		settings                conf.Map
		acl, ifNoneMatch, owner string
	}{
		{conf.Map{"Org_ID": "org-a", "Bucket": "bucket-a"}, "bucket-owner-full-control", "*", ""},
		{conf.Map{"Org_ID": "org-a", "Bucket": "bucket-a", "Canned_ACL": "none", "Conditional_Writes": "off"}, "", "", ""},
		{conf.Map{"Org_ID": "org-a", "Bucket": "bucket-a", "Role_ARN": role, "External_ID": "ext-1"}, "bucket-owner-full-control", "*", "111122223333"},
		{conf.Map{"Org_ID": "org-a", "Bucket": "bucket-a", "Role_ARN": role, "External_ID": "ext-1", "Account_ID": "444455556666"}, "bucket-owner-full-control", "*", "444455556666"},
		{conf.Map{"Org_ID": "org-a", "Bucket": "bucket-a", "Account_ID": "444455556666"}, "bucket-owner-full-control", "*", "444455556666"},
	}
	for _, tc := range cases {
		c, err := conf.Parse(tc.settings)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := c.Output()
		r := &recorder{}
		if version, err := send(context.Background(), r, c, d, b, body, sha); err != nil || version != "v-1" {
			t.Fatalf("send: version %q, %v; want the version S3 returned", version, err)
		}
		sum, sha := md5.Sum(r.body), sha256.Sum256(r.body)
		in := r.in
		if string(r.body) != "{\"id\":\"1\"},\n{\"id\":\"2\"}" || *in.Bucket != "bucket-a" || *in.Key != "org-a/user-audit-logs-1.json.gz" ||
			*in.ContentLength != int64(len(r.body)) || *in.ContentMD5 != base64.StdEncoding.EncodeToString(sum[:]) ||
			*in.ChecksumSHA256 != base64.StdEncoding.EncodeToString(sha[:]) ||
			*in.ContentType != "application/json" || *in.ContentEncoding != "gzip" {
			t.Errorf("%v: bucket %s, key %s, length %d, MD5 %s, SHA-256 %s, type %s, encoding %s, body %q", tc.settings, *in.Bucket, *in.Key,
				*in.ContentLength, *in.ContentMD5, *in.ChecksumSHA256, *in.ContentType, *in.ContentEncoding, r.body)
		}
		if string(in.ACL) != tc.acl || (in.IfNoneMatch == nil) != (tc.ifNoneMatch == "") || in.IfNoneMatch != nil && *in.IfNoneMatch != tc.ifNoneMatch {
			t.Errorf("%v: ACL %q, If-None-Match %v; want %q, %q", tc.settings, in.ACL, in.IfNoneMatch, tc.acl, tc.ifNoneMatch)
		}
		if aws.ToString(in.ExpectedBucketOwner) != tc.owner || (in.ExpectedBucketOwner == nil) != (tc.owner == "") {
			t.Errorf("%v: ExpectedBucketOwner %v, want %q", tc.settings, in.ExpectedBucketOwner, tc.owner)
		}
	}
}

func TestPayloadHashTakesABase64SHA256(t *testing.T) {
	sha := sha256.Sum256([]byte("body"))
	cases := []struct {
		sum string
		ok  bool
	}{
		{base64.StdEncoding.EncodeToString(sha[:]), true},
		{hex.EncodeToString(sha[:]), false},
		{base64.StdEncoding.EncodeToString(sha[:31]), false},
		{"", false},
	}
	for _, tc := range cases {
		if opt, err := payloadHash(tc.sum); (err == nil) != tc.ok || (opt != nil) != tc.ok {
			t.Errorf("%q: %v; want ok %v", tc.sum, err, tc.ok)
		}
	}
}

// TestSendHeadersOnTheWire: through the real SDK, the request carries the batch's own SHA-256 and MD5, the
// expected bucket owner, and no checksum the SDK would add by default (CRC32).
func TestSendHeadersOnTheWire(t *testing.T) {
	b := sealedBatch(t)
	body, sha := objectOf(t, b)
	c, client, got := wire(t)
	d, _ := c.Output()
	if _, err := send(context.Background(), client, c, d, b, body, sha); err != nil {
		t.Fatal(err)
	}
	h := (<-got).h
	if h.Get("X-Amz-Checksum-Sha256") != sha || sha == "" || h.Get("Content-Md5") != b.ContentMD5 || h.Get("X-Amz-Expected-Bucket-Owner") != "111122223333" {
		t.Errorf("checksum %q (want %q), Content-MD5 %q (want %q), expected owner %q", h.Get("X-Amz-Checksum-Sha256"), sha,
			h.Get("Content-Md5"), b.ContentMD5, h.Get("X-Amz-Expected-Bucket-Owner"))
	}
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-checksum-") && !strings.EqualFold(k, "X-Amz-Checksum-Sha256") {
			t.Errorf("the SDK added %s: %s", k, h.Get(k))
		}
	}
}

// request is what a test server received.
type request struct {
	path string
	h    http.Header
	body []byte
}

// wire is a test server and the settings and client of a destination with a role on it, through the real
// SDK: with the checksum setting config.LoadDefaultConfig gives New's clients by default (a CRC32 on every
// upload).
func wire(t *testing.T) (*conf.Config, *s3.Client, <-chan request) {
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- request{r.URL.Path, r.Header.Clone(), body}
	}))
	t.Cleanup(srv.Close)
	c, err := conf.Parse(conf.Map{"Org_ID": "org-a", "Bucket": "bucket-a", "Role_ARN": "arn:aws:iam::111122223333:role/r",
		"External_ID": "ext-1", "Endpoint": srv.URL, "Allow_Plain_HTTP": "on"})
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported},
		func(o *s3.Options) { o.BaseEndpoint, o.UsePathStyle = aws.String(srv.URL), true })
	return c, client, got
}
