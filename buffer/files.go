package buffer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/wiv/out_wivaudit/vfs"
)

const tmpSuffix = ".tmp"

// writeBuffers gather what a compressor writes in small pieces into few large writes.
var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// createSynced creates path, which must not exist, fills it and syncs it. It returns the content's digests and
// size.
func createSynced(fsys vfs.FS, path string, fill func(io.Writer) error) (digests, error) {
	f, err := fsys.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
func replaceFile(fsys vfs.FS, path string, data []byte) error {
	tmp := path + tmpSuffix
	fsys.Remove(tmp)
	if _, err := createSynced(fsys, tmp, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		fsys.Remove(tmp)
		return err
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(path))
}

// syncDir makes a folder's names durable on the operating system's file system: the delivery ledger's, until
// it goes through the store's FS too.
func syncDir(dir string) error { return vfs.OS.SyncDir(dir) }

// objectsSize is what the batch objects in dir weigh (manifests and other files are not counted).
func objectsSize(fsys vfs.FS, dir string) int64 {
	var n int64
	entries, _ := fsys.ReadDir(dir)
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
		if _, e := s.fs.Lstat(p); errors.Is(e, fs.ErrNotExist) {
			continue
		}
		to, e := moveNoReplace(s.fs, p, filepath.Join(s.quarantine, why+sep+filepath.Base(p)))
		if e != nil {
			err = errors.Join(err, fmt.Errorf("move %s aside: %w", p, e))
			continue
		}
		moved = append(moved, to)
	}
	if len(moved) > 0 {
		err = errors.Join(err, s.fs.SyncDir(s.quarantine), s.fs.SyncDir(filepath.Dir(paths[0])))
	}
	return moved, err
}

// moveNoReplace moves a file to to, or, when that name is taken, to the first free to.N: it never replaces
// a file (a hard link fails when the name exists). It returns where the file went. Something that cannot be
// linked (a folder where a file should be) is renamed to a name found free.
func moveNoReplace(fsys vfs.FS, from, to string) (string, error) {
	dest := to
	for n := 1; ; n++ {
		err := fsys.Link(from, dest)
		if err == nil {
			return dest, fsys.Remove(from)
		}
		if errors.Is(err, fs.ErrPermission) && !fileExists(fsys, dest) {
			return dest, fsys.Rename(from, dest)
		}
		if !isExist(err) || n > 1000 {
			return "", err
		}
		dest = fmt.Sprintf("%s.%d", to, n)
	}
}

// isExist tells whether err says a name is taken.
func isExist(err error) bool { return errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.EEXIST) }

func fileExists(fsys vfs.FS, path string) bool {
	_, err := fsys.Lstat(path)
	return err == nil
}
