package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wiv/out_wivaudit/digest"
)

func TestDigestKeyCommands(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "digest-key.pem")
	code, out, _ := runCmd(t, nil, "digest", "keygen", key)
	if code != exitOK || !strings.Contains(out, "public key fingerprint: ") {
		t.Fatalf("keygen: exit %d\n%s", code, out)
	}
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v, %v", fi, err)
	}
	private, _ := os.ReadFile(key)
	if code, _, errOut := runCmd(t, nil, "digest", "keygen", key); code != exitRefused || !strings.Contains(errOut, "file exists") {
		t.Errorf("keygen over an existing key: exit %d, %s", code, errOut)
	}
	if again, _ := os.ReadFile(key); string(again) != string(private) {
		t.Error("keygen replaced the key")
	}
	code, out, _ = runCmd(t, nil, "digest", "public-key", "--key", key)
	signer, err := digest.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := digest.ParsePublicKeys([]byte(out))
	if code != exitOK || err != nil || len(keys) != 1 || !keys[0].Equal(signer.PublicKey()) || !strings.Contains(out, signer.Fingerprint()) {
		t.Errorf("public-key: exit %d, %v\n%s", code, err, out)
	}
	if strings.Contains(out, "PRIVATE") || strings.Contains(out, strings.Split(string(private), "\n")[1]) {
		t.Error("public-key shows the private key")
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"digest", "public-key"}, exitUsage, "--key is required"},
		{[]string{"digest", "public-key", "--key", filepath.Join(dir, "none.pem")}, exitRefused, "no such file"},
		{[]string{"digest", "keygen"}, exitUsage, "expected FILE"},
		{[]string{"verify", "--bucket", "b-1"}, exitUsage, "--bucket, --org and --public-key are required"},
		{[]string{"verify", "--bucket", "b-1", "--org", "o", "--public-key", key}, exitUsage, `is of type "PRIVATE KEY", not PUBLIC KEY`},
		{[]string{"verify", "--bucket", "b-1", "--org", "o", "--public-key", key, "--from", "yesterday"}, exitUsage, `--from: "yesterday" is not an RFC 3339 time`},
		{[]string{"verify", "--bucket", "b-1", "--org", "o", "--public-key", key, "--prefix", "x"}, exitUsage, `--prefix "x" must end with /`},
		{[]string{"verify", "--bucket", "b-1", "--org", "o", "--public-key", key, "--endpoint", "http://127.0.0.1:1"}, exitUsage, "uses plain HTTP"},
	} {
		code, out, errOut := runCmd(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.says) {
			t.Errorf("wivaudit %s: exit %d, want %d and %q in:\n%s%s", strings.Join(tc.args, " "), code, tc.code, tc.says, out, errOut)
		}
	}
}
