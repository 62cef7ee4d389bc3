package buffer

import (
	"errors"
	"io/fs"
	"math"
	"syscall"
)

// A full disk must be a state that ends. Delivery writes before it frees anything: sealing writes a batch's
// object and manifest while the log still holds its records, then a "sealed" entry, and only then can a
// segment go; an upload writes a ledger line (and digests their state, a held batch its manifest again)
// before its batch goes. So appends leave a reserve of the file system's free space to that work: one is
// refused (a *FullError, Disk set) when less than the reserve would be left after it, and Fluent Bit retries
// the chunk. Sealing the records of one segment writes at most about a segment (objects are compressed, and
// gzip never grows data by more than a few bytes per block), so the reserve is a segment and a quarter. A
// batch too big for the free space is sealed segment by segment (see splitOff), and segments are sized to
// the file system (diskPlan), so that sealing the oldest segment always fits, and deleting it gives room back.

// minSegmentSize is the least size a segment is cut to, for a small limit or a small file system.
const minSegmentSize = 1024

// diskPlan sizes the log's segments and the reserve for a file system that can hold capacity bytes of the
// log and batches (what they hold plus what is free; 0: unknown), from the segment size asked for. Segments
// are at most an eighth of the capacity: several fit, so that the oldest can be sealed and deleted while the
// active one fills.
func diskPlan(segment, capacity int64) (seg, reserve int64) {
	if capacity > 0 {
		segment = min(segment, max(capacity/8, minSegmentSize))
	}
	return segment, segment + segment/4
}

// disk is what the store knows of the free space of its file system; guarded by usage.mu.
type disk struct {
	keep  int64 // the reserve; 0 until the free space could be read once
	free  int64 // the last reading
	at    int64 // usage.claimed when it was taken
	known bool  // the last reading succeeded
	fails int64 // readings that failed
	first error
}

// freeLocked is the free space of the store's file system, or ok=false when it cannot be read: then nothing
// is refused for the disk, and a full disk shows as write errors, which Fluent Bit retries too. A reading
// less what appends claimed since serves until they claimed an eighth of the reserve (statfs costs as much
// as the rest of an append under group commit), and never for a refusal: the reading is taken again, as
// uploads may have freed space since. The first reading sizes the log's segments and the reserve. The caller
// holds usage.mu.
func (s *Store) freeLocked(need int64) (free int64, ok bool) {
	u, d := &s.use, &s.use.disk
	since := u.claimed - d.at
	if free := d.free - since; d.known && since < d.keep/8 && free-u.reserved-need >= d.keep {
		return free, true
	}
	free, err := s.fs.Free(s.dir)
	d.free, d.at, d.known = free, u.claimed, err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// The folder was removed: the append creates it again (checkDir).
	case err != nil:
		d.fails++
		if d.first == nil {
			d.first = err
		}
	case d.keep == 0:
		capacity := int64(math.MaxInt64)
		if free < capacity-u.used {
			capacity = free + u.used
		}
		seg, keep := diskPlan(s.opt.SegmentSize, capacity)
		s.log.SetSegmentSize(seg)
		d.keep = keep
	}
	return free, d.known
}

// DiskErrors returns how many times the free space of the store's file system could not be read, and the
// first error. Meanwhile appends are not refused for a full disk.
func (s *Store) DiskErrors() (n int64, first error) {
	s.use.mu.Lock()
	defer s.use.mu.Unlock()
	return s.use.disk.fails, s.use.disk.first
}

// noSpace tells whether err says the disk (or the user's quota) is full.
func noSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) }
