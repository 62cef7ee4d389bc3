package vfs

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"sort"
	"syscall"
)

// memFile is an open file of a MemFS; its fields are guarded by the MemFS's mutex.
type memFile struct {
	fs     *MemFS
	node   *memNode
	name   string
	flag   int
	off    int64
	closed bool
}

// The errors os.File gives for these misuses, which are not system errors.
var (
	errNegativeOffset = errors.New("negative offset")
	errWriteAtAppend  = errors.New("os: invalid use of WriteAt on file opened with O_APPEND")
)

// lock takes the MemFS's mutex, which the caller releases with unlock even when lock returns the error of a
// closed file.
func (f *memFile) lock(op string) error {
	f.fs.mu.Lock()
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	}
	return nil
}

func (f *memFile) unlock() { f.fs.mu.Unlock() }

func (f *memFile) Name() string { return f.name }

func (f *memFile) Read(p []byte) (int, error) {
	err := f.lock("read")
	defer f.unlock()
	if err != nil {
		return 0, err
	}
	n, err := f.readAt("read", p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	err := f.lock("read")
	defer f.unlock()
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "readat", Path: f.name, Err: errNegativeOffset}
	}
	n, err := f.readAt("read", p, off)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

func (f *memFile) readAt(op string, p []byte, off int64) (int, error) {
	switch {
	case len(p) == 0:
		return 0, nil
	case !readable(f.flag):
		return 0, pathErr(op, f.name, syscall.EBADF)
	case f.node.isDir():
		return 0, pathErr(op, f.name, syscall.EISDIR)
	case off >= int64(len(f.node.data)):
		return 0, io.EOF
	}
	return copy(p, f.node.data[off:]), nil
}

func (f *memFile) Write(p []byte) (int, error) {
	err := f.lock("write")
	defer f.unlock()
	if err != nil {
		return 0, err
	}
	if !writable(f.flag) {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	if f.flag&os.O_APPEND != 0 {
		f.off = int64(len(f.node.data))
	}
	f.writeAt(p, f.off)
	f.off += int64(len(p))
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	err := f.lock("write")
	defer f.unlock()
	if err != nil {
		return 0, err
	}
	switch {
	case f.flag&os.O_APPEND != 0:
		return 0, errWriteAtAppend
	case off < 0:
		return 0, &fs.PathError{Op: "writeat", Path: f.name, Err: errNegativeOffset}
	case len(p) == 0:
		return 0, nil
	case !writable(f.flag):
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	f.writeAt(p, off)
	return len(p), nil
}

func (f *memFile) writeAt(p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	n := f.node
	end := int(off) + len(p)
	if end > len(n.data) {
		n.resize(end)
	}
	copy(n.data[off:], p)
	n.dirty.add(int(off), end)
	f.fs.touch(n)
}

func (f *memFile) Seek(offset int64, whence int) (int64, error) {
	err := f.lock("seek")
	defer f.unlock()
	if err != nil {
		return 0, err
	}
	off := offset
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += f.off
	case io.SeekEnd:
		off += int64(len(f.node.data))
	default:
		return 0, pathErr("seek", f.name, syscall.EINVAL)
	}
	if off < 0 {
		return 0, pathErr("seek", f.name, syscall.EINVAL)
	}
	f.off = off
	return off, nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	err := f.lock("stat")
	defer f.unlock()
	if err != nil {
		return nil, err
	}
	return f.fs.info(path.Base(f.name), f.node), nil
}

func (f *memFile) Truncate(size int64) error {
	err := f.lock("truncate")
	defer f.unlock()
	if err != nil {
		return err
	}
	if size < 0 || !writable(f.flag) {
		return pathErr("truncate", f.name, syscall.EINVAL)
	}
	f.node.resize(int(size))
	f.fs.touch(f.node)
	return nil
}

// Sync makes the file's data durable, or a folder's names when the file is a folder.
func (f *memFile) Sync() error { return f.sync("sync") }

func (f *memFile) Datasync() error { return f.sync("fdatasync") }

func (f *memFile) sync(op string) error {
	err := f.lock(op)
	defer f.unlock()
	if err != nil {
		return err
	}
	f.node.sync()
	return nil
}

func (f *memFile) Close() error {
	err := f.lock("close")
	defer f.unlock()
	if err != nil {
		return err
	}
	f.closed = true
	if f.fs.locks[f.node] == f {
		delete(f.fs.locks, f.node)
	}
	return nil
}

// resize sets the size of a file's live data; bytes it adds are zeros, dirty until synced.
func (n *memNode) resize(size int) {
	old := len(n.data)
	if size <= old {
		n.data = n.data[:size]
		n.dirty.clip(size)
		return
	}
	n.data = growZero(n.data, size)
	n.dirty.add(old, size)
}

// growZero extends b to size with zeros.
func growZero(b []byte, size int) []byte {
	old := len(b)
	b = slices.Grow(b, size-old)[:size]
	clear(b[old:])
	return b
}

// sync makes a file's size and dirty ranges durable, or a folder's live names.
func (n *memNode) sync() {
	if n.isDir() {
		n.synced = maps.Clone(n.entries)
		return
	}
	n.durable = overlay(n.durable, len(n.data), n.data, n.dirty)
	n.dirty = n.dirty[:0]
}

// overlay resizes base to size (zeros where it grows) and copies into it the bytes of data in ranges. It
// writes into base's array.
func overlay(base []byte, size int, data []byte, ranges spans) []byte {
	if size <= len(base) {
		base = base[:size]
	} else {
		base = growZero(base, size)
	}
	for _, s := range ranges {
		if s.from < size {
			copy(base[s.from:min(s.to, size)], data[s.from:])
		}
	}
	return base
}

// span is a range of bytes [from, to).
type span struct{ from, to int }

// spans is a set of ranges: sorted, disjoint and not touching.
type spans []span

func (s *spans) add(from, to int) {
	if from >= to {
		return
	}
	ss := *s
	i := sort.Search(len(ss), func(i int) bool { return ss[i].to >= from })
	j := sort.Search(len(ss), func(j int) bool { return ss[j].from > to })
	if i < j {
		from, to = min(from, ss[i].from), max(to, ss[j-1].to)
	}
	*s = slices.Replace(ss, i, j, span{from, to})
}

// clip drops what lies at or past size.
func (s *spans) clip(size int) {
	ss := *s
	i := sort.Search(len(ss), func(i int) bool { return ss[i].to > size })
	if i < len(ss) && ss[i].from < size {
		ss[i].to = size
		i++
	}
	*s = ss[:i]
}
