package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wiv/out_wivaudit/vfs"
	"github.com/wiv/out_wivaudit/wal"
)

// Before the write-ahead log, each stream had its own log files in logs/ (records framed one by one, the
// file named org~kind~ms.log), and state/ kept each stream's last key millisecond. Such a store is taken
// over as it is: its logs are sealed like closed batches, then the two folders go.
const (
	legacyLogs  = "logs"
	legacyState = "state"
	legacyExt   = ".log"
)

// recoverLegacy queues the legacy logs not yet sealed and reads the legacy key milliseconds.
func (s *Store) recoverLegacy(rc *recovered, sealed map[string]bool) error {
	logs, state := filepath.Join(s.dir, legacyLogs), filepath.Join(s.dir, legacyState)
	entries, err := s.fs.ReadDir(state)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		org, kind, ok := strings.Cut(e.Name(), sep)
		data, err := vfs.ReadFile(s.fs, filepath.Join(state, e.Name()))
		ms, perr := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if !ok || err != nil || perr != nil || !safeName(org) || !safeName(kind) {
			continue
		}
		ss := s.streamLocked(Stream{org, kind})
		ss.last = max(ss.last, ms)
	}
	entries, err = s.fs.ReadDir(logs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(logs, e.Name())
		if sealed[e.Name()] {
			s.fs.Remove(path)
			continue
		}
		p, ok := parseLegacyName(e.Name())
		fi, err := e.Info()
		if !ok || err != nil {
			continue
		}
		p.legacy, p.LastRecord, p.firstAt = path, fi.ModTime().UnixMilli(), p.Opened
		s.closed = append(s.closed, p)
		s.use.used += fi.Size()
		ss := s.streamLocked(p.Stream)
		ss.batches++
		ss.last = max(ss.last, p.Opened)
	}
	// A removal that a power cut takes back is made again at the next start.
	s.fs.SyncDir(logs)
	return nil
}

func parseLegacyName(name string) (*Pending, bool) {
	base, ok := strings.CutSuffix(name, legacyExt)
	parts := strings.Split(base, sep)
	if !ok || len(parts) != 3 {
		return nil, false
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || !safeName(parts[0]) || !safeName(parts[1]) {
		return nil, false
	}
	return &Pending{Stream: Stream{parts[0], parts[1]}, Opened: ms}, true
}

// sealLegacy seals a legacy log: its intact records in order, damaged regions and a torn tail reported.
func (s *Store) sealLegacy(p *Pending, key func(ms int64) string, destination string, encode Encoder) (*Batch, SealReport, error) {
	var rep SealReport
	data, err := vfs.ReadFile(s.fs, p.legacy)
	if err != nil {
		return nil, rep, fmt.Errorf("seal %s: %w", p.legacy, err)
	}
	records, jsonLen := 0, int64(0)
	fragments := func(yield func([]byte) bool) {
		records, jsonLen, rep.Damaged = 0, 0, nil
		stop := false
		rep.TornTail = wal.ScanFrames(data, func(_ int, r []byte) {
			if !stop {
				records++
				jsonLen += int64(len(r))
				stop = !yield(r)
			}
		}, func(bad []byte) { rep.Damaged = append(rep.Damaged, append([]byte(nil), bad...)) })
	}
	b, err := s.commitBatch(p, key, destination, encode, fragments, func() (int, int64, error) { return records, jsonLen, nil })
	if err != nil {
		return nil, rep, fmt.Errorf("seal %s: %w", p.legacy, err)
	}
	// Committed: whatever fails from here on must not have the log sealed again (a restart removes a log
	// that a manifest names).
	err = s.fs.Remove(p.legacy)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		s.use.add(-int64(len(data)))
		err = s.fs.SyncDir(filepath.Dir(p.legacy))
	}
	if b == nil {
		s.mu.Lock()
		s.batchGoneLocked(p.Stream)
		s.mu.Unlock()
	}
	s.removeLegacyFolders()
	if err != nil {
		rep.Unreleased = fmt.Errorf("sealed %s but cannot remove it: %w", p.legacy, err)
	}
	return b, rep, nil
}

// removeLegacyFolders removes the legacy folders once their last log is sealed.
func (s *Store) removeLegacyFolders() {
	logs := filepath.Join(s.dir, legacyLogs)
	if entries, err := s.fs.ReadDir(logs); err == nil && len(entries) == 0 {
		s.fs.Remove(logs)
		s.fs.RemoveAll(filepath.Join(s.dir, legacyState))
	}
}
