package buffer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/record"
	"github.com/wiv/out_wivaudit/vfs"
)

// Manifest describes a sealed batch. It is written atomically and read back on every start.
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
	SHA256      string    `json:"sha256,omitempty"` // base64, as x-amz-checksum-sha256; absent from older versions' manifests
	SealedAt    time.Time `json:"sealed_at"`
	Attempts    int       `json:"attempts"`
	// LogRange is the first and last run of the log the batch holds (segment, offset): recovery does not
	// gather them again. A batch sealed from a log file of the layout before the write-ahead log names that
	// file in SourceLog instead.
	LogRange  *[2][2]int64 `json:"log_range,omitempty"`
	SourceLog string       `json:"source_log,omitempty"`
	// Destination is the caller's name for where the batch goes, fixed at seal time.
	Destination string `json:"destination,omitempty"`
	// Requeued is when the batch was last put back from quarantine, unix ms: its time to quarantine runs
	// from then rather than from Opened.
	Requeued int64 `json:"requeued_ms,omitempty"`
	// FirstEvent and LastEvent are the id and created_at of the object's first and last records, for the
	// delivery ledger and digests.
	FirstEvent record.EventRef `json:"first_event"`
	LastEvent  record.EventRef `json:"last_event"`
}

// Batch is a sealed upload unit.
type Batch struct {
	Manifest
	object, manifest string
	fs               vfs.FS
	unmarked         bool     // committed, but the log does not yet say its records are sealed
	objectGone       bool     // Remove deleted the object
	leftIn           []string // quarantined, and these names in batches/ are still to be removed
	inLog            *Pending // the runs of a batch that lives in the log; nil for a batch file
}

const (
	objectSuffix   = ".json.gz"
	manifestSuffix = ".manifest.json"
)

// Stream is the batch's (organisation, kind).
func (b *Batch) Stream() Stream { return Stream{b.Org, b.Kind} }

// Files are the batch's object and manifest paths.
func (b *Batch) Files() (object, manifest string) { return b.object, b.manifest }

// OpenObject opens the batch's object for reading.
func (b *Batch) OpenObject() (vfs.File, error) { return b.fs.OpenFile(b.object, 0, 0) }

func batchBase(dir string, st Stream, ms int64) string {
	return filepath.Join(dir, st.Org+sep+st.Kind+sep+strconv.FormatInt(ms, 10))
}

// errInLog means that a batch lives in the log, where it cannot be moved: Spill it first.
var errInLog = errors.New("the batch lives in the log: spill it to a batch file first")

// errBadBatch means a batch's manifest was read, but it or its object cannot be used.
var errBadBatch = errors.New("unusable batch")

// readBatch reads a batch's manifest and checks its object. Its error is errBadBatch when the manifest does
// not parse or the object is missing or of another size, and a read error otherwise.
func readBatch(fsys vfs.FS, path string) (*Batch, error) {
	data, err := vfs.ReadFile(fsys, path)
	if err != nil {
		return nil, err
	}
	b := &Batch{manifest: path, object: strings.TrimSuffix(path, manifestSuffix) + objectSuffix, fs: fsys}
	if err := json.Unmarshal(data, &b.Manifest); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errBadBatch, path, err)
	}
	if b.KeyMs == 0 {
		b.KeyMs = b.Opened
	}
	if !safeName(b.Org) || !safeName(b.Kind) || b.Key == "" {
		return nil, fmt.Errorf("%w: %s: no valid org_id, kind and key", errBadBatch, path)
	}
	fi, err := fsys.Stat(b.object)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no object", errBadBatch, path)
	}
	if err != nil {
		return nil, err
	}
	if fi.Size() != b.ObjectBytes {
		return nil, fmt.Errorf("%w: %s: its object has %d bytes, the manifest says %d", errBadBatch, path, fi.Size(), b.ObjectBytes)
	}
	return b, nil
}

func (b *Batch) encode() []byte {
	data, _ := json.MarshalIndent(&b.Manifest, "", "  ")
	return data
}

// Rekey gives a batch a new key, after the destination said the old one exists, and persists it with its
// millisecond. When it fails, the batch keeps the key its manifest holds: the old one, or the new one when
// only the sync of the folder failed (a restart reads that one). A batch that lives in the log has no
// manifest to keep it: Spill it first.
func (s *Store) Rekey(b *Batch, key string, ms int64) error {
	if b.InLog() {
		return fmt.Errorf("rekey %s: %w", b.Key, errInLog)
	}
	old, oldMs := b.Key, b.KeyMs
	b.Key, b.KeyMs = key, ms
	if err := replaceFile(s.fs, b.manifest, b.encode()); err != nil {
		if !errors.Is(err, errUnsynced) {
			b.Key, b.KeyMs = old, oldMs
		}
		return fmt.Errorf("rekey %s: %w", key, err)
	}
	return nil
}

// SaveAttempt records one more failed upload attempt in the batch's manifest.
func (s *Store) SaveAttempt(b *Batch) error {
	b.Attempts++
	if b.InLog() {
		return nil
	}
	return replaceFile(s.fs, b.manifest, b.encode())
}

// Remove deletes a batch once it is delivered. Its records must be marked as sealed in the log first, or the
// next start would gather them again: when that cannot be done now, the batch is kept and Tidy deletes it once
// it can. The object goes before the manifest: an object without a manifest is never a delivered batch, so
// recovery keeps it (in quarantine), while a manifest left without its object by a crash here is set aside and
// named. When it fails it can be called again.
func (s *Store) Remove(b *Batch) error {
	if b.InLog() {
		return s.removeInLog(b)
	}
	released, err := s.markSealed(b)
	if err != nil {
		s.markMu.Lock()
		if !slices.Contains(s.removeLater, b) {
			s.removeLater = append(s.removeLater, b)
		}
		s.markMu.Unlock()
		return fmt.Errorf("remove %s: its records cannot be marked as sealed in the log yet, so it stays until they are: %w", b.Key, err)
	}
	if err := s.deleteBatch(b); err != nil {
		return err
	}
	if released != nil {
		return fmt.Errorf("removed %s, but the log segments it freed are not deleted yet: %w", b.Key, released)
	}
	return nil
}

// Tidy appends the "sealed" entries that earlier rounds could not, deletes the delivered batches that waited
// for them (see Remove) and the log segments this frees. Without it, nothing would while no batch is sealed or
// removed.
func (s *Store) Tidy() error {
	s.markMu.Lock()
	marking := len(s.unmarked) > 0
	err := s.markLocked()
	later := s.removeLater
	if err == nil {
		s.removeLater = nil
	}
	s.markMu.Unlock()
	if err != nil {
		return fmt.Errorf("mark sealed batches in the log: %w", err)
	}
	var failed []*Batch
	for _, b := range later {
		if e := s.deleteBatch(b); e != nil {
			err = errors.Join(err, e)
			failed = append(failed, b)
		}
	}
	if len(failed) > 0 {
		s.markMu.Lock()
		s.removeLater = append(s.removeLater, failed...)
		s.markMu.Unlock()
	}
	if marking || len(later) > 0 {
		err = errors.Join(err, s.releaseSegments())
	}
	s.keepBallast()
	return err
}

// deleteBatch deletes a delivered batch's files, its records marked as sealed in the log.
func (s *Store) deleteBatch(b *Batch) error {
	if !b.objectGone {
		if err := s.fs.Remove(b.object); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", b.Key, err)
		}
		b.objectGone = true
		s.use.add(-b.ObjectBytes)
		s.mu.Lock()
		s.batchGoneLocked(b.Stream())
		s.mu.Unlock()
	}
	if err := s.fs.Remove(b.manifest); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", b.Key, err)
	}
	if err := s.fs.SyncDir(s.batches); err != nil {
		return fmt.Errorf("remove %s: %w", b.Key, err)
	}
	return nil
}

// ObjectGone reports whether a batch's object is known to be gone from the store (deleted while it waited),
// as opposed to unreadable for now.
func (s *Store) ObjectGone(b *Batch) bool {
	if b.InLog() {
		return false
	}
	_, err := s.fs.Stat(b.object)
	return errors.Is(err, fs.ErrNotExist)
}

// Quarantine moves a batch that could not be delivered for too long out of the upload path, into the
// quarantine folder, within its own size limit. Moving its two files back into batches/ replays it. The batch
// is linked into the quarantine and made durable there before it leaves batches/: a crash leaves it in one
// folder or both. When it fails, the batch is where it was, or quarantined with its old names left in
// batches/, which a second call removes.
func (s *Store) Quarantine(b *Batch) error {
	if b.InLog() {
		return fmt.Errorf("quarantine %s: %w", b.Key, errInLog)
	}
	if b.leftIn == nil {
		if err := s.use.toQuarantine(b.ObjectBytes); err != nil {
			return err
		}
		base := freeBase(s.fs, s.quarantine, strings.TrimSuffix(filepath.Base(b.object), objectSuffix))
		from, to := []string{b.object, b.manifest}, []string{base + objectSuffix, base + manifestSuffix}
		if err := linkAll(s.fs, s.quarantine, from, to); err != nil {
			s.use.fromQuarantine(b.ObjectBytes)
			return fmt.Errorf("quarantine %s: %w", b.Key, err)
		}
		b.object, b.manifest, b.leftIn = to[0], to[1], from
		s.mu.Lock()
		s.batchGoneLocked(b.Stream())
		s.mu.Unlock()
	}
	for _, p := range b.leftIn {
		if err := s.fs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("quarantined %s, but it is left in %s too: %w", b.Key, s.batches, err)
		}
	}
	if err := s.fs.SyncDir(s.batches); err != nil {
		return fmt.Errorf("quarantined %s: %w", b.Key, err)
	}
	b.leftIn = nil
	return nil
}

// freeBase is a batch's name in dir free for both its files, so that the pair stays together and no other
// batch is replaced: name, or name.N.
func freeBase(fsys vfs.FS, dir, name string) string {
	base := filepath.Join(dir, name)
	for n := 1; fileExists(fsys, base+objectSuffix) || fileExists(fsys, base+manifestSuffix); n++ {
		base = filepath.Join(dir, fmt.Sprintf("%s.%d", name, n))
	}
	return base
}

// ReadFile reads a small file the caller keeps in the store's folder (nil when it does not exist).
func (s *Store) ReadFile(name string) ([]byte, error) {
	data, err := vfs.ReadFile(s.fs, filepath.Join(s.dir, filepath.Base(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// WriteFile replaces a small file in the store's folder atomically.
func (s *Store) WriteFile(name string, data []byte) error {
	return replaceFile(s.fs, filepath.Join(s.dir, filepath.Base(name)), data)
}
