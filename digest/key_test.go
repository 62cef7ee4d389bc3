package digest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateAndLoadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.pem")
	s, err := GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file's mode is %v, want 0600", fi.Mode().Perm())
	}
	if _, err := GenerateKeyFile(path); err == nil {
		t.Fatal("GenerateKeyFile replaced an existing key")
	}
	loaded, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.PublicKey().Equal(s.PublicKey()) || loaded.Fingerprint() != s.Fingerprint() || len(s.Fingerprint()) != 64 {
		t.Fatalf("loaded key %s, generated %s", loaded.Fingerprint(), s.Fingerprint())
	}
	keys, err := ParsePublicKeys(s.PublicKeyPEM())
	if err != nil || len(keys) != 1 || !keys[0].Equal(s.PublicKey()) {
		t.Fatalf("the public key PEM reads back as %v, %v", keys, err)
	}
}

// TestOpenSSLInterop: a key from `openssl genpkey -algorithm ed25519` loads; openssl computes the same
// fingerprint of the public key printed, and verifies a digest's signature over its body.
func TestOpenSSLInterop(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl on PATH")
	}
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "k.pem")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-out", keyPath).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v: %s", err, out)
	}
	s, err := LoadSigner(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(pubPath, s.PublicKeyPEM(), 0o600)
	out, err := exec.Command("sh", "-c", "openssl pkey -pubin -in "+pubPath+" -outform DER | sha256sum").Output()
	if err != nil || !strings.HasPrefix(string(out), s.Fingerprint()+" ") {
		t.Fatalf("openssl's fingerprint %q (%v), ours %s", out, err, s.Fingerprint())
	}

	st, err := s.Make(NewChain("00112233aabbccdd", t0), Interval{Org: "org-a", End: t0.Add(hour), Every: hour, MadeAt: t0.Add(hour)})
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(st.Pending.Signature)
	os.WriteFile(filepath.Join(dir, "body.json"), st.Pending.Body, 0o600)
	os.WriteFile(filepath.Join(dir, "sig.bin"), sig, 0o600)
	cmd := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pubPath, "-rawin", "-in", "body.json", "-sigfile", "sig.bin")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl does not verify the digest: %v: %s", err, out)
	}
}

func TestLoadSignerErrors(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	secret := base64.StdEncoding.EncodeToString(edDER)
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "", "no PEM block"},
		{"raw seed", base64.StdEncoding.EncodeToString(edKey.Seed()), "no PEM block"},
		{"public key", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edDER})), `type "PUBLIC KEY"`},
		{"encrypted", string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: edDER})), "unencrypted PKCS#8"},
		{"EC key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})), "not Ed25519"},
		{"damaged", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER[:20]})), "not a readable PKCS#8 key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.pem")
			os.WriteFile(path, []byte(tc.content), 0o600)
			_, err := LoadSigner(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, path, tc.want)
			}
			if strings.Contains(err.Error(), secret[:16]) || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(edKey.Seed())[:16]) {
				t.Fatalf("the error shows key bytes: %v", err)
			}
		})
	}
	if _, err := LoadSigner(filepath.Join(t.TempDir(), "none.pem")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParsePublicKeys(t *testing.T) {
	a, _ := GenerateKeyFile(filepath.Join(t.TempDir(), "a"))
	b, _ := GenerateKeyFile(filepath.Join(t.TempDir(), "b"))
	keys, err := ParsePublicKeys(append(a.PublicKeyPEM(), b.PublicKeyPEM()...))
	if err != nil || len(keys) != 2 || !keys[1].Equal(b.PublicKey()) {
		t.Fatalf("two keys read as %d, %v", len(keys), err)
	}
	for _, bad := range []string{"", "hello", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))} {
		if _, err := ParsePublicKeys([]byte(bad)); err == nil {
			t.Errorf("%q read as a public key", bad)
		}
	}
}
