package buffer

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// DeadLetter appends newline-terminated lines to the dead-letter file and syncs it. When they would take the
// file past its limit it appends the whole lines that fit and returns ErrDeadLetterFull; kept is how many
// bytes it appended. The size is the file's own, so an operator who moves the file away makes room. When the
// write or the sync fails, the file is cut back to where it was, so that the retry keeps the lines once; a
// line left without its end (a crash, or a cut that failed) is ended before the next ones.
func (s *Store) DeadLetter(lines []byte) (kept int, err error) {
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	f, err := s.fs.OpenFile(s.DeadLetterPath(), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	var end []byte
	if size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil && err != io.EOF {
			return 0, err
		}
		if last[0] != '\n' {
			end = []byte{'\n'}
		}
	}
	var full error
	if limit := s.opt.DeadLetterLimit; limit > 0 && size+int64(len(end)+len(lines)) > limit {
		full = fmt.Errorf("%w: %d of %d bytes used, %d more needed", ErrDeadLetterFull, size, limit, len(lines))
		room := max(0, limit-size-int64(len(end)))
		lines = lines[:bytes.LastIndexByte(lines[:int(room)], '\n')+1]
	}
	if len(lines) == 0 {
		return 0, full
	}
	if _, err := f.Write(append(end, lines...)); err != nil {
		f.Truncate(size)
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Truncate(size)
		return 0, err
	}
	return len(lines), full
}

// DeadLetterPath is where rejected records are kept.
func (s *Store) DeadLetterPath() string { return filepath.Join(s.dir, DeadLetterFile) }
