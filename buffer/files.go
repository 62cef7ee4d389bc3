package buffer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

const tmpSuffix = ".tmp"

// writeBuffers gather what a compressor writes in small pieces into few large writes.
var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// createSynced creates path, which must not exist, fills it and syncs it. It returns the content's digests and
// size.
func createSynced(path string, fill func(io.Writer) error) (digests, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return digests{}, err
	}
	defer f.Close()
	h := newDigester(f)
	bw := writeBuffers.Get().(*bufio.Writer)
	bw.Reset(h)
	defer func() {
		bw.Reset(nil)
		writeBuffers.Put(bw)
	}()
	if err := fill(bw); err != nil {
		return digests{}, err
	}
	if err := bw.Flush(); err != nil {
		return digests{}, err
	}
	if err := f.Sync(); err != nil {
		return digests{}, err
	}
	return h.sums(), f.Close()
}

// replaceFile rewrites a file of the store atomically: temporary file, fsync, rename, fsync of the folder.
func replaceFile(path string, data []byte) error {
	tmp := path + tmpSuffix
	os.Remove(tmp)
	if _, err := createSynced(tmp, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// objectsSize is what the batch objects in dir weigh (manifests and other files are not counted).
func objectsSize(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && strings.HasSuffix(e.Name(), objectSuffix) {
			n += fi.Size()
		}
	}
	return n
}

// moveAside moves files that recovery cannot use into the quarantine folder, under names that say why, and
// reports them. Nothing is deleted.
func (s *Store) moveAside(why string, paths ...string) (moved []string, err error) {
	for _, p := range paths {
		if _, e := os.Lstat(p); errors.Is(e, os.ErrNotExist) {
			continue
		}
		to, e := moveNoReplace(p, filepath.Join(s.quarantine, why+sep+filepath.Base(p)))
		if e != nil {
			err = errors.Join(err, fmt.Errorf("move %s aside: %w", p, e))
			continue
		}
		moved = append(moved, to)
	}
	if len(moved) > 0 {
		err = errors.Join(err, syncDir(s.quarantine), syncDir(filepath.Dir(paths[0])))
	}
	return moved, err
}

// moveNoReplace moves a file to to, or, when that name is taken, to the first free to.N: it never replaces
// a file (a hard link fails when the name exists). It returns where the file went. Something that cannot be
// linked (a folder where a file should be) is renamed to a name found free.
func moveNoReplace(from, to string) (string, error) {
	dest := to
	for n := 1; ; n++ {
		err := os.Link(from, dest)
		if err == nil {
			return dest, os.Remove(from)
		}
		if errors.Is(err, os.ErrPermission) && !fileExists(dest) {
			return dest, os.Rename(from, dest)
		}
		if !isExist(err) || n > 1000 {
			return "", err
		}
		dest = fmt.Sprintf("%s.%d", to, n)
	}
}

// isExist tells whether err says a name is taken.
func isExist(err error) bool { return errors.Is(err, os.ErrExist) || errors.Is(err, syscall.EEXIST) }
