package plugin

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/wiv/out_wivaudit/buffer"
)

// Before each upload the batch's object is read whole into memory and checked against its manifest, and
// those very bytes are sent. A byte altered in Store_Dir since the seal is found before anything is sent, and
// what was checked cannot differ from what S3 gets, however often the SDK reads the body (to sign it, to
// retry). Hashing while streaming the file would check one read and send others, and find a mismatch only
// once the body was on its way. An object is about Total_File_Size at most, one per upload worker.

// objectBuffers holds the buffers objects are read into, *[]byte.
var objectBuffers sync.Pool

// readObject reads b's object into a pooled buffer and sums it. An error means the object could not be read,
// which says nothing of its bytes: it is not corruption.
func readObject(b *buffer.Batch) (*[]byte, objectSums, error) {
	f, err := b.OpenObject()
	if err != nil {
		return nil, objectSums{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, objectSums{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	want := b.ObjectBytes + 1 // one byte more than the manifest says, to see an object that grew
	buf, _ := objectBuffers.Get().(*[]byte)
	if buf == nil || int64(cap(*buf)) < want {
		buf = new([]byte)
		*buf = make([]byte, want)
	}
	n, err := io.ReadFull(f, (*buf)[:want])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		objectBuffers.Put(buf)
		return nil, objectSums{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	*buf = (*buf)[:n]
	sha, md := sha256.Sum256(*buf), md5.Sum(*buf)
	return buf, objectSums{size: max(fi.Size(), int64(n)), sha256: base64.StdEncoding.EncodeToString(sha[:]),
		md5: base64.StdEncoding.EncodeToString(md[:])}, nil
}

// composeObject composes the object of a batch that lives in the log into a pooled buffer; the store notes
// its size and checksums in the batch's manifest.
func (in *Instance) composeObject(b *buffer.Batch) (*[]byte, objectSums, error) {
	buf, _ := objectBuffers.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	w := bytes.NewBuffer((*buf)[:0])
	if err := in.store.Compose(b, w, in.encode); err != nil {
		objectBuffers.Put(buf)
		return nil, objectSums{}, err
	}
	*buf = w.Bytes()
	return buf, objectSums{size: b.ObjectBytes, sha256: b.SHA256, md5: b.ContentMD5}, nil
}

// composeFailed is the step an attempt stands at when composing a batch's object from the log failed: damage,
// or a read error.
func composeFailed(err error) step {
	if errors.Is(err, buffer.ErrDamaged) {
		return damaged
	}
	return readFailed
}
