package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/digest"
)

// fakeObject is an object of fakeS3's bucket.
type fakeObject struct {
	body      []byte
	signature string
	modified  time.Time
}

// fakeS3 serves one bucket's ListObjectsV2 and GetObject, path-style, as S3 does for a reader.
func fakeS3(t *testing.T, bucket string, objects map[string]fakeObject) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := strings.CutPrefix(strings.TrimPrefix(r.URL.Path, "/"), bucket)
		key = strings.TrimPrefix(key, "/")
		if key == "" {
			type content struct {
				Key          string
				LastModified string
				Size         int
			}
			list := struct {
				XMLName     xml.Name `xml:"ListBucketResult"`
				Name        string
				Prefix      string
				IsTruncated bool
				Contents    []content
			}{Name: bucket, Prefix: r.URL.Query().Get("prefix")}
			for k, o := range objects {
				if strings.HasPrefix(k, list.Prefix) {
					list.Contents = append(list.Contents, content{k, o.modified.UTC().Format(time.RFC3339), len(o.body)})
				}
			}
			w.Header().Set("Content-Type", "application/xml")
			xml.NewEncoder(w).Encode(list)
			return
		}
		o, ok := objects[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>`)
			return
		}
		if o.signature != "" {
			w.Header().Set("x-amz-meta-signature", o.signature)
		}
		w.Write(o.body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestVerifyCommand: a delivery with a key prefix, verified with and without --prefix, and with another
// public key than the one that signed its digest.
func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	signer, err := digest.GenerateKeyFile(filepath.Join(dir, "signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := digest.GenerateKeyFile(filepath.Join(dir, "other.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rightKey, wrongKey := filepath.Join(dir, "right.pem"), filepath.Join(dir, "wrong.pem")
	os.WriteFile(rightKey, signer.PublicKeyPEM(), 0o600)
	os.WriteFile(wrongKey, other.PublicKeyPEM(), 0o600)

	const org, prefix = "org-a", "wiv/"
	start := t0.Truncate(time.Hour).Add(-time.Hour)
	objects := map[string]fakeObject{}
	var listed []digest.Object
	for i, kind := range []string{"org", "user"} {
		at := start.Add(time.Duration(i+1) * 10 * time.Minute)
		key := fmt.Sprintf("%s%s/%s-audit-logs-%d.json.gz", prefix, org, kind, at.UnixMilli())
		body := []byte("object " + kind)
		sum := sha256.Sum256(body)
		objects[key] = fakeObject{body: body, modified: at}
		listed = append(listed, digest.Object{Key: key, SHA256: hex.EncodeToString(sum[:]), Bytes: int64(len(body)), Records: 1, DeliveredAt: at})
	}
	st, err := signer.Make(digest.NewChain("00000000000000aa", start), digest.Interval{Org: org, Prefix: prefix, Bucket: "b-1",
		End: start.Add(time.Hour), Every: time.Hour, Objects: listed, MadeAt: start.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	objects[st.Pending.Key] = fakeObject{body: st.Pending.Body, signature: st.Pending.Signature, modified: start.Add(time.Hour)}
	srv := fakeS3(t, "b-1", objects)
	setTestCredentials(t)
	verify := func(args ...string) (int, string) {
		t.Helper()
		code, out, errOut := runCmd(t, nil, append([]string{"verify", "--bucket", "b-1", "--org", org, "--endpoint", srv.URL, "--allow-plain-http"}, args...)...)
		return code, out + errOut
	}

	if code, out := verify("--public-key", rightKey, "--prefix", prefix); code != exitOK || !strings.Contains(out, "1 digests verified (chains: 00000000000000aa), 2 listed objects present") {
		t.Errorf("with the prefix: exit %d:\n%s", code, out)
	}
	code, out := verify("--public-key", rightKey)
	if want := "PROBLEM no-digest org-a/digests/: no digest covers the beginning to 2026-01-28T14:50:45Z, but the bucket holds digests of org-a under wiv/org-a/digests/: the delivery uses another key prefix; verify with --prefix wiv/"; code != exitRefused || !strings.Contains(out, want) {
		t.Errorf("without the prefix: exit %d, want %d and %q in:\n%s", code, exitRefused, want, out)
	}
	code, out = verify("--public-key", wrongKey, "--prefix", prefix)
	if want := "PROBLEM unknown-key " + st.Pending.Key + ": this digest names the signing key of fingerprint " + signer.Fingerprint() +
		", but the public key given has fingerprint " + other.Fingerprint(); code != exitRefused || !strings.Contains(out, want) || strings.Count("\n"+out, "\nPROBLEM ") != 1 {
		t.Errorf("with another key: exit %d, want %d and only %q in:\n%s", code, exitRefused, want, out)
	}
}
