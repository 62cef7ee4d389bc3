// Package vfs is the store's file-system seam: every file operation of the store, its log and the delivery
// ledger goes through an FS, so that tests can fail any one of them (Faults) or cut the power at any one
// (MemFS's crash state). Production uses OS.
package vfs

import (
	"errors"
	"io"
	"io/fs"
)

// File is an open file of an FS.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Seeker
	io.Closer
	Name() string
	// Stat describes the open file. Its Sys() is a *syscall.Stat_t whose Nlink is 0 once the file has no
	// name left (its folder was removed).
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
	// Sync makes the file's data and metadata durable (fsync).
	Sync() error
	// Datasync makes the file's data durable (fdatasync). After it fails once, nothing written to the file
	// before is known to be durable, whatever a later Datasync says.
	Datasync() error
}

// FS is a file system. Names are slash-separated paths as the os package takes them.
type FS interface {
	// OpenFile opens name with os.O_* flags: O_RDONLY, O_WRONLY, O_RDWR, O_CREATE, O_EXCL, O_APPEND, O_TRUNC.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Remove(name string) error
	// RemoveAll removes name and everything below it; no error when it does not exist.
	RemoveAll(name string) error
	// Rename replaces to with from, atomically.
	Rename(from, to string) error
	// Link gives from's file a second name, to; it fails when to exists.
	Link(from, to string) error
	Mkdir(name string, perm fs.FileMode) error
	MkdirAll(name string, perm fs.FileMode) error
	// ReadDir lists a folder, sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	Lstat(name string) (fs.FileInfo, error)
	// SyncDir makes the names in a folder durable: files created, renamed, linked or removed in it.
	SyncDir(name string) error
	// Lock opens name (creating it) for reading and writing and takes an exclusive lock on it, held until
	// the file is closed. When another holder has it, the error is ErrLocked.
	Lock(name string) (File, error)
	// Free is how many bytes an unprivileged process may still write to the file system holding name
	// (statfs: the blocks available times their size).
	Free(name string) (int64, error)
}

// ErrLocked means another holder has the lock.
var ErrLocked = errors.New("locked by another holder")

// ReadFile reads a whole file.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, 0, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
