package ledger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
)

// Filter selects entries; zero fields select everything.
type Filter struct {
	Org      string    // compared case-insensitively
	From, To time.Time // From <= Time < To
}

func (f Filter) match(e *Entry) bool {
	return (f.Org == "" || strings.EqualFold(f.Org, e.Org)) &&
		(f.From.IsZero() || !e.Time.Before(f.From)) && (f.To.IsZero() || e.Time.Before(f.To))
}

// Entries reads the ledger like Read, after every Record under way has finished: once f.To has passed on the
// ledger's clock (and its floor), every entry before it is read.
func (l *Ledger) Entries(f Filter) iter.Seq2[Entry, error] {
	l.mu.Lock() // waits for the Records under way, whose entries are stamped before f.To
	if upTo := l.queued; l.settled < upTo {
		if l.entriesWait != nil {
			l.entriesWait()
		}
		for l.settled < upTo {
			l.cond.Wait()
		}
	}
	l.mu.Unlock()
	return Read(l.fsys, l.dir, f)
}

// Read reads the delivery ledger in dir, oldest first, without its lock: it is safe while the plugin runs. A
// line being written (no newline yet) is not read; a line that cannot be read is reported as an error and the
// reading goes on.
func Read(fsys vfs.FS, dir string, f Filter) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		ids, err := segments(fsys, dir)
		if err != nil {
			yield(Entry{}, err)
			return
		}
		for i, id := range ids {
			path := segmentPath(dir, id)
			if i < len(ids)-1 && !f.From.IsZero() {
				if last := lastTime(fsys, path); !last.IsZero() && last.Before(f.From) {
					continue
				}
			}
			if !readSegment(fsys, path, f, yield) {
				return
			}
		}
	}
}

// readSegment yields a segment's entries that match; false when the caller stopped.
func readSegment(fsys vfs.FS, path string, f Filter, yield func(Entry, error) bool) bool {
	file, err := fsys.OpenFile(path, 0, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return true // deleted by the limit meanwhile
	}
	if err != nil {
		return yield(Entry{}, fmt.Errorf("ledger: %w", err))
	}
	defer file.Close()
	r := bufio.NewReaderSize(file, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return true
		}
		if err != nil {
			return yield(Entry{}, fmt.Errorf("ledger %s: %w", path, err))
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			if !yield(Entry{}, fmt.Errorf("ledger %s line %d: %w", path, n, err)) {
				return false
			}
			continue
		}
		if f.match(&e) && !yield(e, nil) {
			return false
		}
	}
}

// segments lists the segment ids in dir, oldest first.
func segments(fsys vfs.FS, dir string) ([]uint64, error) {
	entries, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), suffix)
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
func lastTime(fsys vfs.FS, path string) time.Time {
	f, err := fsys.OpenFile(path, 0, 0)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}
	}
	tail := make([]byte, min(fi.Size(), tailLen))
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
