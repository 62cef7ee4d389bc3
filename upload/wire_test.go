package upload

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
)

// awsEnv gives the SDK's default chain these static credentials and nothing else to find: no profile, no
// shared files, no instance metadata.
func awsEnv(tb testing.TB, keyID, secret string) {
	tb.Helper()
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		tb.Setenv(k, "")
	}
	tb.Setenv("AWS_ACCESS_KEY_ID", keyID)
	tb.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	tb.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	tb.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	tb.Setenv("AWS_EC2_METADATA_DISABLED", "true") // what an instance without a profile amounts to, without the wait
}

// realClients are the real Clients of settings and Endpoint url (plain HTTP allowed), signing with static
// credentials from the environment.
func realClients(tb testing.TB, url string, settings conf.Map) (*Clients, conf.Destination) {
	tb.Helper()
	awsEnv(tb, "AKID", "SECRET")
	m := conf.Map{"Org_ID": "org-a", "Bucket": "bucket-a", "Endpoint": url, "Allow_Plain_HTTP": "on"}
	maps.Copy(m, settings)
	return clientsOf(tb, m)
}

// clientsOf are the real Clients of settings, and their output.
func clientsOf(tb testing.TB, settings conf.Map) (*Clients, conf.Destination) {
	tb.Helper()
	c, err := conf.Parse(settings)
	if err != nil {
		tb.Fatal(err)
	}
	cl, err := New(context.Background(), c)
	if err != nil {
		tb.Fatal(err)
	}
	d, _ := c.Output()
	return cl, d
}

// object is n bytes that do not compress, as a gzip object's, with its batch and base64 SHA-256.
func object(n int) ([]byte, *buffer.Batch, string) {
	body := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(body)
	md, sha := md5.Sum(body), sha256.Sum256(body)
	b := &buffer.Batch{Manifest: buffer.Manifest{Key: "org-a/user-audit-logs-1.json.gz",
		ContentMD5: base64.StdEncoding.EncodeToString(md[:])}}
	return body, b, base64.StdEncoding.EncodeToString(sha[:])
}

// BenchmarkSend is one upload of a 20 KiB object through the real clients to a local server that reads it and
// answers 200: the CPU and allocations of a PutObject, the server's included.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	cl, d := realClients(b, srv.URL, nil)
	body, batch, sum := object(20 << 10)
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cl.Put(ctx, d, batch, body, sum); err != nil {
			b.Fatal(err)
		}
	}
}

// countingBody is a seekable body that counts the bytes read from it.
type countingBody struct {
	io.ReadSeeker
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadSeeker.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// countReads wraps the request's body, as the SDK's first build step gets it, in a countingBody: every read of
// it from there on (the SDK's hashing, the HTTP transport's copying) adds to n.
func countReads(n *atomic.Int64) func(*s3.Options) {
	return s3.WithAPIOptions(func(stack *middleware.Stack) error {
		return stack.Build.Add(middleware.BuildMiddlewareFunc("CountReads", func(ctx context.Context, in middleware.BuildInput,
			next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
			req := in.Request.(*smithyhttp.Request)
			req, err := req.SetStream(countingBody{req.GetStream().(io.ReadSeeker), n})
			if err != nil {
				return middleware.BuildOutput{}, middleware.Metadata{}, err
			}
			in.Request = req
			return next.HandleBuild(ctx, in)
		}), middleware.Before)
	})
}

// trust makes the SDK's default configuration trust srv's certificate (AWS_CA_BUNDLE).
func trust(t *testing.T, srv *httptest.Server) {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
}

// TestBodyIsHashedOnce: through the real clients, over plain HTTP and over HTTPS, the SDK signs the SHA-256
// the uploader computed (hex of sum) and never reads the body: no hashing of its own, no aws-chunked encoding
// with a trailing checksum; the transport sends the body's bytes as they are, read once.
func TestBodyIsHashedOnce(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tls], func(t *testing.T) {
			got := make(chan request, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got <- request{r.URL.Path, r.Header.Clone(), body}
			}))
			if tls {
				srv.StartTLS()
				trust(t, srv)
			} else {
				srv.Start()
			}
			defer srv.Close()
			cl, d := realClients(t, srv.URL, nil)
			body, b, sum := object(20 << 10)
			var read atomic.Int64
			if _, err := send(context.Background(), cl.s3For(d.Region), cl.cfg, d, b, body, sum, countReads(&read)); err != nil {
				t.Fatal(err)
			}
			r := <-got
			want := sha256.Sum256(body)
			if h := r.h.Get("X-Amz-Content-Sha256"); h != hex.EncodeToString(want[:]) {
				t.Errorf("X-Amz-Content-Sha256 %q, want the body's SHA-256 %x", h, want)
			}
			if n := read.Load(); n != 0 || !bytes.Equal(r.body, body) {
				t.Errorf("%d bytes read from the SDK's body, %d of %d received; want none read: the transport sends body itself, whole",
					n, len(r.body), len(body))
			}
			if ce, tr := r.h.Get("Content-Encoding"), r.h.Get("X-Amz-Trailer"); ce != "gzip" || tr != "" {
				t.Errorf("Content-Encoding %q, X-Amz-Trailer %q; want gzip and none", ce, tr)
			}
			if !strings.Contains(r.h.Get("Authorization"), "x-amz-content-sha256") {
				t.Errorf("the payload hash is not signed: %s", r.h.Get("Authorization"))
			}
		})
	}
}

// TestConnectionsAreKept: Upload_Workers uploads at once to one endpoint, twice, open a connection each the
// first time and none the second.
func TestConnectionsAreKept(t *testing.T) {
	const workers = 16
	arrived, release := make(chan struct{}), make(chan struct{}, workers)
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-release
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	cl, d := realClients(t, srv.URL, conf.Map{"Upload_Workers": strconv.Itoa(workers)})
	body, b, sum := object(1 << 10)
	for round := range 2 {
		errs := make(chan error, workers)
		for range workers {
			go func() {
				_, err := cl.Put(context.Background(), d, b, body, sum)
				errs <- err
			}()
		}
		for range workers { // every upload in flight at once
			<-arrived
		}
		for range workers {
			release <- struct{}{}
		}
		for range workers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if n := opened.Load(); n != workers {
			t.Fatalf("after round %d: %d connections opened, want %d", round+1, n, workers)
		}
	}
}

// doer is an HTTP client that keeps the body of the request it is given.
type doer struct{ body []byte }

func (d *doer) Do(req *http.Request) (*http.Response, error) {
	d.body, _ = io.ReadAll(req.Body)
	return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
}

// TestWholeBodyOnlyReplacesTheSameBytes: wholeBody sends put's body in place of the SDK's only when the
// request still has its length; a body the SDK re-encoded (aws-chunked, longer) goes as the SDK made it.
func TestWholeBodyOnlyReplacesTheSameBytes(t *testing.T) {
	put, sdk := []byte("put's body"), []byte("the SDK's body")
	cases := []struct {
		ctxBody []byte
		length  int64
		want    string
	}{
		{put, int64(len(put)), "put's body"},
		{put, int64(len(sdk)), "the SDK's body"},
		{nil, int64(len(sdk)), "the SDK's body"},
	}
	for _, tc := range cases {
		ctx := context.Background()
		if tc.ctxBody != nil {
			ctx = context.WithValue(ctx, bodyKey{}, tc.ctxBody)
		}
		req := httptest.NewRequestWithContext(ctx, http.MethodPut, "http://s3.test/b/k", bytes.NewReader(sdk))
		req.ContentLength = tc.length
		inner := &doer{}
		if _, err := (wholeBody{inner}).Do(req); err != nil || string(inner.body) != tc.want {
			t.Errorf("context body %q, Content-Length %d: sent %q, %v; want %q", tc.ctxBody, tc.length, inner.body, err, tc.want)
		}
	}
}
