package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// ErrPowerCut is the error of every operation from the one at which Faults cut the power.
var ErrPowerCut = errors.New("power cut")

// OpKind is the kind of a file operation Faults counts.
type OpKind uint8

// The operations Faults counts. OpenFile is OpCreate with O_CREATE, OpOpen without; Read and ReadAt are
// OpRead, Write and WriteAt OpWrite; Stat and Lstat of a name and Stat of an open file are OpStat; MkdirAll
// is one OpMkdir. Seek, Name and Close are not counted and never fail.
const (
	OpOpen OpKind = iota + 1
	OpCreate
	OpRead
	OpWrite
	OpTruncate
	OpSync
	OpDatasync
	OpSyncDir
	OpRename
	OpLink
	OpRemove
	OpRemoveAll
	OpMkdir
	OpReadDir
	OpStat
	OpLock
	opKinds
)

var opNames = [opKinds]string{"", "open", "create", "read", "write", "truncate", "sync", "datasync", "syncdir",
	"rename", "link", "remove", "removeall", "mkdir", "readdir", "stat", "lock"}

func (k OpKind) String() string {
	if k == 0 || k >= opKinds {
		return fmt.Sprintf("OpKind(%d)", k)
	}
	return opNames[k]
}

// Op is one file operation as Faults numbers it.
type Op struct {
	Index int64 // 1 for the first operation
	Kind  OpKind
	Path  string // the name, or the open file's name
	To    string // the new name of a Rename or Link
}

// Fault is what an operation Faults fails returns.
type Fault uint8

// The faults. Each is a syscall.Errno in an *fs.PathError whose Op is the OpKind and Path the Op's Path.
const (
	EIO Fault = iota + 1
	ENOSPC
	EROFS
	EDQUOT
	// ShortWrite makes a Write or WriteAt write the first half (rounded down) of its bytes and return that
	// count with ENOSPC; any other operation fails with EIO.
	ShortWrite
)

var faultNames = [...]string{"", "EIO", "ENOSPC", "EROFS", "EDQUOT", "ShortWrite"}

func (f Fault) String() string {
	if int(f) >= len(faultNames) || f == 0 {
		return fmt.Sprintf("Fault(%d)", f)
	}
	return faultNames[f]
}

// errno is the error of the fault on an operation of kind k.
func (f Fault) errno(k OpKind) syscall.Errno {
	switch f {
	case ENOSPC:
		return syscall.ENOSPC
	case EROFS:
		return syscall.EROFS
	case EDQUOT:
		return syscall.EDQUOT
	case ShortWrite:
		if k == OpWrite {
			return syscall.ENOSPC
		}
	}
	return syscall.EIO
}

// Faults wraps an FS, numbers every file operation (1, 2, ... in the order they start, across goroutines)
// and fails the ones its rules name, without calling the inner FS for them. Safe for concurrent use.
//
// When a Sync or Datasync of a file fails by a fault or the hook, Faults calls DropDirty on the inner file if
// it is a DirtyDropper (MemFS's files are): the kernel may have dropped the pages whose writeback failed.
type Faults struct {
	inner  FS
	ops    atomic.Int64
	counts [opKinds]atomic.Int64

	mu       sync.Mutex
	at       map[int64]Fault
	from     int64
	fromWith Fault
	only     func(Op) bool
	hook     func(Op) error
	cutAt    int64
	cut      bool
}

// NewFaults wraps inner with no rule: every operation goes through.
func NewFaults(inner FS) *Faults {
	return &Faults{inner: inner, at: map[int64]Fault{}}
}

// Ops is the number of operations so far.
func (f *Faults) Ops() int64 { return f.ops.Load() }

// Count is the number of operations of a kind so far, failed ones included.
func (f *Faults) Count(kind OpKind) int64 {
	if kind >= opKinds {
		return 0
	}
	return f.counts[kind].Load()
}

// Breakdown lists the count of each kind that ran, e.g. "create=2 write=10 datasync=3".
func (f *Faults) Breakdown() string {
	var b strings.Builder
	for k := OpOpen; k < opKinds; k++ {
		if n := f.counts[k].Load(); n > 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%d", k, n)
		}
	}
	return b.String()
}

// FailAt fails operation n, once.
func (f *Faults) FailAt(n int64, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at[n] = fault
}

// FailFrom fails operation n and every one after it, until Repair.
func (f *Faults) FailFrom(n int64, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.from, f.fromWith = n, fault
}

// Repair drops the rules of FailAt and FailFrom. The filter, the hook and a power cut stay.
func (f *Faults) Repair() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.at)
	f.from = 0
}

// Only limits FailAt and FailFrom to the operations for which keep returns true (nil: all). Indexes stay
// those of all operations. keep is called from the goroutines doing the operations, at once; it must not
// call f's rule methods.
func (f *Faults) Only(keep func(Op) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.only = keep
}

// Hook calls h before every operation, before any rule, from the goroutine doing it and outside any lock
// (h may block, e.g. on a channel); an error from h fails the operation with that error, as it is (nil: go
// on). Hook(nil) removes it.
func (f *Faults) Hook(h func(Op) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

// PowerCut cuts the power at operation n (at or below Ops(): at the next one): it and every operation after
// it, and any operation still to reach the inner FS (one a hook held), fail with an *fs.PathError wrapping
// ErrPowerCut and leave the inner FS as it is. A test then takes the inner MemFS's Crash as the disk that
// survives. Repair does not undo it.
func (f *Faults) PowerCut(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutAt = n
}

// Cut reports whether the power was cut.
func (f *Faults) Cut() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cut
}

// begin numbers an operation and decides it: a fault (0: none) or an error from the hook or the power cut.
func (f *Faults) begin(kind OpKind, path, to string) (Op, Fault, error) {
	op := Op{Index: f.ops.Add(1), Kind: kind, Path: path, To: to}
	f.counts[kind].Add(1)
	f.mu.Lock()
	hook, only := f.hook, f.only
	f.mu.Unlock()
	if hook != nil {
		if err := hook(op); err != nil {
			return op, 0, err
		}
	}
	matches := only == nil || only(op)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cutAt > 0 && op.Index >= f.cutAt {
		f.cut = true
	}
	if f.cut {
		return op, 0, &fs.PathError{Op: kind.String(), Path: path, Err: ErrPowerCut}
	}
	if !matches {
		return op, 0, nil
	}
	if fault, ok := f.at[op.Index]; ok {
		delete(f.at, op.Index)
		return op, fault, nil
	}
	if f.from > 0 && op.Index >= f.from {
		return op, f.fromWith, nil
	}
	return op, 0, nil
}

// run begins an operation that has no partial outcome and returns its error, if it is to fail.
func (f *Faults) run(kind OpKind, path, to string) error {
	op, fault, err := f.begin(kind, path, to)
	if err != nil || fault == 0 {
		return err
	}
	return faultErr(op, fault)
}

func faultErr(op Op, fault Fault) error {
	return &fs.PathError{Op: op.Kind.String(), Path: op.Path, Err: fault.errno(op.Kind)}
}

func (f *Faults) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	kind := OpOpen
	if flag&os.O_CREATE != 0 {
		kind = OpCreate
	}
	if err := f.run(kind, name, ""); err != nil {
		return nil, err
	}
	return f.wrap(f.inner.OpenFile(name, flag, perm))
}

func (f *Faults) wrap(file File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &faultFile{inner: file, faults: f}, nil
}

func (f *Faults) Remove(name string) error {
	if err := f.run(OpRemove, name, ""); err != nil {
		return err
	}
	return f.inner.Remove(name)
}

func (f *Faults) RemoveAll(name string) error {
	if err := f.run(OpRemoveAll, name, ""); err != nil {
		return err
	}
	return f.inner.RemoveAll(name)
}

func (f *Faults) Rename(from, to string) error {
	if err := f.run(OpRename, from, to); err != nil {
		return err
	}
	return f.inner.Rename(from, to)
}

func (f *Faults) Link(from, to string) error {
	if err := f.run(OpLink, from, to); err != nil {
		return err
	}
	return f.inner.Link(from, to)
}

func (f *Faults) Mkdir(name string, perm fs.FileMode) error {
	if err := f.run(OpMkdir, name, ""); err != nil {
		return err
	}
	return f.inner.Mkdir(name, perm)
}

func (f *Faults) MkdirAll(name string, perm fs.FileMode) error {
	if err := f.run(OpMkdir, name, ""); err != nil {
		return err
	}
	return f.inner.MkdirAll(name, perm)
}

func (f *Faults) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := f.run(OpReadDir, name, ""); err != nil {
		return nil, err
	}
	return f.inner.ReadDir(name)
}

func (f *Faults) Stat(name string) (fs.FileInfo, error) {
	if err := f.run(OpStat, name, ""); err != nil {
		return nil, err
	}
	return f.inner.Stat(name)
}

func (f *Faults) Lstat(name string) (fs.FileInfo, error) {
	if err := f.run(OpStat, name, ""); err != nil {
		return nil, err
	}
	return f.inner.Lstat(name)
}

func (f *Faults) SyncDir(name string) error {
	if err := f.run(OpSyncDir, name, ""); err != nil {
		return err
	}
	return f.inner.SyncDir(name)
}

func (f *Faults) Lock(name string) (File, error) {
	if err := f.run(OpLock, name, ""); err != nil {
		return nil, err
	}
	return f.wrap(f.inner.Lock(name))
}

// faultFile is an open file of a Faults.
type faultFile struct {
	inner  File
	faults *Faults
}

func (f *faultFile) Name() string { return f.inner.Name() }

func (f *faultFile) Seek(offset int64, whence int) (int64, error) {
	return f.inner.Seek(offset, whence)
}

func (f *faultFile) Close() error { return f.inner.Close() }

func (f *faultFile) Read(p []byte) (int, error) {
	if err := f.faults.run(OpRead, f.inner.Name(), ""); err != nil {
		return 0, err
	}
	return f.inner.Read(p)
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.faults.run(OpRead, f.inner.Name(), ""); err != nil {
		return 0, err
	}
	return f.inner.ReadAt(p, off)
}

func (f *faultFile) Write(p []byte) (int, error) {
	return f.write(p, f.inner.Write)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	return f.write(p, func(p []byte) (int, error) { return f.inner.WriteAt(p, off) })
}

// write runs a Write or WriteAt; a ShortWrite fault writes the first half of p.
func (f *faultFile) write(p []byte, write func([]byte) (int, error)) (int, error) {
	op, fault, err := f.faults.begin(OpWrite, f.inner.Name(), "")
	switch {
	case err != nil:
		return 0, err
	case fault == ShortWrite:
		n, err := write(p[:len(p)/2])
		if err != nil {
			return n, err
		}
		return n, faultErr(op, fault)
	case fault != 0:
		return 0, faultErr(op, fault)
	}
	return write(p)
}

func (f *faultFile) Stat() (fs.FileInfo, error) {
	if err := f.faults.run(OpStat, f.inner.Name(), ""); err != nil {
		return nil, err
	}
	return f.inner.Stat()
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.faults.run(OpTruncate, f.inner.Name(), ""); err != nil {
		return err
	}
	return f.inner.Truncate(size)
}

func (f *faultFile) Sync() error { return f.sync(OpSync, f.inner.Sync) }

func (f *faultFile) Datasync() error { return f.sync(OpDatasync, f.inner.Datasync) }

// sync runs a Sync or Datasync. When it fails by a fault or the hook, the writes not yet durable may be lost
// (fsyncgate); a power cut leaves the inner FS untouched.
func (f *faultFile) sync(kind OpKind, sync func() error) error {
	if err := f.faults.run(kind, f.inner.Name(), ""); err != nil {
		if !errors.Is(err, ErrPowerCut) {
			f.DropDirty()
		}
		return err
	}
	return sync()
}

// DropDirty passes DropDirty on, so that a Faults can wrap another.
func (f *faultFile) DropDirty() {
	if d, ok := f.inner.(DirtyDropper); ok {
		d.DropDirty()
	}
}
