package buffer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wiv/out_wivaudit/record"
)

// The delivery ledger is the store's durable account of what it put into customers' buckets: one JSON line per
// object in segment files ledger/<16 hex digits>.jsonl, appended with one write and one fdatasync per Record.
//
// Its size is bounded: once the segments together pass the limit, whole segments are deleted, oldest first,
// never the one being written. A segment that still holds entries a digest has not yet covered (at or after
// LedgerOptions.KeepFrom) is kept, up to twice the limit; past that it goes anyway, and Record says so with
// ErrLedgerOverflow. So the ledger takes at most the limit on disk while digests keep up, and twice the limit
// at worst.

// LedgerEntry is one object put into a bucket.
type LedgerEntry struct {
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

// Statuses of a ledger entry.
const (
	// LedgerDelivered: S3 answered 200 to the upload.
	LedgerDelivered = "delivered"
	// LedgerUnconfirmed: S3 answered that the key exists (412) to an upload of a batch that had been tried at
	// that key before without an answer (a lost answer, or a crash): the earlier attempt may have written it,
	// or another writer did.
	LedgerUnconfirmed = "unconfirmed"
)

// ErrLedgerOverflow means the ledger deleted entries no digest covers yet, to stay within twice its limit.
var ErrLedgerOverflow = errors.New("the delivery ledger is at twice its size limit")

// LedgerOptions configure a Ledger.
type LedgerOptions struct {
	Limit int64 // what the segments may weigh together; 0: no limit
	// KeepFrom, when set, says from when entries are not yet covered by a written digest: segments holding
	// such entries are kept past the limit (up to twice it).
	KeepFrom func() time.Time
	// Floor, when set, is the earliest time an entry recorded now may be stamped with: a digest made up to it
	// lists no entry recorded after, so one stamped before it by a clock set back would be in no digest.
	Floor func() time.Time
}

const (
	ledgerFolder  = "ledger"
	ledgerSuffix  = ".jsonl"
	ledgerMaxSeg  = 16 << 20
	ledgerMinSeg  = 64 << 10
	ledgerTailLen = 16 << 10 // more than any entry: keys, events and the rest are bounded
)

// Ledger appends to the delivery ledger. It is safe for concurrent use.
type Ledger struct {
	dir     string
	now     func() time.Time
	opt     LedgerOptions
	segSize int64

	mu    sync.Mutex
	f     *os.File // the segment being written; nil after a failure it could not undo
	id    uint64
	size  int64
	last  time.Time   // of the newest entry in f
	segs  []ledgerSeg // closed segments, oldest first
	total int64
	line  []byte
}

type ledgerSeg struct {
	id   uint64
	size int64
	last time.Time
}

// OpenLedger opens the store's delivery ledger for appending, creating it if needed. A last line cut short by
// a crash (never reported as recorded) is cut off.
func (s *Store) OpenLedger(opt LedgerOptions) (*Ledger, error) {
	l := &Ledger{dir: filepath.Join(s.dir, ledgerFolder), now: s.opt.Now, opt: opt, segSize: ledgerMaxSeg}
	if opt.Limit > 0 {
		l.segSize = min(ledgerMaxSeg, max(ledgerMinSeg, opt.Limit/8))
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	ids, err := ledgerSegments(l.dir)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		fi, err := os.Stat(l.path(id))
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		l.segs = append(l.segs, ledgerSeg{id: id, size: fi.Size(), last: lastTime(l.path(id))})
		l.total += fi.Size()
	}
	if len(l.segs) == 0 {
		return l, l.roll(1)
	}
	cur := l.segs[len(l.segs)-1]
	l.segs = l.segs[:len(l.segs)-1]
	l.total -= cur.size
	f, err := os.OpenFile(l.path(cur.id), os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	size, err := cutTornLine(f, cur.size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ledger %s: %w", f.Name(), err)
	}
	l.f, l.id, l.size, l.last = f, cur.id, size, cur.last
	l.total += size
	return l, nil
}

// cutTornLine truncates a segment after its last newline.
func cutTornLine(f *os.File, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	tail := make([]byte, min(size, ledgerTailLen))
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
	return keep, syscall.Fdatasync(int(f.Fd()))
}

func (l *Ledger) path(id uint64) string {
	return filepath.Join(l.dir, fmt.Sprintf("%016x%s", id, ledgerSuffix))
}

// roll starts segment id; the caller holds mu (or is opening).
func (l *Ledger) roll(id uint64) error {
	f, err := os.OpenFile(l.path(id), os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("ledger: %w", err)
	}
	if l.f != nil {
		l.segs = append(l.segs, ledgerSeg{id: l.id, size: l.size, last: l.last})
		l.f.Close()
	}
	l.f, l.id, l.size = f, id, 0
	return nil
}

// Record appends entries, stamped with the store's clock (never before LedgerOptions.Floor), in one write and
// one fdatasync. With
// ErrLedgerOverflow the entries are recorded, but older ones no digest covers yet had to be deleted.
func (l *Ledger) Record(entries ...LedgerEntry) error {
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
	l.line = l.line[:0]
	for i := range entries {
		entries[i].Time = now
		data, err := json.Marshal(&entries[i])
		if err != nil {
			return fmt.Errorf("ledger: %s: %w", entries[i].Key, err)
		}
		l.line = append(append(l.line, data...), '\n')
	}
	if l.f == nil || (l.size > 0 && l.size+int64(len(l.line)) > l.segSize) {
		if err := l.roll(l.id + 1); err != nil {
			return err
		}
	}
	if err := l.write(); err != nil {
		return fmt.Errorf("ledger %s: %w", l.f.Name(), err)
	}
	l.size += int64(len(l.line))
	l.total += int64(len(l.line))
	l.last = now
	return l.prune()
}

// write appends l.line and syncs it; after a failure it takes back what was written, or, when it cannot, lets
// the next Record start a new segment so that no entry ever follows a partial line.
func (l *Ledger) write() error {
	_, err := l.f.Write(l.line)
	if err == nil {
		err = syscall.Fdatasync(int(l.f.Fd()))
	}
	if err != nil && l.f.Truncate(l.size) != nil {
		l.segs = append(l.segs, ledgerSeg{id: l.id, size: l.size, last: l.last})
		l.f.Close()
		l.f = nil
	}
	return err
}

// prune deletes the oldest closed segments while the ledger is over its limit.
func (l *Ledger) prune() error {
	if l.opt.Limit <= 0 {
		return nil
	}
	var dropped []ledgerSeg
	for len(l.segs) > 0 && l.total+l.size > l.opt.Limit {
		old := l.segs[0]
		if l.opt.KeepFrom != nil && !old.last.Before(l.opt.KeepFrom()) {
			if l.total+l.size <= 2*l.opt.Limit {
				break
			}
			dropped = append(dropped, old)
		}
		if err := os.Remove(l.path(old.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ledger: %w", err)
		}
		l.segs = l.segs[1:]
		l.total -= old.size
	}
	if len(dropped) > 0 {
		return fmt.Errorf("%w (%d bytes): deleted %d segments holding entries up to %s that no digest lists yet; raise the limit or fix what keeps digests from being written",
			ErrLedgerOverflow, 2*l.opt.Limit, len(dropped), dropped[len(dropped)-1].last.Format(time.RFC3339))
	}
	return nil
}

// Usage is what the ledger's segments weigh.
func (l *Ledger) Usage() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total + l.size
}

// Close closes the segment being written.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Entries reads the ledger like ReadLedger, after every Record under way has finished: once f.To has passed
// on the store's clock, every entry before it is read.
func (l *Ledger) Entries(f LedgerFilter) iter.Seq2[LedgerEntry, error] {
	l.mu.Lock() // waits for the Record under way, whose entries are stamped before f.To
	l.mu.Unlock()
	return readLedger(l.dir, f)
}

// LedgerFilter selects ledger entries; zero fields select everything.
type LedgerFilter struct {
	Org      string    // compared case-insensitively
	From, To time.Time // From <= Time < To
}

func (f LedgerFilter) match(e *LedgerEntry) bool {
	return (f.Org == "" || strings.EqualFold(f.Org, e.Org)) &&
		(f.From.IsZero() || !e.Time.Before(f.From)) && (f.To.IsZero() || e.Time.Before(f.To))
}

// ReadLedger reads the delivery ledger of the store in storeDir, oldest first, without its lock: it is safe
// while the plugin runs. A line being written (no newline yet) is not read; a line that cannot be read is
// reported as an error and the reading goes on.
func ReadLedger(storeDir string, f LedgerFilter) iter.Seq2[LedgerEntry, error] {
	return readLedger(filepath.Join(storeDir, ledgerFolder), f)
}

func readLedger(dir string, f LedgerFilter) iter.Seq2[LedgerEntry, error] {
	return func(yield func(LedgerEntry, error) bool) {
		ids, err := ledgerSegments(dir)
		if err != nil {
			yield(LedgerEntry{}, err)
			return
		}
		for i, id := range ids {
			path := filepath.Join(dir, fmt.Sprintf("%016x%s", id, ledgerSuffix))
			if i < len(ids)-1 && !f.From.IsZero() {
				if last := lastTime(path); !last.IsZero() && last.Before(f.From) {
					continue
				}
			}
			if !readSegment(path, f, yield) {
				return
			}
		}
	}
}

// readSegment yields a segment's entries that match; false when the caller stopped.
func readSegment(path string, f LedgerFilter, yield func(LedgerEntry, error) bool) bool {
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return true // deleted by the limit meanwhile
	}
	if err != nil {
		return yield(LedgerEntry{}, fmt.Errorf("ledger: %w", err))
	}
	defer file.Close()
	r := bufio.NewReaderSize(file, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return true
		}
		if err != nil {
			return yield(LedgerEntry{}, fmt.Errorf("ledger %s: %w", path, err))
		}
		var e LedgerEntry
		if err := json.Unmarshal(line, &e); err != nil {
			if !yield(LedgerEntry{}, fmt.Errorf("ledger %s line %d: %w", path, n, err)) {
				return false
			}
			continue
		}
		if f.match(&e) && !yield(e, nil) {
			return false
		}
	}
}

// ledgerSegments lists the segment ids in dir, oldest first.
func ledgerSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ledgerSuffix)
		if !ok || len(name) != 16 {
			continue
		}
		if id, err := strconv.ParseUint(name, 16, 64); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// lastTime is the time of a segment's last complete entry; zero when it has none that can be read.
func lastTime(path string) time.Time {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}
	}
	tail := make([]byte, min(fi.Size(), ledgerTailLen))
	if _, err := f.ReadAt(tail, fi.Size()-int64(len(tail))); err != nil {
		return time.Time{}
	}
	tail = tail[:bytes.LastIndexByte(tail, '\n')+1]
	lines := bytes.Split(bytes.TrimSuffix(tail, []byte("\n")), []byte("\n"))
	var e struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(lines[len(lines)-1], &e) != nil {
		return time.Time{}
	}
	return e.Time
}

// FragmentEnds is the first and last record of a fragment as Seal's encoder receives it (records joined by
// Separator; a record never holds a raw newline), for record.RefOf.
func FragmentEnds(fragment []byte) (first, last []byte) {
	first, last = fragment, fragment
	if i := bytes.Index(fragment, []byte(Separator)); i >= 0 {
		first = fragment[:i]
	}
	if i := bytes.LastIndex(fragment, []byte(Separator)); i >= 0 {
		last = fragment[i+len(Separator):]
	}
	return first, last
}
