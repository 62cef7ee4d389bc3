package upload

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

// TestSendDigestOnTheWire: a digest goes as a batch does (expected bucket owner, ACL, If-None-Match, its own
// SHA-256 and MD5), as plain JSON with its signature in the user metadata.
func TestSendDigestOnTheWire(t *testing.T) {
	c, client, got := wire(t)
	d, _ := c.Output()
	body := []byte("{\n  \"version\": 1\n}\n")
	const key = "org-a/digests/0123456789abcdef/org-a-digest-20260128T150000Z.json"
	if err := sendDigest(context.Background(), client, c, d, key, body, "signature", "c2lnbmF0dXJl"); err != nil {
		t.Fatal(err)
	}
	r := <-got
	sha, sum := sha256.Sum256(body), md5.Sum(body)
	h := r.h
	for name, want := range map[string]string{
		"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(sha[:]), "Content-Md5": base64.StdEncoding.EncodeToString(sum[:]),
		"X-Amz-Expected-Bucket-Owner": "111122223333", "X-Amz-Acl": "bucket-owner-full-control", "If-None-Match": "*",
		"Content-Type": "application/json", "Content-Encoding": "", "X-Amz-Meta-Signature": "c2lnbmF0dXJl",
	} {
		if h.Get(name) != want {
			t.Errorf("%s: %q, want %q", name, h.Get(name), want)
		}
	}
	if r.path != "/bucket-a/"+key || string(r.body) != string(body) {
		t.Errorf("PUT %s with %q", r.path, r.body)
	}
}
