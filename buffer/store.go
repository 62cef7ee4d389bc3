// Package buffer is the durable disk store: one append-only log per (organisation, kind) stream, and sealed
// batches (an object file with its manifest) waiting for upload. Everything an append acknowledged survives a
// crash of the process until the batch that holds it is removed after its upload.
package buffer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Stream identifies one (organisation, kind) stream.
type Stream struct {
	Org, Kind string
}

func (s Stream) String() string { return s.Org + "/" + s.Kind }

// Log is a closed log waiting to be sealed.
type Log struct {
	Stream
	Opened int64 // unix milliseconds of its first record; unique and increasing per stream
	path   string
}

// Manifest describes a sealed batch. It is written atomically (temporary file, fsync, rename, fsync of the
// folder) and read back on every start.
type Manifest struct {
	Key         string    `json:"key"`
	KeyMs       int64     `json:"key_ms"` // the millisecond in Key; starts as Opened, moves on after a 412
	Org         string    `json:"org_id"`
	Kind        string    `json:"kind"`
	Opened      int64     `json:"opened_ms"`      // arrival of the first record, unix ms
	LastRecord  int64     `json:"last_record_ms"` // arrival of the last record, unix ms
	Records     int       `json:"records"`
	JSONBytes   int64     `json:"json_bytes"`
	ObjectBytes int64     `json:"object_bytes"`
	ContentMD5  string    `json:"content_md5"`
	SealedAt    time.Time `json:"sealed_at"`
	Attempts    int       `json:"attempts"`
	SourceLog   string    `json:"source_log"`
	// Destination is the caller's name for where the batch goes, fixed at seal time.
	Destination string `json:"destination,omitempty"`
}

// Batch is a sealed upload unit.
type Batch struct {
	Manifest
	object, manifest string
}

// Stream is the batch's (organisation, kind).
func (b *Batch) Stream() Stream { return Stream{b.Org, b.Kind} }

// Files are the batch's object and manifest paths.
func (b *Batch) Files() (object, manifest string) { return b.object, b.manifest }

// SealReport says what sealing found besides intact records.
type SealReport struct {
	Damaged  [][]byte // damaged regions in the middle of the log
	TornTail int      // bytes of an interrupted, unacknowledged append at the end
}

// Options configure a Store.
type Options struct {
	MaxLog          int64 // a log is rotated before it would grow past this
	Limit           int64 // logs and batches together may not exceed this; 0: no limit
	QuarantineLimit int64 // the quarantine folder may not exceed this
	DeadLetterLimit int64 // the dead-letter file may not grow past this; 0: no limit
	Now             func() time.Time
	// KeyClock gives the milliseconds of new logs (and so of keys); Now when nil. Tests freeze it to force
	// two processes onto the same keys.
	KeyClock func() time.Time
}

// ErrQuarantineFull means the quarantine folder has no room for a batch.
var ErrQuarantineFull = errors.New("Quarantine_Limit_Size reached")

// ErrDeadLetterFull means the dead-letter file has no room for the lines.
var ErrDeadLetterFull = errors.New("Dead_Letter_Limit_Size reached")

// Store is safe for concurrent use.
type Store struct {
	dir, logs, batches, state, quarantine string
	opt                                   Options
	lock                                  *os.File

	used, quarantined atomic.Int64
	reserved          atomic.Int64 // room claimed by appends under way

	mu      sync.Mutex
	streams map[Stream]*stream
	last    map[Stream]int64
	closed  []*Log

	deadMu sync.Mutex
}

type stream struct {
	st   Stream
	mu   sync.Mutex
	gone bool // removed from the store's map; look it up again
	log  *Log
	size int64
}

const (
	logSuffix      = ".log"
	objectSuffix   = ".json.gz"
	manifestSuffix = ".manifest.json"
	tmpSuffix      = ".tmp"
	sep            = "~"
	// DeadLetterFile holds rejected records, one JSON line each.
	DeadLetterFile = "deadletter.jsonl"
)

// Open opens (creating if needed) the store in dir, takes its exclusive lock and recovers what a previous run
// left: closed logs to seal and sealed batches to upload. Recovered data counts towards the limit at once.
func Open(dir string, opt Options) (*Store, []*Batch, error) {
	if opt.KeyClock == nil {
		opt.KeyClock = opt.Now
	}
	s := &Store{
		dir: dir, logs: filepath.Join(dir, "logs"), batches: filepath.Join(dir, "batches"),
		state: filepath.Join(dir, "state"), quarantine: filepath.Join(dir, "quarantine"), opt: opt,
		streams: map[Stream]*stream{}, last: map[Stream]int64{},
	}
	for _, d := range []string{dir, s.logs, s.batches, s.state, s.quarantine} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := s.takeLock(); err != nil {
		return nil, nil, err
	}
	batches, err := s.recover()
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, batches, nil
}

func (s *Store) takeLock() error {
	path := filepath.Join(s.dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := io.ReadAll(f)
		f.Close()
		return fmt.Errorf("%s is in use by another wivaudit instance (pid %s); give every [OUTPUT] its own Store_Dir",
			s.dir, strings.TrimSpace(string(owner)))
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	s.lock = f
	return nil
}

// Close releases the store's lock. Appends must have stopped.
func (s *Store) Close() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

func (s *Store) recover() ([]*Batch, error) {
	if err := s.recoverState(); err != nil {
		return nil, err
	}
	s.quarantined.Store(dirSize(s.quarantine))
	sealedLogs := map[string]bool{}
	var batches []*Batch
	entries, err := os.ReadDir(s.batches)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(s.batches, name)
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			os.Remove(path)
		case strings.HasSuffix(name, manifestSuffix):
			b, err := readBatch(path)
			if err != nil {
				return nil, fmt.Errorf("recover batch: %w", err)
			}
			batches = append(batches, b)
			sealedLogs[b.SourceLog] = true
			s.bumpLast(b.Stream(), max(b.Opened, b.KeyMs))
			s.used.Add(b.ObjectBytes)
		}
	}
	for _, e := range entries {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, objectSuffix); ok {
			if _, err := os.Stat(filepath.Join(s.batches, base+manifestSuffix)); errors.Is(err, os.ErrNotExist) {
				// Sealing stopped before its manifest was written; the log still holds the records.
				os.Remove(filepath.Join(s.batches, name))
			}
		}
	}
	entries, err = os.ReadDir(s.logs)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if sealedLogs[name] {
			os.Remove(filepath.Join(s.logs, name))
			continue
		}
		l, ok := parseLogName(name)
		if !ok {
			continue
		}
		l.path = filepath.Join(s.logs, name)
		s.closed = append(s.closed, l)
		s.bumpLast(l.Stream, l.Opened)
		if fi, err := e.Info(); err == nil {
			s.used.Add(fi.Size())
		}
	}
	return batches, syncDir(s.logs)
}

// recoverState reads the last millisecond used per stream, kept across restarts so that keys never repeat.
func (s *Store) recoverState() error {
	entries, err := os.ReadDir(s.state)
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(s.state, e.Name())
		org, kind, ok := strings.Cut(e.Name(), sep)
		if strings.HasSuffix(e.Name(), tmpSuffix) || !ok {
			os.Remove(path)
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		ms, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		s.bumpLast(Stream{org, kind}, ms)
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

func readBatch(path string) (*Batch, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b := &Batch{manifest: path, object: strings.TrimSuffix(path, manifestSuffix) + objectSuffix}
	if err := json.Unmarshal(data, &b.Manifest); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if b.KeyMs == 0 {
		b.KeyMs = b.Opened
	}
	if _, err := os.Stat(b.object); err != nil {
		return nil, fmt.Errorf("%s has no object: %w", path, err)
	}
	return b, nil
}

func (s *Store) bumpLast(st Stream, ms int64) {
	if ms > s.last[st] {
		s.last[st] = ms
	}
}

func baseName(st Stream, ms int64) string {
	return st.Org + sep + st.Kind + sep + strconv.FormatInt(ms, 10)
}

func parseLogName(name string) (*Log, bool) {
	base, ok := strings.CutSuffix(name, logSuffix)
	parts := strings.Split(base, sep)
	if !ok || len(parts) != 3 {
		return nil, false
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || !safeName(parts[0]) || !safeName(parts[1]) {
		return nil, false
	}
	return &Log{Stream: Stream{parts[0], parts[1]}, Opened: ms}, true
}

// safeName keeps stream names usable as parts of a file name. Callers validate them more strictly.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= 128 &&
		!strings.ContainsAny(s, sep+"/\\\x00") && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 })
}

// Records are one stream's records, for AppendAll.
type Records struct {
	Stream
	Records [][]byte
}

// Append writes records to the stream's current log and syncs it; when it returns nil, the records survive a
// crash. Callers that respect the limit Reserve the room first.
func (s *Store) Append(st Stream, records [][]byte) error {
	return s.AppendAll([]Records{{st, records}})
}

// AppendAll keeps at most maxOpenLogs logs open, and runs at most maxParallelSyncs fsyncs at once.
const (
	maxOpenLogs      = 64
	maxParallelSyncs = 16
)

// AppendAll writes each stream's records to its current log and syncs the logs it wrote, a window of them at
// a time and concurrently within it so that the filesystem can commit them together, then syncs the logs
// folder once when a log was created. When it returns nil, all the records survive a crash.
func (s *Store) AppendAll(batch []Records) error {
	created := false
	for len(batch) > 0 {
		window := batch[:min(len(batch), maxOpenLogs)]
		batch = batch[len(window):]
		newLog, err := s.appendWindow(window)
		if err != nil {
			return err
		}
		created = created || newLog
	}
	if created {
		if err := syncDir(s.logs); err != nil {
			return fmt.Errorf("buffer: %w", err)
		}
	}
	return nil
}

func (s *Store) appendWindow(window []Records) (bool, error) {
	files := make([]*os.File, 0, len(window))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	created := false
	for _, r := range window {
		if !safeName(r.Org) || !safeName(r.Kind) {
			return false, fmt.Errorf("buffer %s: unsafe stream name", r.Stream)
		}
		var frames []byte
		for _, rec := range r.Records {
			frames = appendFrame(frames, rec)
		}
		f, newLog, err := s.write(r.Stream, frames)
		if err != nil {
			return false, fmt.Errorf("buffer %s: %w", r.Stream, err)
		}
		files = append(files, f)
		created = created || newLog
	}
	return created, syncAll(files)
}

func syncAll(files []*os.File) error {
	errs := make(chan error, len(files))
	slots := make(chan struct{}, maxParallelSyncs)
	var wg sync.WaitGroup
	for _, f := range files {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			if err := f.Sync(); err != nil {
				errs <- fmt.Errorf("buffer: sync %s: %w", filepath.Base(f.Name()), err)
			}
			<-slots
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// write appends frames to the stream's current log, creating one if needed, and returns the log still open
// and not yet synced.
func (s *Store) write(st Stream, frames []byte) (*os.File, bool, error) {
	for {
		ss := s.stream(st)
		ss.mu.Lock()
		if ss.gone {
			ss.mu.Unlock()
			continue
		}
		f, created, err := s.writeLocked(ss, st, frames)
		ss.mu.Unlock()
		return f, created, err
	}
}

func (s *Store) stream(st Stream) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.streams[st]
	if ss == nil {
		ss = &stream{st: st}
		s.streams[st] = ss
	}
	return ss
}

func (s *Store) writeLocked(ss *stream, st Stream, frames []byte) (*os.File, bool, error) {
	if ss.log != nil && ss.size > 0 && ss.size+int64(len(frames)) > s.opt.MaxLog {
		s.rotateLocked(ss)
	}
	created := false
	if ss.log == nil {
		l, err := s.createLog(st)
		if err != nil {
			return nil, false, err
		}
		ss.log, ss.size, created = l, 0, true
	}
	f, err := os.OpenFile(ss.log.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, created, err
	}
	if _, err := f.Write(frames); err != nil {
		// Leave no partial frame behind, and start the next append on a fresh log.
		f.Truncate(ss.size)
		f.Close()
		s.rotateLocked(ss)
		return nil, created, err
	}
	ss.size += int64(len(frames))
	s.used.Add(int64(len(frames)))
	return f, created, nil
}

// NextMs reserves the next free millisecond of a stream: now, or one past the last one used.
func (s *Store) NextMs(st Stream) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := max(s.opt.KeyClock().UnixMilli(), s.last[st]+1)
	s.last[st] = ms
	return ms
}

func (s *Store) createLog(st Stream) (*Log, error) {
	ms := s.NextMs(st)
	l := &Log{Stream: st, Opened: ms, path: filepath.Join(s.logs, baseName(st, ms)+logSuffix)}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return l, f.Close() // the folder is synced by AppendAll, once for all the logs it created
}

// rotateLocked closes the stream's current log; it goes to the sealing queue. The caller holds ss.mu.
func (s *Store) rotateLocked(ss *stream) {
	if ss.log == nil {
		return
	}
	s.mu.Lock()
	if ss.size > 0 {
		s.closed = append(s.closed, ss.log)
	} else {
		os.Remove(ss.log.path)
	}
	s.mu.Unlock()
	ss.log, ss.size = nil, 0
}

// Rotate closes every current log whose first record is older than cutoff (all of them for a zero cutoff)
// and forgets idle streams, so memory follows the active streams only.
func (s *Store) Rotate(cutoff time.Time) {
	s.mu.Lock()
	all := make([]*stream, 0, len(s.streams))
	for _, ss := range s.streams {
		all = append(all, ss)
	}
	nowMs := s.opt.KeyClock().UnixMilli()
	for st, ms := range s.last {
		if ms < nowMs {
			delete(s.last, st)
		}
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.mu.Lock()
		if ss.log == nil || cutoff.IsZero() || ss.log.Opened <= cutoff.UnixMilli() {
			s.rotateLocked(ss)
			s.mu.Lock()
			if s.streams[ss.st] == ss {
				delete(s.streams, ss.st)
			}
			s.mu.Unlock()
			ss.gone = true
		}
		ss.mu.Unlock()
	}
}

// OldestLog returns when the oldest log not yet sealed was opened, or ok=false when there is none.
func (s *Store) OldestLog() (ms int64, ok bool) {
	older := func(l *Log) {
		if l != nil && (!ok || l.Opened < ms) {
			ms, ok = l.Opened, true
		}
	}
	s.mu.Lock()
	for _, l := range s.closed {
		older(l)
	}
	all := make([]*stream, 0, len(s.streams))
	for _, ss := range s.streams {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all { // a stream's lock comes before the store's, so it is taken on its own
		ss.mu.Lock()
		older(ss.log)
		ss.mu.Unlock()
	}
	return ms, ok
}

// PutBack returns a log that could not be sealed to the sealing queue.
func (s *Store) PutBack(l *Log) {
	s.mu.Lock()
	s.closed = append(s.closed, l)
	s.mu.Unlock()
}

// TakeClosed returns the logs waiting to be sealed, oldest first per stream, and forgets them.
func (s *Store) TakeClosed() []*Log {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.closed
	s.closed = nil
	return c
}

// Encoder writes the object for a batch from its records.
type Encoder func(w io.Writer, records iter.Seq[[]byte]) error

// Seal turns a closed log into a sealed batch under key, for destination: the object and its manifest are
// written, synced and renamed into place before the log is removed, so a crash at any point leaves either the
// log or the batch.
func (s *Store) Seal(l *Log, key, destination string, encode Encoder) (*Batch, SealReport, error) {
	var rep SealReport
	fail := func(err error) (*Batch, SealReport, error) {
		return nil, rep, fmt.Errorf("seal %s: %w", filepath.Base(l.path), err)
	}
	data, lastWrite, unmap, err := mapFile(l.path)
	if err != nil {
		return fail(err)
	}
	defer unmap()

	records, jsonBytes := 0, int64(0)
	rep.TornTail = scanFrames(data, func(p []byte) { records++; jsonBytes += int64(len(p)) }, func(b []byte) {
		rep.Damaged = append(rep.Damaged, append([]byte(nil), b...))
	})
	if records == 0 { // nothing intact: no batch
		return nil, rep, s.removeLog(l, int64(len(data)))
	}

	base := filepath.Join(s.batches, baseName(l.Stream, l.Opened))
	b := &Batch{object: base + objectSuffix, manifest: base + manifestSuffix}
	b.Manifest = Manifest{Key: key, KeyMs: l.Opened, Org: l.Org, Kind: l.Kind, Opened: l.Opened,
		LastRecord: max(l.Opened, lastWrite.UnixMilli()), Records: records, JSONBytes: jsonBytes,
		SealedAt: s.opt.Now().UTC(), SourceLog: filepath.Base(l.path), Destination: destination}

	sum, size, err := writeSynced(b.object+tmpSuffix, func(w io.Writer) error {
		return encode(w, func(yield func([]byte) bool) {
			stop := false
			scanFrames(data, func(p []byte) {
				if !stop && !yield(p) {
					stop = true
				}
			}, func([]byte) {})
		})
	})
	if err != nil {
		os.Remove(b.object + tmpSuffix)
		return fail(err)
	}
	b.ContentMD5, b.ObjectBytes = sum, size
	// The object goes into place first: an object without a manifest is removed on the next start, while
	// the log still holds its records. The manifest's rename is the commit.
	if err := os.Rename(b.object+tmpSuffix, b.object); err != nil {
		os.Remove(b.object + tmpSuffix)
		return fail(err)
	}
	if err := s.writeManifest(b); err != nil {
		os.Remove(b.object)
		return fail(err)
	}
	s.used.Add(b.ObjectBytes)
	return b, rep, s.removeLog(l, int64(len(data)))
}

func (s *Store) removeLog(l *Log, size int64) error {
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.used.Add(-size)
	return syncDir(s.logs)
}

// writeManifest replaces the batch's manifest atomically.
func (s *Store) writeManifest(b *Batch) error {
	data, _ := json.MarshalIndent(&b.Manifest, "", "  ")
	return replaceFile(b.manifest, data)
}

// replaceFile writes path atomically: temporary file, fsync, rename, fsync of the folder.
func replaceFile(path string, data []byte) error {
	if _, _, err := writeSynced(path+tmpSuffix, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}); err != nil {
		os.Remove(path + tmpSuffix)
		return err
	}
	if err := os.Rename(path+tmpSuffix, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// Rekey gives a batch a new key, after S3 said the old one exists, and persists it with its millisecond.
func (s *Store) Rekey(b *Batch, key string, ms int64) error {
	b.Key, b.KeyMs = key, ms
	if err := s.writeManifest(b); err != nil {
		return fmt.Errorf("rekey %s: %w", key, err)
	}
	return s.saveLast(b.Stream(), ms)
}

// SaveAttempt records one more failed upload attempt in the batch's manifest.
func (s *Store) SaveAttempt(b *Batch) error {
	b.Attempts++
	return s.writeManifest(b)
}

// saveLast persists the last millisecond a stream used, so that a restart never reuses it.
func (s *Store) saveLast(st Stream, ms int64) error {
	s.mu.Lock()
	if ms > s.last[st] {
		s.last[st] = ms
	}
	s.mu.Unlock()
	path := filepath.Join(s.state, st.Org+sep+st.Kind)
	if old, err := os.ReadFile(path); err == nil {
		if prev, err := strconv.ParseInt(strings.TrimSpace(string(old)), 10, 64); err == nil && prev >= ms {
			return nil
		}
	}
	return replaceFile(path, []byte(strconv.FormatInt(ms, 10)+"\n"))
}

// FrameOverhead is what framing adds to each record on disk.
const FrameOverhead = headerLen

// Reserve claims room for n bytes of frames under the limit, all or nothing, so that concurrent appends cannot
// together overshoot it. The caller appends, then releases the claim with Release(n).
func (s *Store) Reserve(n int64) bool {
	for {
		r := s.reserved.Load()
		if s.opt.Limit > 0 && s.used.Load()+r+n > s.opt.Limit {
			return false
		}
		if s.reserved.CompareAndSwap(r, r+n) {
			return true
		}
	}
}

// Release gives back room claimed with Reserve.
func (s *Store) Release(n int64) { s.reserved.Add(-n) }

// Usage returns the bytes held in logs and batches, and the limit (0: none).
func (s *Store) Usage() (used, limit int64) { return s.used.Load(), s.opt.Limit }

// OpenObject opens the batch's object for reading.
func (b *Batch) OpenObject() (*os.File, error) { return os.Open(b.object) }

// Remove deletes a batch once it is delivered, after persisting its millisecond as the stream's last. The
// manifest goes first: an object without a manifest is cleaned up on the next start.
func (s *Store) Remove(b *Batch) error {
	if err := s.saveLast(b.Stream(), b.KeyMs); err != nil {
		return err
	}
	if err := os.Remove(b.manifest); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	os.Remove(b.object)
	s.used.Add(-b.ObjectBytes)
	return syncDir(s.batches)
}

// Quarantine moves a batch that could not be delivered for too long out of the upload path, into the
// quarantine folder, within its own size limit. Moving its two files back into batches/ replays it.
func (s *Store) Quarantine(b *Batch) error {
	if s.quarantined.Load()+b.ObjectBytes > s.opt.QuarantineLimit {
		return fmt.Errorf("%w (%d of %d bytes used)", ErrQuarantineFull, s.quarantined.Load(), s.opt.QuarantineLimit)
	}
	object := filepath.Join(s.quarantine, filepath.Base(b.object))
	manifest := filepath.Join(s.quarantine, filepath.Base(b.manifest))
	if err := os.Rename(b.object, object); err != nil {
		return err
	}
	if err := os.Rename(b.manifest, manifest); err != nil {
		return err
	}
	if err := syncDir(s.quarantine); err != nil {
		return err
	}
	b.object, b.manifest = object, manifest
	s.used.Add(-b.ObjectBytes)
	s.quarantined.Add(b.ObjectBytes)
	return syncDir(s.batches)
}

// ReadFile reads a small file the caller keeps in the store's folder (nil when it does not exist).
func (s *Store) ReadFile(name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, filepath.Base(name)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// WriteFile replaces a small file in the store's folder atomically.
func (s *Store) WriteFile(name string, data []byte) error {
	return replaceFile(filepath.Join(s.dir, filepath.Base(name)), data)
}

// QuarantineDir is where quarantined batches are kept.
func (s *Store) QuarantineDir() string { return s.quarantine }

// DeadLetter appends newline-terminated lines to the dead-letter file and syncs it. When they would take the
// file past its limit it appends the whole lines that fit and returns ErrDeadLetterFull; kept is how many
// bytes it appended. The size is the file's own, so an operator who moves the file away makes room.
func (s *Store) DeadLetter(lines []byte) (kept int, err error) {
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	f, err := os.OpenFile(s.DeadLetterPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
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

func writeSynced(path string, fill func(io.Writer) error) (md5sum string, size int64, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := newMD5Counter(f)
	if err := fill(h); err != nil {
		return "", 0, err
	}
	if err := f.Sync(); err != nil {
		return "", 0, err
	}
	return h.sum(), h.n, f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// mapFile maps a log read-only and returns its contents and the time of its last write.
func mapFile(path string) ([]byte, time.Time, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	if st.Size() == 0 {
		return nil, st.ModTime(), func() {}, nil
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	return data, st.ModTime(), func() { syscall.Munmap(data) }, nil
}
