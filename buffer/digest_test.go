package buffer

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func md5Of(b []byte) string {
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func sha256Of(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestManifestHoldsTheObjectDigests: sealing records the SHA-256 and MD5 of the object's bytes in the manifest,
// and they survive a restart.
func TestManifestHoldsTheObjectDigests(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s := open(t, dir, opts(1<<20, c))
	commit(t, s, "org-a/api:1", "org-a/api:2")
	s.Rotate(t0)
	b, _, err := sealOne(s, s.TakeClosed()[0])
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(readObject(t, b))
	if b.SHA256 != sha256Of(body) || b.ContentMD5 != md5Of(body) {
		t.Errorf("manifest SHA-256 %q, MD5 %q; the object's are %q, %q", b.SHA256, b.ContentMD5, sha256Of(body), md5Of(body))
	}
	s.Close()
	s2, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(rec.Batches) != 1 || rec.Batches[0].SHA256 != b.SHA256 {
		t.Fatalf("recovered %+v, want the SHA-256 %q", rec.Batches, b.SHA256)
	}
	if sum, err := rec.Batches[0].ObjectSHA256(); sum != b.SHA256 || err != nil {
		t.Errorf("ObjectSHA256 = %q, %v", sum, err)
	}
}

// TestLegacyManifestChecksum: a manifest written before the SHA-256 was recorded (the legacy fixture) has none;
// its checksum is computed from the object, which its Content-MD5 still vouches for.
func TestLegacyManifestChecksum(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(dir, os.DirFS("testdata/legacy-v1")); err != nil {
		t.Fatal(err)
	}
	s, rec, err := Open(dir, opts(1<<20, &clock{t: time.UnixMilli(1764400000000)}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := rec.Batches[0]
	body := []byte(readObject(t, b))
	if b.SHA256 != "" || b.ContentMD5 != md5Of(body) {
		t.Fatalf("fixture manifest: SHA-256 %q, MD5 %q", b.SHA256, b.ContentMD5)
	}
	if sum, err := b.ObjectSHA256(); sum != sha256Of(body) || err != nil {
		t.Errorf("ObjectSHA256 = %q, %v; want %q", sum, err, sha256Of(body))
	}
	object, _ := b.Files()
	os.Remove(object)
	if _, err := b.ObjectSHA256(); !os.IsNotExist(err) {
		t.Errorf("ObjectSHA256 of a missing object: %v", err)
	}
}

// TestManifestNamesFirstAndLastEvents: the manifest keeps the id and created_at of the object's first and last
// records, across runs from several flushes, as the producer wrote them.
func TestManifestNamesFirstAndLastEvents(t *testing.T) {
	c := &clock{t: t0}
	s := open(t, t.TempDir(), opts(1<<20, c))
	defer s.Close()
	commit(t, s, `org-a/api:{"id":"e-1","created_at":1769611845,"x":{"id":"inner"}}`, `org-a/api:{"id":"e-2"}`)
	commit(t, s, `org-a/api:{"created_at":"2026-01-01T00:00:00Z","id":7}`)
	s.Rotate(t0)
	b, _, err := sealOne(s, s.TakeClosed()[0])
	if err != nil {
		t.Fatal(err)
	}
	first, last := string(b.FirstEvent.ID)+" "+string(b.FirstEvent.CreatedAt), string(b.LastEvent.ID)+" "+string(b.LastEvent.CreatedAt)
	if first != `"e-1" 1769611845` || last != `7 "2026-01-01T00:00:00Z"` {
		t.Fatalf("first event %s, last event %s", first, last)
	}
}
