// Package buffer is the durable disk store. Every flush appends its records, whatever their organisation, to
// one write-ahead log (package wal) with one write and one fdatasync (group commit across concurrent
// flushes). An in-memory index says what each (organisation, kind) stream holds and which log segments its
// records are in; sealing gathers a stream's records into a batch (an object file with its manifest) waiting
// for upload, and the index lets the log delete a segment once nothing in it, or in the segments before it,
// is left unsealed. Batches that cannot be delivered go to a quarantine folder, rejected records to a
// dead-letter file. Everything an append acknowledged survives a crash of the process until the batch that
// holds it is removed after its upload.
package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
	"github.com/wiv/out_wivaudit/wal"
)

// Stream identifies one (organisation, kind) stream.
type Stream struct {
	Org, Kind string
}

func (s Stream) String() string { return s.Org + "/" + s.Kind }

// Options configure a Store.
type Options struct {
	MaxBatch        int64 // a stream's open batch is closed before its records would grow past this
	SegmentSize     int64 // the log moves to a new segment file past this; when 0, DefaultSegmentSize or an eighth of Limit
	Limit           int64 // the log and batches together may not exceed this; 0: no limit
	QuarantineLimit int64 // the quarantine folder may not exceed this
	DeadLetterLimit int64 // the dead-letter file may not grow past this; 0: no limit
	Now             func() time.Time
	// KeyClock gives the milliseconds of new batches (and so of keys); Now when nil. Tests freeze it to force
	// two processes onto the same keys.
	KeyClock func() time.Time
	// KeepDamaged, when set, is given the damaged regions (their bytes) that sealing a batch found and left out
	// of its object, before the batch is committed and the log lets go of them; its error fails the seal, and
	// the batch is sealed again later. Without it they are only reported.
	KeepDamaged func(st Stream, regions [][]byte) error
	// Crash, when set, is called at named points of the write and seal paths; tests use it to stop there.
	Crash func(point string)
	// FS is the file system of the store's folder: vfs.OS when nil. Tests fail or cut its operations.
	FS vfs.FS
}

// DefaultSegmentSize is the size past which the log starts a new segment file.
const DefaultSegmentSize = 16 << 20

// maxSegmentSize bounds Options.SegmentSize: an entry starts before it, so that runRef keeps its offset in 32
// bits.
const maxSegmentSize = 1 << 30

// Crash points, in the order a record meets them.
const (
	CrashAfterWrite     = "after-write"     // appended, not yet synced or acknowledged
	CrashMidSeal        = "mid-seal"        // half of the object written
	CrashAfterObject    = "after-object"    // object complete, no manifest
	CrashAfterManifest  = "after-manifest"  // batch committed, its records not yet released from the log
	CrashDuringRecovery = "during-recovery" // the log read back, nothing of the recovery persisted
	// A batch sealed in the log meets these instead of mid-seal (as its object is composed), after-object and
	// after-manifest (which a spill meets).
	CrashAfterBatchEntry = "after-batch-entry" // sealed in the log, not yet uploaded
	CrashAfterDelivery   = "after-delivery"    // delivered and in the ledger, its "sealed" entry not yet appended
)

var (
	// ErrQuarantineFull means the quarantine folder has no room for a batch.
	ErrQuarantineFull = errors.New("the quarantine folder is at its size limit")
	// ErrDeadLetterFull means the dead-letter file has no room for the lines.
	ErrDeadLetterFull = errors.New("the dead-letter file is at its size limit")
	// ErrLocked means another process holds the store's folder.
	ErrLocked = errors.New("in use by another wivaudit instance")
)

// Store is safe for concurrent use.
type Store struct {
	dir, walDir, batches, quarantine string
	opt                              Options
	fs                               vfs.FS
	lockMu                           sync.Mutex
	lock                             vfs.File
	dirMu                            sync.Mutex // one flush at a time creates the folder again
	log                              *wal.Log
	use                              usage

	mu      sync.Mutex // guards the index: streams, closed, refs
	streams map[Stream]*stream
	closed  []*Pending
	refs    map[uint64]int // runs not yet sealed, by log segment

	markMu   sync.Mutex // guards unmarked, and orders the "sealed" entries' appends
	unmarked []unmarked
	// removeLater are delivered batches whose records could not be marked as sealed in the log: Tidy deletes
	// them once they are. Guarded by markMu.
	removeLater []*Batch
	// done are the "sealed" entries of delivered batches that lived in the log, for the next append of the
	// log: until then a restart finds them delivered in the ledger. Guarded by markMu.
	done [][]byte

	deadMu sync.Mutex
}

// Folders and files of a store.
const (
	walFolder        = "wal"
	batchesFolder    = "batches"
	quarantineFolder = "quarantine"
	// DeadLetterFile holds rejected records, one JSON line each.
	DeadLetterFile = "deadletter.jsonl"
)

// Open opens (creating if needed) the store in dir, takes its exclusive lock and recovers what a previous run
// left: the log's unsealed records, closed batches to seal and sealed batches to upload. What recovery could
// not read is moved to the quarantine folder and named in the report. Recovered data counts towards the limit
// at once.
func Open(dir string, opt Options) (*Store, *Recovery, error) {
	if opt.KeyClock == nil {
		opt.KeyClock = opt.Now
	}
	opt.SegmentSize = min(opt.SegmentSize, maxSegmentSize)
	if opt.SegmentSize <= 0 {
		opt.SegmentSize = DefaultSegmentSize
		if opt.Limit > 0 {
			// Segments go whole: a small limit needs small segments to free room in time.
			opt.SegmentSize = min(opt.SegmentSize, max(opt.Limit/8, minSegmentSize))
		}
	}
	if opt.Crash == nil {
		opt.Crash = func(string) {}
	}
	if opt.FS == nil {
		opt.FS = vfs.OS
	}
	s := &Store{
		dir: dir, walDir: filepath.Join(dir, walFolder), batches: filepath.Join(dir, batchesFolder),
		quarantine: filepath.Join(dir, quarantineFolder), opt: opt, fs: opt.FS, streams: map[Stream]*stream{},
		refs: map[uint64]int{},
	}
	s.use.limit, s.use.quarantineLimit = opt.Limit, opt.QuarantineLimit
	if err := s.makeDirs(); err != nil {
		return nil, nil, err
	}
	if err := s.takeLock(); err != nil {
		return nil, nil, err
	}
	rep, err := s.recover()
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	// The first reading of the free space sizes the segments and the reserve, now that what the store holds
	// is counted.
	s.use.mu.Lock()
	s.freeLocked(0)
	s.use.mu.Unlock()
	s.keepBallast()
	return s, rep, nil
}

// makeDirs creates the store's folders that do not exist, with their missing parents, and makes their names
// durable: it syncs each folder in which it created one, and Store_Dir.
func (s *Store) makeDirs() error {
	var created, sync []string
	for _, d := range []string{s.walDir, s.batches, s.quarantine} {
		var missing []string
		for p := d; ; p = filepath.Dir(p) {
			_, err := s.fs.Stat(p)
			if err == nil {
				break
			}
			if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(p) == p {
				return fmt.Errorf("create %s: %w", d, err)
			}
			missing = append(missing, p)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			if err := s.fs.Mkdir(missing[i], 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("create %s: %w", missing[i], err)
			}
			created = append(created, missing[i])
			if parent := filepath.Dir(missing[i]); !slices.Contains(sync, parent) {
				sync = append(sync, parent)
			}
		}
	}
	if !slices.Contains(sync, s.dir) {
		sync = append(sync, s.dir)
	}
	for _, d := range sync {
		// A folder that was there before may be one this process cannot read, and so cannot sync: then
		// the system's own writeback has to do.
		if err := s.fs.SyncDir(d); err != nil && (slices.Contains(created, d) || !errors.Is(err, fs.ErrPermission)) {
			return fmt.Errorf("sync %s: %w", d, err)
		}
	}
	return nil
}

func (s *Store) takeLock() error {
	f, err := lockDir(s.fs, s.dir)
	if err != nil {
		return err
	}
	s.lockMu.Lock()
	s.lock = f
	s.lockMu.Unlock()
	return nil
}

// lockDir takes the exclusive lock of the store in dir, and writes this process's id into the lock file. The
// lock holds until the file is closed.
func lockDir(fsys vfs.FS, dir string) (vfs.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := fsys.Lock(path)
	if errors.Is(err, vfs.ErrLocked) {
		owner, _ := vfs.ReadFile(fsys, path)
		return nil, &LockedError{Dir: dir, Holder: strings.TrimSpace(string(owner))}
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// LockedError says that another process holds a store's lock; it is ErrLocked.
type LockedError struct {
	Dir    string
	Holder string // the process id the lock file names
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s is %v (pid %s)", e.Dir, ErrLocked, e.Holder)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Close closes the log and releases the store's lock. Appends and seals must have stopped.
func (s *Store) Close() {
	if s.log != nil {
		s.log.Close()
	}
	s.lockMu.Lock()
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	s.lockMu.Unlock()
}

// ErrRecreated says that the store's folder had been removed while the store was open and is now created
// anew: what was sealed in it is gone, what was not yet sealed is being sealed into the new folder.
var ErrRecreated = errors.New("the store's folder was removed while in use and has been created again")

// checkDir finds out whether the store's folder was removed (its lock file has no name any more) and then
// creates it again with its lock and a new log segment, and closes every open batch so that the records
// still held by the removed segments are sealed into the new folder at once.
func (s *Store) checkDir() error {
	if n, err := links(s.lockFile()); err != nil || n > 0 {
		return nil
	}
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	if n, err := links(s.lockFile()); err != nil || n > 0 {
		return nil // another flush recreated it meanwhile
	}
	if err := s.makeDirs(); err != nil {
		return fmt.Errorf("%w, but not its folders: %v", ErrRecreated, err)
	}
	old := s.lockFile()
	if err := s.takeLock(); err != nil {
		return fmt.Errorf("%w, but not its lock: %v", ErrRecreated, err)
	}
	old.Close()
	// The records appended to the removed segments are all indexed once the log has moved on.
	if err := s.log.Roll(); err != nil {
		return fmt.Errorf("%w, but not its log: %v", ErrRecreated, err)
	}
	s.Rotate(time.Time{})
	return ErrRecreated
}

func (s *Store) lockFile() vfs.File {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	return s.lock
}

// links is how many names an open file has: 0 once its folder was removed.
func links(f vfs.File) (uint64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no link count", f.Name())
	}
	return uint64(st.Nlink), nil
}
