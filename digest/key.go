package digest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Signer signs digests with an Ed25519 private key. Nothing it returns or prints holds the private key.
type Signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	fp   string
}

const keyHelp = "expected an Ed25519 private key in unencrypted PKCS#8 PEM (-----BEGIN PRIVATE KEY-----), as `openssl genpkey -algorithm ed25519` or `wivaudit digest keygen` writes"

// LoadSigner reads the signing key from a PEM file. Its errors name the file and what is wrong, never a byte
// of its content.
func LoadSigner(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("digest signing key: %w", err)
	}
	s, err := parseSigner(data)
	if err != nil {
		return nil, fmt.Errorf("digest signing key %s: %w", path, err)
	}
	return s, nil
}

func parseSigner(data []byte) (*Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block; " + keyHelp)
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("a PEM block of type %q; %s", block.Type, keyHelp)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a readable PKCS#8 key; " + keyHelp)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not Ed25519; %s", key, keyHelp)
	}
	return newSigner(priv), nil
}

func newSigner(priv ed25519.PrivateKey) *Signer {
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, pub: pub, fp: Fingerprint(pub)}
}

// GenerateKeyFile creates a new signing key in path (which must not exist), readable by its owner only.
func GenerateKeyFile(path string) (*Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("digest signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("digest signing key %s: %w", path, err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("digest signing key %s: %w", path, err)
	}
	return newSigner(priv), nil
}

// PublicKey is the key customers verify digests with.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.pub }

// Fingerprint is the public key's fingerprint, as each digest names it.
func (s *Signer) Fingerprint() string { return s.fp }

// PublicKeyPEM is the public key as a SubjectPublicKeyInfo PEM block (-----BEGIN PUBLIC KEY-----), what
// customers are given: `openssl pkey -pubin` reads it.
func (s *Signer) PublicKeyPEM() []byte {
	der, _ := x509.MarshalPKIXPublicKey(s.pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func (s *Signer) sign(body []byte) []byte { return ed25519.Sign(s.priv, body) }

// Fingerprint is the lower-case hex SHA-256 of a public key's SubjectPublicKeyInfo DER, as
// `openssl pkey -pubin -outform DER | sha256sum` prints it.
func Fingerprint(pub ed25519.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ParsePublicKeys reads every Ed25519 public key of a PEM file's content (one per -----BEGIN PUBLIC KEY-----
// block): a customer given a new key after a rotation keeps the old one in the same file.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("PEM block %d is of type %q, not PUBLIC KEY", n, block.Type)
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("PEM block %d is a %T key, not Ed25519", n, key)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block of type PUBLIC KEY: expected the public key `wivaudit digest public-key` prints")
	}
	return keys, nil
}
