package buffer

import (
	"fmt"
	"math"
	"time"

	"github.com/wiv/out_wivaudit/wal"
)

// runRef is where a run of one stream's records lies in the log. It is kept small (24 bytes): the index holds
// one for every (chunk, stream) pair not yet sealed, or sealed and waiting in the log.
type runRef struct {
	seg     uint64
	off     uint32 // the frame's offset in the segment, which starts before maxSegmentSize
	size    int32  // the entry's length (a chunk is far smaller than 2 GiB)
	records int32
	json    int32 // the records' bytes, separators excluded
}

func (r runRef) pos() wal.Pos { return wal.Pos{Seg: r.seg, Off: int64(r.off)} }

// stream is the index entry of one stream: its open batch (runs in log order) and the last key millisecond
// it used. It is kept while anything of the stream is on disk, so that its keys never repeat meanwhile.
type stream struct {
	runs    []runRef
	opened  int64 // the open batch's key millisecond; set when it has runs
	firstAt int64 // arrival of the open batch's first run, unix ms: its age, whatever the key clock did
	lastAt  int64 // arrival of the open batch's last run, unix ms
	json    int64
	last    int64 // the last millisecond handed out to a batch of this stream
	batches int   // closed, sealed or quarantined-pending batches of this stream not yet removed
}

// Pending is a closed batch waiting to be sealed: runs of the log, or a whole log file of the layout before
// the write-ahead log.
type Pending struct {
	Stream
	Opened     int64 // unix ms of its first record; unique per stream while anything of it is on disk
	LastRecord int64 // arrival of its last record, unix ms
	Records    int
	firstAt    int64 // arrival of its first record, unix ms
	runs       []runRef
	legacy     string // the legacy log file
	// keyMs, attempts and requeued are those of a batch that lived in the log, for its batch file (keyMs 0:
	// Opened)
	keyMs, requeued int64
	attempts        int
	// key, dest and sealedAt (unix ms) are those of a batch sealed in the log
	key, dest string
	sealedAt  int64
}

func (s *Store) streamLocked(st Stream) *stream {
	ss := s.streams[st]
	if ss == nil {
		ss = &stream{}
		s.streams[st] = ss
	}
	return ss
}

// Append writes a chunk's runs to the log with one write and one sync, shared with concurrent appends, and
// indexes them; when it returns nil the records survive a crash. It first claims the chunk's room under the
// limit: when the chunk does not fit it returns a *FullError and writes nothing. before, when not nil, runs
// once the room is claimed and before anything is written; its error refuses the chunk.
func (s *Store) Append(c *Chunk, before func() error) error {
	claimed := c.Size()
	if err := s.reserve(claimed); err != nil {
		return err
	}
	written, err := s.appendClaimed(c, before)
	s.use.commitReserved(claimed, written)
	return err
}

func (s *Store) appendClaimed(c *Chunk, before func() error) (int64, error) {
	if before != nil {
		if err := before(); err != nil {
			return 0, err
		}
	}
	if c.n == 0 {
		return 0, nil
	}
	if err := s.checkDir(); err != nil {
		return 0, err
	}
	arrival := s.opt.Now().UnixMilli()
	entries, err := c.encode(arrival)
	if err != nil {
		return 0, err
	}
	written, err := s.log.Append(entries, func(at []wal.Pos) {
		s.mu.Lock()
		for i, r := range c.runs[:c.n] {
			s.addRunLocked(r.st, runRef{seg: at[i].Seg, off: uint32(at[i].Off), size: int32(len(r.entry)),
				records: int32(r.records), json: int32(jsonBytes(r.body(), r.records))}, s.opt.KeyClock().UnixMilli(), arrival)
		}
		s.mu.Unlock()
	})
	if err != nil {
		return written, fmt.Errorf("buffer: %w", err)
	}
	return written, nil
}

// addRunLocked indexes a run that is on disk and arrived at (unix ms). A stream's open batch is closed first
// when the run would take it past MaxBatch; a batch it opens takes the key millisecond openAt, or the next
// free one.
func (s *Store) addRunLocked(st Stream, r runRef, openAt, at int64) {
	ss := s.streamLocked(st)
	if len(ss.runs) > 0 && ss.json+int64(r.json) > s.opt.MaxBatch {
		s.closeLocked(st, ss)
	}
	if len(ss.runs) == 0 {
		ss.opened, ss.firstAt = s.nextMsLocked(ss, openAt), at
	}
	ss.runs = append(ss.runs, r)
	ss.json += int64(r.json)
	ss.lastAt = max(ss.lastAt, at)
	s.refs[r.seg]++
}

// closeLocked moves a stream's open batch to the sealing queue.
func (s *Store) closeLocked(st Stream, ss *stream) {
	p := &Pending{Stream: st, Opened: ss.opened, LastRecord: ss.lastAt, firstAt: ss.firstAt, runs: ss.runs}
	for _, r := range ss.runs {
		p.Records += int(r.records)
	}
	s.closed = append(s.closed, p)
	ss.runs, ss.json, ss.lastAt = nil, 0, 0
	ss.batches++
}

// nextMsLocked hands out the stream's next key millisecond: want, but always past every millisecond it
// handed out before, whatever the clock does.
func (s *Store) nextMsLocked(ss *stream, want int64) int64 {
	ms := max(want, ss.last+1)
	ss.last = ms
	return ms
}

// NextMs reserves the next free millisecond of a stream.
func (s *Store) NextMs(st Stream) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextMsLocked(s.streamLocked(st), s.opt.KeyClock().UnixMilli())
}

// Rotate closes every open batch whose first record arrived at or before cutoff (all of them for a zero cutoff), and
// forgets streams that have nothing on disk, so that memory follows the streams with data only.
func (s *Store) Rotate(cutoff time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opt.KeyClock().UnixMilli()
	for st, ss := range s.streams {
		if len(ss.runs) > 0 && (cutoff.IsZero() || ss.firstAt <= cutoff.UnixMilli()) {
			s.closeLocked(st, ss)
		}
		if len(ss.runs) == 0 && ss.batches == 0 && ss.last < now {
			delete(s.streams, st)
		}
	}
}

// Relieve closes the open batches that hold runs in the oldest segment of the log that holds any, so that
// sealing them lets the segment go: for when the store is at its limit or its disk is full. When no segment
// before the active one holds runs, the active segment is what holds the space: the log moves on from it
// first, so that it can go too.
func (s *Store) Relieve() {
	active := s.log.Active()
	s.mu.Lock()
	oldest := s.oldestRefLocked()
	s.mu.Unlock()
	if oldest >= active {
		if rolled, err := s.log.RollIfWritten(); err != nil || !rolled {
			return
		}
		s.releaseSegments() // a segment that holds no runs at all goes at once
		active = s.log.Active()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	oldest = s.oldestRefLocked()
	if oldest >= active {
		return
	}
	for st, ss := range s.streams {
		if len(ss.runs) > 0 && ss.runs[0].seg == oldest {
			s.closeLocked(st, ss)
		}
	}
}

// TakeClosed returns the batches waiting to be sealed, oldest first per stream, and forgets them.
func (s *Store) TakeClosed() []*Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.closed
	s.closed = nil
	return c
}

// PutBack returns a batch that could not be sealed to the sealing queue.
func (s *Store) PutBack(p *Pending) {
	s.mu.Lock()
	s.closed = append(s.closed, p)
	s.mu.Unlock()
}

// PutBackFirst returns batches taken by TakeClosed and not sealed to the front of the sealing queue, in
// their order: they were closed before any closed since.
func (s *Store) PutBackFirst(ps []*Pending) {
	if len(ps) == 0 {
		return
	}
	s.mu.Lock()
	s.closed = append(ps, s.closed...)
	s.mu.Unlock()
}

// OldestPending returns when the oldest record not yet sealed arrived, or ok=false when there is none.
func (s *Store) OldestPending() (ms int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	older := func(m int64) {
		if !ok || m < ms {
			ms, ok = m, true
		}
	}
	for _, p := range s.closed {
		older(p.firstAt)
	}
	for _, ss := range s.streams {
		if len(ss.runs) > 0 {
			older(ss.firstAt)
		}
	}
	return ms, ok
}

// batchGoneLocked notes that one of a stream's batches left the disk.
func (s *Store) batchGoneLocked(st Stream) {
	if ss := s.streams[st]; ss != nil && ss.batches > 0 {
		ss.batches--
	}
}

// oldestRefLocked is the oldest segment that holds runs not yet sealed (MaxUint64: none).
func (s *Store) oldestRefLocked() uint64 {
	oldest := uint64(math.MaxUint64)
	for id := range s.refs {
		oldest = min(oldest, id)
	}
	return oldest
}

// unrefLocked lets go of a run in the log.
func (s *Store) unrefLocked(r runRef) {
	if s.refs[r.seg]--; s.refs[r.seg] == 0 {
		delete(s.refs, r.seg)
	}
}

// releaseSegments tells the log which segments it may delete: those before the oldest that holds runs not yet
// sealed. The active segment is read first: every run in an earlier one is indexed by then.
func (s *Store) releaseSegments() error {
	active := s.log.Active()
	s.mu.Lock()
	keep := min(active, s.oldestRefLocked())
	s.mu.Unlock()
	freed, err := s.log.Release(keep)
	s.use.add(-freed)
	return err
}
