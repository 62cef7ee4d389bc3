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
// size. A file it created and could not complete is removed: whatever it holds is never trusted.
func createSynced(fsys vfs.FS, path string, fill func(io.Writer) error) (digests, error) {
	f, err := fsys.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return digests{}, err
	}
	sum, err := fillSynced(f, fill)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fsys.Remove(path)
		return digests{}, err
	}
	return sum, nil
}

func fillSynced(f vfs.File, fill func(io.Writer) error) (digests, error) {
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
	return h.sums(), f.Sync()
}

// replaceFile rewrites a file of the store atomically: temporary file, fsync, rename, fsync of the folder.
func replaceFile(fsys vfs.FS, path string, data []byte) error {
	tmp := path + tmpSuffix
	fsys.Remove(tmp)
	if _, err := createSynced(fsys, tmp, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(path))
}

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
// reports them. Nothing is deleted: each file is linked into the quarantine, which is synced, before its old
// name goes.
func (s *Store) moveAside(why string, paths ...string) (moved []string, err error) {
	var linked []string // old names of files now in the quarantine too
	for _, p := range paths {
		if _, e := s.fs.Lstat(p); errors.Is(e, fs.ErrNotExist) {
			continue
		}
		to, isLink, e := placeFree(s.fs, p, filepath.Join(s.quarantine, why+sep+filepath.Base(p)))
		if e != nil {
			err = errors.Join(err, fmt.Errorf("move %s aside: %w", p, e))
			continue
		}
		moved = append(moved, to)
		if isLink {
			linked = append(linked, p)
		}
	}
	if len(moved) == 0 {
		return nil, err
	}
	if e := s.fs.SyncDir(s.quarantine); e != nil {
		return moved, errors.Join(err, e)
	}
	for _, p := range linked {
		if e := s.fs.Remove(p); e != nil {
			err = errors.Join(err, fmt.Errorf("move %s aside: %w", p, e))
		}
	}
	return moved, errors.Join(err, s.fs.SyncDir(filepath.Dir(paths[0])))
}

// placeFree gives from's file the name to, or, when that name is taken, the first free to.N: it never
// replaces a file (a hard link fails when the name exists). It returns the name, and whether it is a second
// link (from is still there) or the file was renamed: something that cannot be linked (a folder where a file
// should be) is renamed to a name found free.
func placeFree(fsys vfs.FS, from, to string) (dest string, isLink bool, err error) {
	dest = to
	for n := 1; ; n++ {
		err := fsys.Link(from, dest)
		if err == nil {
			return dest, true, nil
		}
		if errors.Is(err, fs.ErrPermission) && !fileExists(fsys, dest) {
			return dest, false, fsys.Rename(from, dest)
		}
		if !isExist(err) || n > 1000 {
			return "", false, err
		}
		dest = fmt.Sprintf("%s.%d", to, n)
	}
}

// linkAll gives each file from[i] the free name to[i] in dir and syncs dir: the files are then durably in
// both folders. When it fails, it takes back the links it made.
func linkAll(fsys vfs.FS, dir string, from, to []string) error {
	for i := range from {
		if err := fsys.Link(from[i], to[i]); err != nil {
			unlinkAll(fsys, to[:i])
			return err
		}
	}
	if err := fsys.SyncDir(dir); err != nil {
		unlinkAll(fsys, to)
		return err
	}
	return nil
}

func unlinkAll(fsys vfs.FS, paths []string) {
	for _, p := range paths {
		fsys.Remove(p)
	}
}

// isExist tells whether err says a name is taken.
func isExist(err error) bool { return errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.EEXIST) }

func fileExists(fsys vfs.FS, path string) bool {
	_, err := fsys.Lstat(path)
	return err == nil
}
