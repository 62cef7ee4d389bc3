package buffer

import (
	"crypto/md5"
	"encoding/base64"
	"hash"
	"io"
)

// md5Counter passes writes through while computing the Content-MD5 and size of what was written.
type md5Counter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newMD5Counter(w io.Writer) *md5Counter { return &md5Counter{w: w, h: md5.New()} }

func (m *md5Counter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	m.h.Write(p[:n])
	m.n += int64(n)
	return n, err
}

func (m *md5Counter) sum() string { return base64.StdEncoding.EncodeToString(m.h.Sum(nil)) }
