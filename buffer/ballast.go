package buffer

import (
	"os"
	"path/filepath"
)

// Appends leave a reserve of the free space to delivery (see disk.go), but something else on the file system
// can take it. Then delivery itself, which writes a little before it frees much (a ledger line per object,
// batch and "sealed" entries in the log), would find no room, and a full disk would never drain. So the store
// keeps a file of zeros, the ballast, that it deletes when such a write finds no room: what it held is
// enough for the writes that let the oldest segments go. Tidy makes it again once the space is back.
const ballastFile = "delivery-reserve"

// ballastSize is the ballast for segments of seg bytes: half a segment, from 64 KiB to 1 MiB. Delivering a
// batch writes a ledger line (about 500 bytes) and a "sealed" entry: 1 MiB is about 2,000 objects' worth, and
// each segment let go gives room back.
func ballastSize(seg int64) int64 { return min(1<<20, max(64<<10, seg/2)) }

// keepBallast makes the ballast when it is missing and the file system has room for it and twice more, on
// top of the appends' reserve. It reports whether the ballast is there.
func (s *Store) keepBallast() bool {
	path := filepath.Join(s.dir, ballastFile)
	if _, err := s.fs.Stat(path); err == nil {
		return true
	}
	size := ballastSize(s.log.SegmentSize())
	s.use.mu.Lock()
	var free int64
	ok := s.use.disk.known // a free space that cannot be read is not read again for this
	if ok {
		free, ok = s.freeLocked(3 * size)
	}
	keep := s.use.disk.keep
	s.use.mu.Unlock()
	if !ok || free < keep+3*size {
		return false
	}
	f, err := s.fs.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false
	}
	zeros := make([]byte, 64<<10)
	for n := int64(0); n < size && err == nil; n += int64(len(zeros)) {
		_, err = f.Write(zeros)
	}
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	if err != nil {
		s.fs.Remove(path)
		return false
	}
	return true
}

// MakeRoom deletes the ballast when err says that the disk (or the quota) is full, and reports whether it
// did: the write that failed may then be tried again at once.
func (s *Store) MakeRoom(err error) bool {
	if !noSpace(err) {
		return false
	}
	path := filepath.Join(s.dir, ballastFile)
	if err := s.fs.Remove(path); err != nil {
		return false
	}
	// A folder that cannot be synced does not keep the room from being used now.
	s.fs.SyncDir(s.dir)
	return true
}

// appendEntries appends delivery's own entries (batch and "sealed" entries) to the log and counts what they
// take; a full disk gives up the ballast for them, once.
func (s *Store) appendEntries(entries [][]byte) error {
	written, err := s.log.Append(entries, nil)
	if err != nil && s.MakeRoom(err) {
		s.use.add(written)
		written, err = s.log.Append(entries, nil)
	}
	s.use.add(written)
	return err
}
