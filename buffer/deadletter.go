package buffer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// DeadLetter appends newline-terminated lines to the dead-letter file and syncs it. When they would take the
// file past its limit it appends the whole lines that fit and returns ErrDeadLetterFull; kept is how many
// bytes it appended. The size is the file's own, so an operator who moves the file away makes room.
func (s *Store) DeadLetter(lines []byte) (kept int, err error) {
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	f, err := s.fs.OpenFile(s.DeadLetterPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var full error
	if limit := s.opt.DeadLetterLimit; limit > 0 {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		if fi.Size()+int64(len(lines)) > limit {
			full = fmt.Errorf("%w: %d of %d bytes used, %d more needed", ErrDeadLetterFull, fi.Size(), limit, len(lines))
			room := max(0, limit-fi.Size())
			lines = lines[:bytes.LastIndexByte(lines[:int(room)], '\n')+1]
		}
	}
	if len(lines) > 0 {
		if _, err := f.Write(lines); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return len(lines), full
}

// DeadLetterPath is where rejected records are kept.
func (s *Store) DeadLetterPath() string { return filepath.Join(s.dir, DeadLetterFile) }
