package buffer

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"io"
)

// digester passes writes through while computing the size, the Content-MD5 and the full-object SHA-256 of what
// was written, in the one pass that writes it.
type digester struct {
	w           io.Writer
	md5, sha256 hash.Hash
	n           int64
}

func newDigester(w io.Writer) *digester { return &digester{w: w, md5: md5.New(), sha256: sha256.New()} }

func (d *digester) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.md5.Write(p[:n])
	d.sha256.Write(p[:n])
	d.n += int64(n)
	return n, err
}

// digests are what S3 checks a body against: Content-MD5 and x-amz-checksum-sha256, both base64.
type digests struct {
	md5, sha256 string
	size        int64
}

func (d *digester) sums() digests {
	return digests{base64.StdEncoding.EncodeToString(d.md5.Sum(nil)), base64.StdEncoding.EncodeToString(d.sha256.Sum(nil)), d.n}
}

// ObjectSHA256 is the base64 SHA-256 of the batch's object, sent as x-amz-checksum-sha256: the one computed
// when it was sealed, or, for a batch sealed by a version that did not record it, computed from the object now.
// The Content-MD5 in its manifest, which S3 checks too, still dates from the seal.
func (b *Batch) ObjectSHA256() (string, error) {
	if b.SHA256 != "" {
		return b.SHA256, nil
	}
	if b.InLog() {
		return "", fmt.Errorf("checksum of %s: not composed yet", b.Key)
	}
	f, err := b.OpenObject()
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum of %s: %w", b.object, err)
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}
