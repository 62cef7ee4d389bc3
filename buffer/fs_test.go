package buffer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
)

// hookFS passes every operation to the OS's file system after asking hook, which may fail it (or block it)
// with the operation's name ("open", "writeat", "datasync", ...) and its path. Names under root (when set) are
// taken to the same names under real, so that an operation that bypasses the FS finds nothing.
type hookFS struct {
	root, real string
	mu         sync.Mutex
	hook       func(op, path string) error
}

func (h *hookFS) setHook(f func(op, path string) error) {
	h.mu.Lock()
	h.hook = f
	h.mu.Unlock()
}

func (h *hookFS) do(op, path string) (string, error) {
	h.mu.Lock()
	f := h.hook
	h.mu.Unlock()
	if f != nil {
		if err := f(op, path); err != nil {
			return "", &fs.PathError{Op: op, Path: path, Err: err}
		}
	}
	if h.root != "" {
		rest, ok := strings.CutPrefix(path, h.root)
		if !ok {
			return "", &fs.PathError{Op: op, Path: path, Err: fs.ErrInvalid}
		}
		path = h.real + rest
	}
	return path, nil
}

func (h *hookFS) OpenFile(name string, flag int, perm fs.FileMode) (vfs.File, error) {
	p, err := h.do("open", name)
	if err != nil {
		return nil, err
	}
	f, err := vfs.OS.OpenFile(p, flag, perm)
	if err != nil {
		return nil, err
	}
	return &hookFile{File: f, fs: h, path: name}, nil
}

func (h *hookFS) Lock(name string) (vfs.File, error) {
	p, err := h.do("lock", name)
	if err != nil {
		return nil, err
	}
	f, err := vfs.OS.Lock(p)
	if err != nil {
		return nil, err
	}
	return &hookFile{File: f, fs: h, path: name}, nil
}

func (h *hookFS) one(op, name string, f func(string) error) error {
	p, err := h.do(op, name)
	if err != nil {
		return err
	}
	return f(p)
}

func (h *hookFS) two(op, from, to string, f func(string, string) error) error {
	p, err := h.do(op, from)
	if err != nil {
		return err
	}
	q, err := h.do(op, to)
	if err != nil {
		return err
	}
	return f(p, q)
}

func (h *hookFS) Remove(name string) error    { return h.one("remove", name, vfs.OS.Remove) }
func (h *hookFS) RemoveAll(name string) error { return h.one("removeall", name, vfs.OS.RemoveAll) }
func (h *hookFS) SyncDir(name string) error   { return h.one("syncdir", name, vfs.OS.SyncDir) }
func (h *hookFS) Rename(from, to string) error {
	return h.two("rename", from, to, vfs.OS.Rename)
}
func (h *hookFS) Link(from, to string) error { return h.two("link", from, to, vfs.OS.Link) }
func (h *hookFS) Mkdir(name string, perm fs.FileMode) error {
	return h.one("mkdir", name, func(p string) error { return vfs.OS.Mkdir(p, perm) })
}
func (h *hookFS) MkdirAll(name string, perm fs.FileMode) error {
	return h.one("mkdirall", name, func(p string) error { return vfs.OS.MkdirAll(p, perm) })
}

func (h *hookFS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := h.do("readdir", name)
	if err != nil {
		return nil, err
	}
	return vfs.OS.ReadDir(p)
}

func (h *hookFS) Stat(name string) (fs.FileInfo, error) {
	p, err := h.do("stat", name)
	if err != nil {
		return nil, err
	}
	return vfs.OS.Stat(p)
}

func (h *hookFS) Lstat(name string) (fs.FileInfo, error) {
	p, err := h.do("lstat", name)
	if err != nil {
		return nil, err
	}
	return vfs.OS.Lstat(p)
}

// hookFile asks its hookFS before each operation on the file.
type hookFile struct {
	vfs.File
	fs   *hookFS
	path string
}

func (f *hookFile) Name() string { return f.path }

func (f *hookFile) check(op string) error {
	_, err := f.fs.do(op, f.path)
	return err
}

func (f *hookFile) Read(p []byte) (int, error) {
	if err := f.check("read"); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *hookFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.check("readat"); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

// errTorn, returned by a hook for a write, makes the write store the first half of its bytes and fail.
var errTorn = errors.New("torn write (test)")

func (f *hookFile) Write(p []byte) (int, error) {
	if err := f.check("write"); err != nil {
		if errors.Is(err, errTorn) {
			n, _ := f.File.Write(p[:len(p)/2])
			return n, err
		}
		return 0, err
	}
	return f.File.Write(p)
}

func (f *hookFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.check("writeat"); err != nil {
		if errors.Is(err, errTorn) {
			n, _ := f.File.WriteAt(p[:len(p)/2], off)
			return n, err
		}
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *hookFile) Truncate(size int64) error {
	if err := f.check("truncate"); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *hookFile) Sync() error {
	if err := f.check("sync"); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *hookFile) Datasync() error {
	if err := f.check("datasync"); err != nil {
		return err
	}
	return f.File.Datasync()
}

func (f *hookFile) Stat() (fs.FileInfo, error) {
	if err := f.check("fstat"); err != nil {
		return nil, err
	}
	return f.File.Stat()
}

// TestEveryFileOperationGoesThroughTheFS runs the store on an FS whose names exist only through it: an
// operation that went to the operating system directly would find nothing there and fail.
func TestEveryFileOperationGoesThroughTheFS(t *testing.T) {
	real := t.TempDir()
	root := "/no-such-folder/store"
	if _, err := os.Stat(root); err == nil {
		t.Skip(root + " exists here")
	}
	var seen sync.Map
	h := &hookFS{root: root, real: real, hook: func(op, path string) error { seen.Store(op, true); return nil }}
	c := &clock{t: t0}
	o := opts(1<<20, c)
	o.FS = h
	s := open(t, root, o)
	commit(t, s, "a/org:1", "b/org:2", "c/org:3")
	s.Rotate(time.Time{})
	var batches []*Batch
	for _, r := range s.Seal(s.TakeClosed(), naming, joinLines) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		batches = append(batches, r.Batch)
	}
	if got := readObject(t, batches[0]); got == "" {
		t.Error("empty object")
	}
	if _, err := batches[0].ObjectSHA256(); err != nil {
		t.Error(err)
	}
	if s.ObjectGone(batches[0]) {
		t.Error("ObjectGone for an object in place")
	}
	for _, step := range []func() error{
		func() error { return s.Rekey(batches[0], "other", batches[0].KeyMs) },
		func() error { return s.SaveAttempt(batches[0]) },
		func() error { return s.Remove(batches[0]) },
		func() error { return s.Quarantine(batches[1]) },
		func() error { _, err := s.DeadLetter([]byte("{}\n")); return err },
		func() error { return s.WriteFileIn("digests", "x", []byte("x")) },
		func() error { _, err := s.ReadFileIn("digests", "x"); return err },
		func() error { return s.WriteFile("y", []byte("y")) },
		func() error { _, err := s.ReadFile("y"); return err },
	} {
		if err := step(); err != nil {
			t.Error(err)
		}
	}
	if !s.ObjectGone(batches[0]) || !s.Present() {
		t.Error("ObjectGone or Present is wrong")
	}
	commit(t, s, "a/org:4")
	s.Close()
	s2, rec, err := Open(root, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(rec.Batches) != 1 || rec.Pending != 1 {
		t.Errorf("recovered %d batches, %d pending; want 1 and 1", len(rec.Batches), rec.Pending)
	}
	for _, op := range []string{"open", "lock", "writeat", "datasync", "sync", "syncdir", "readat", "readdir", "rename", "link", "remove", "fstat"} {
		if _, ok := seen.Load(op); !ok {
			t.Errorf("no %s went through the FS", op)
		}
	}
	if _, err := os.Stat(filepath.Join(real, walFolder)); err != nil {
		t.Error(err)
	}
}
