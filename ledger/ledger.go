// Package ledger is the delivery ledger: the durable account of what was put into customers' buckets, one JSON
// line per object in segment files <16 hex digits>.jsonl of its folder (Store_Dir/ledger). Concurrent Records
// share one write and one fdatasync (group commit): those that come while a sync is under way queue their
// lines, and the next of them writes and syncs every line queued. Every file operation goes through a vfs.FS.
//
// Its size is bounded: once the segments together pass the limit, whole segments are deleted, oldest first,
// never the one being written. A segment that still holds entries a digest has not yet covered (at or after
// Options.KeepFrom) is kept, up to twice the limit; past that it goes anyway, and Record says so with
// ErrOverflow. So the ledger takes at most the limit on disk while digests keep up, and twice the limit at
// worst.
package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/wiv/out_wivaudit/record"
	"github.com/wiv/out_wivaudit/vfs"
)

// Folder is the ledger's folder in a Store_Dir.
const Folder = "ledger"

// Entry is one object put into a bucket.
type Entry struct {
	Time      time.Time       `json:"time"` // when the ledger recorded it, right after S3's answer (UTC)
	Status    string          `json:"status"`
	Org       string          `json:"org_id"`
	Kind      string          `json:"kind"`
	Bucket    string          `json:"bucket"`
	Key       string          `json:"key"`
	Bytes     int64           `json:"bytes"`
	SHA256    string          `json:"sha256"` // of the object's bytes, lower-case hex
	Records   int             `json:"records"`
	First     record.EventRef `json:"first_event"`
	Last      record.EventRef `json:"last_event"`
	VersionID string          `json:"version_id,omitempty"`
}

// Statuses of an entry.
const (
	// Delivered: S3 answered 200 to the upload.
	Delivered = "delivered"
	// Unconfirmed: S3 answered that the key exists (412) to an upload of a batch that had been tried at that
	// key before without an answer (a lost answer, or a crash): the earlier attempt may have written it, or
	// another writer did.
	Unconfirmed = "unconfirmed"
)

// ErrOverflow means the ledger deleted entries no digest covers yet, to stay within twice its limit.
var ErrOverflow = errors.New("the delivery ledger is at twice its size limit")

// Options configure a Ledger.
type Options struct {
	Limit int64 // what the segments may weigh together; 0: no limit
	// KeepFrom, when set, says from when entries are not yet covered by a written digest: segments holding
	// such entries are kept past the limit (up to twice it).
	KeepFrom func() time.Time
	// Floor, when set, is the earliest time an entry recorded now may be stamped with: a digest made up to it
	// lists no entry recorded after, so one stamped before it by a clock set back would be in no digest.
	Floor func() time.Time
}

const (
	suffix  = ".jsonl"
	maxSeg  = 16 << 20
	minSeg  = 64 << 10
	tailLen = 16 << 10 // more than any entry: keys, events and the rest are bounded
)

// Ledger appends to the delivery ledger. It is safe for concurrent use.
type Ledger struct {
	fsys    vfs.FS
	dir     string
	now     func() time.Time
	opt     Options
	segSize int64

	mu      sync.Mutex
	cond    *sync.Cond // signalled when a sync ends
	queue   []*request // stamped, not yet written, in order
	syncing bool       // a batch is being written and synced, without mu
	queued  uint64     // requests queued so far
	settled uint64     // of them, those that succeeded or failed (in the order queued)
	buf     []byte     // the batch being written
	// entriesWait, when set, is called with mu held when Entries starts waiting for Records: for tests.
	entriesWait func()
	dirDurable  bool     // the folder's name is known durable
	f           vfs.File // the segment being written; nil until the next Record starts one
	id          uint64   // of f
	next        uint64   // the id of the next segment to start
	size        int64    // of f
	last        time.Time
	segs        []segment // closed segments, oldest first
	total       int64     // what every segment weighs, f's included
}

// request is one Record's lines, waiting for their write and fdatasync.
type request struct {
	line []byte
	at   time.Time // the entries' stamp
	done bool
	err  error
}

type segment struct {
	id   uint64
	size int64
	last time.Time // of its newest entry
}

// Open opens the delivery ledger in dir for appending; the first Record creates the folder if needed. A last
// line cut short by a crash (never reported as recorded) is cut off; when that fails, the next Record starts a
// new segment.
func Open(fsys vfs.FS, dir string, now func() time.Time, opt Options) (*Ledger, error) {
	l := &Ledger{fsys: fsys, dir: dir, now: now, opt: opt, segSize: maxSeg, next: 1}
	l.cond = sync.NewCond(&l.mu)
	if opt.Limit > 0 {
		l.segSize = min(maxSeg, max(minSeg, opt.Limit/8))
	}
	ids, err := segments(fsys, dir)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		fi, err := fsys.Stat(l.path(id))
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		l.segs = append(l.segs, segment{id: id, size: fi.Size(), last: lastTime(fsys, l.path(id))})
		l.total += fi.Size()
		l.next = id + 1
	}
	if len(l.segs) > 0 {
		l.reopen()
	}
	return l, nil
}

// makeDir creates the ledger's folder if it does not exist (at the first Record, or after it was removed with
// the Store_Dir, which the store creates again), and makes its name durable.
func (l *Ledger) makeDir() error {
	_, err := l.fsys.Stat(l.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.dirDurable = false
		if err := l.fsys.Mkdir(l.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case err != nil:
		return err
	case l.dirDurable:
		return nil
	}
	if err := l.fsys.SyncDir(filepath.Dir(l.dir)); err != nil {
		return err
	}
	l.dirDurable = true
	return nil
}

// reopen goes on writing the newest segment, cut after its last newline. When it cannot be, the segment stays
// closed (a reader never reads a last line without its newline) and the next Record starts a new one.
func (l *Ledger) reopen() {
	cur := l.segs[len(l.segs)-1]
	f, err := l.fsys.OpenFile(l.path(cur.id), os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	size, err := cutTornLine(f, cur.size)
	if err != nil {
		f.Close()
		return
	}
	l.segs = l.segs[:len(l.segs)-1]
	l.f, l.id, l.size, l.last = f, cur.id, size, cur.last
	l.total -= cur.size - size
}

// cutTornLine truncates a segment after its last newline.
func cutTornLine(f vfs.File, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	tail := make([]byte, min(size, tailLen))
	if _, err := f.ReadAt(tail, size-int64(len(tail))); err != nil {
		return 0, err
	}
	if tail[len(tail)-1] == '\n' {
		return size, nil
	}
	keep := size - int64(len(tail)) + int64(bytes.LastIndexByte(tail, '\n')+1)
	if err := f.Truncate(keep); err != nil {
		return 0, err
	}
	return keep, f.Datasync()
}

func (l *Ledger) path(id uint64) string { return segmentPath(l.dir, id) }

func segmentPath(dir string, id uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x%s", id, suffix))
}

// roll closes the segment being written, if any, and starts a new one; the caller holds mu. A segment that
// could not be made durable is not used, and the next one takes the next id.
func (l *Ledger) roll() error {
	if err := l.makeDir(); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	id := l.next
	l.next++
	f, err := l.fsys.OpenFile(l.path(id), os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if err := l.fsys.SyncDir(l.dir); err != nil {
		f.Close()
		l.fsys.Remove(l.path(id)) // empty: readers would skip it anyway
		return fmt.Errorf("ledger: %w", err)
	}
	if l.f != nil {
		l.segs = append(l.segs, segment{id: l.id, size: l.size, last: l.last})
		l.f.Close()
	}
	l.f, l.id, l.size = f, id, 0
	return nil
}

// Record appends entries, stamped with the clock (never before Options.Floor), and returns once they are
// durable: with the lines of the Records under way at the same time, in one write and one fdatasync. With
// ErrOverflow the entries are recorded, but older ones no digest covers yet had to be deleted. Any other error
// means they are not known to be recorded: the caller records them again.
func (l *Ledger) Record(entries ...Entry) error {
	if len(entries) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now().UTC()
	if l.opt.Floor != nil {
		if floor := l.opt.Floor(); now.Before(floor) {
			now = floor.UTC()
		}
	}
	r := &request{at: now}
	for i := range entries {
		entries[i].Time = now
		data, err := json.Marshal(&entries[i])
		if err != nil {
			return fmt.Errorf("ledger: %s: %w", entries[i].Key, err)
		}
		r.line = append(append(r.line, data...), '\n')
	}
	l.queue = append(l.queue, r)
	l.queued++
	for !r.done {
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.commit()
	}
	return r.err
}

// commit writes the oldest lines queued that go into one segment, in one write and one fdatasync, and settles
// their Records with the outcome; the caller holds mu, which commit drops while it writes and syncs, so that
// more Records can queue meanwhile. A segment the first line would take past the size limit is rolled first.
func (l *Ledger) commit() {
	room := l.segSize - l.size
	roll := l.f == nil || (l.size > 0 && int64(len(l.queue[0].line)) > room)
	if roll {
		room = l.segSize
	}
	n, size := 1, int64(len(l.queue[0].line))
	for ; n < len(l.queue) && size+int64(len(l.queue[n].line)) <= room; n++ {
		size += int64(len(l.queue[n].line))
	}
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	err := l.write(batch, roll)
	for _, r := range batch {
		r.done, r.err = true, err
	}
	l.settled += uint64(len(batch))
	l.cond.Broadcast()
}

// write writes a batch's lines to the segment, after rolling it if told to; the caller holds mu.
func (l *Ledger) write(batch []*request, roll bool) error {
	if roll {
		if err := l.roll(); err != nil {
			return err
		}
	}
	l.buf = l.buf[:0]
	for _, r := range batch {
		l.buf = append(l.buf, r.line...)
	}
	f := l.f
	l.syncing = true
	l.mu.Unlock()
	n, err := f.Write(l.buf)
	if err == nil {
		err = f.Datasync()
	}
	if err == nil {
		err = named(f)
	}
	l.mu.Lock()
	l.syncing = false
	if err != nil {
		l.retire(batch, int64(n))
		return fmt.Errorf("ledger %s: %w", f.Name(), err)
	}
	l.size += int64(len(l.buf))
	l.total += int64(len(l.buf))
	l.last = batch[len(batch)-1].at
	return l.prune()
}

// named fails when f has no name left: a segment removed with its folder takes what was written to it along.
func named(f vfs.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return errors.New("the segment was deleted (with the ledger's folder?) while in use")
	}
	return nil
}

// retire closes the segment being written after the write or fdatasync of a batch (l.buf) failed, of which
// written bytes reached the file: the file is never synced again (after a failed fdatasync, a later one that
// succeeds proves nothing about what was written before), and the next Record starts a new segment. What the
// batch left is taken back if it can be; when it cannot, a partial line ends the segment, where readers skip
// it (no newline), and whole ones may stay, so that the callers' Records again list those objects twice, never
// not at all. The segment's newest entry is then taken to be the batch's newest (stamped at most a sync
// later than the newest that stayed): it keeps the segment no shorter than its entries need.
func (l *Ledger) retire(batch []*request, written int64) {
	seg := segment{id: l.id, size: l.size, last: l.last}
	if written > 0 && l.f.Truncate(l.size) != nil {
		seg.size += written
		l.total += written
		if bytes.IndexByte(l.buf[:written], '\n') >= 0 {
			seg.last = batch[len(batch)-1].at
		}
	}
	l.f.Close()
	l.f = nil
	l.segs = append(l.segs, seg)
}

// prune deletes the oldest closed segments while the ledger is over its limit.
func (l *Ledger) prune() error {
	if l.opt.Limit <= 0 {
		return nil
	}
	var dropped []segment
	for len(l.segs) > 0 && l.total > l.opt.Limit {
		old := l.segs[0]
		if l.opt.KeepFrom != nil && !old.last.Before(l.opt.KeepFrom()) {
			if l.total <= 2*l.opt.Limit {
				break
			}
			dropped = append(dropped, old)
		}
		if err := l.fsys.Remove(l.path(old.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ledger: %w", err)
		}
		l.segs = l.segs[1:]
		l.total -= old.size
	}
	if len(dropped) > 0 {
		return fmt.Errorf("%w (%d bytes): deleted %d segments holding entries up to %s that no digest lists yet; raise the limit or fix what keeps digests from being written",
			ErrOverflow, 2*l.opt.Limit, len(dropped), dropped[len(dropped)-1].last.Format(time.RFC3339))
	}
	return nil
}

// Usage is what the ledger's segments weigh.
func (l *Ledger) Usage() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Close closes the segment being written, once the Records under way have finished.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.syncing || len(l.queue) > 0 {
		l.cond.Wait()
	}
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.segs = append(l.segs, segment{id: l.id, size: l.size, last: l.last})
	l.f = nil
	return err
}
