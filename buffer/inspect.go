package buffer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/wiv/out_wivaudit/vfs"
	"github.com/wiv/out_wivaudit/wal"
)

// Inspection is what a store's folder holds, read without its lock: a snapshot while the plugin runs.
type Inspection struct {
	Streams     []StreamContents `json:"streams"` // by organisation, then kind
	DeadLetters FileContents     `json:"dead_letters"`
	// SetAside are the files in the quarantine folder that are not batches: what recovery could not read.
	SetAside []string `json:"set_aside,omitempty"`
	// DamagedRegions counts regions of the log that failed their checksum.
	DamagedRegions int `json:"damaged_log_regions,omitempty"`
}

// StreamContents is what one (organisation, kind) stream has in the store.
type StreamContents struct {
	Org  string `json:"org_id"`
	Kind string `json:"kind"`
	// Unsealed are records in the log not yet in a batch; their bytes are the records' JSON.
	Unsealed Holding `json:"unsealed"`
	// Sealed are batches waiting for upload; their bytes are the objects', or for a batch that lives in the
	// log, its records' JSON.
	Sealed      Holding `json:"sealed"`
	Quarantined Holding `json:"quarantined"`
}

// Holding counts one part of a stream. Oldest is the arrival of its oldest record, unix ms (0: none).
type Holding struct {
	Batches int   `json:"batches"`
	Records int   `json:"records"`
	Bytes   int64 `json:"bytes"`
	Oldest  int64 `json:"oldest_ms,omitempty"`
}

func (h *Holding) add(batches, records int, bytes, oldest int64) {
	h.Batches += batches
	h.Records += records
	h.Bytes += bytes
	if h.Oldest == 0 || oldest < h.Oldest {
		h.Oldest = oldest
	}
}

// FileContents is a file's lines and bytes.
type FileContents struct {
	Lines int   `json:"lines"`
	Bytes int64 `json:"bytes"`
}

// ErrNotStore means a folder has none of a store's folders.
var ErrNotStore = errors.New("not a Store_Dir: it has no wal, batches or quarantine folder")

// Inspect reads what the store in dir holds, changing nothing and taking no lock, so that it is safe while the
// plugin runs. Files that vanish while it reads (a batch uploaded, a segment released) are skipped. The log is
// read first: a batch sealed meanwhile names the runs it took, so they are not counted twice.
func Inspect(dir string) (*Inspection, error) {
	return inspect(vfs.OS, dir)
}

func inspect(fsys vfs.FS, dir string) (*Inspection, error) {
	if !isDir(fsys, filepath.Join(dir, walFolder)) && !isDir(fsys, filepath.Join(dir, batchesFolder)) && !isDir(fsys, filepath.Join(dir, quarantineFolder)) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotStore)
	}
	in := &Inspection{}
	streams := map[Stream]*StreamContents{}
	at := func(st Stream) *StreamContents {
		if streams[st] == nil {
			streams[st] = &StreamContents{Org: st.Org, Kind: st.Kind}
		}
		return streams[st]
	}
	runs, sealed, batches, err := in.readLog(fsys, filepath.Join(dir, walFolder))
	if err != nil {
		return nil, err
	}
	legacySealed := map[string]bool{}
	err = readManifests(fsys, filepath.Join(dir, batchesFolder), func(m *Manifest, objectBytes int64, _ string) {
		if m == nil {
			return // being sealed, or for the next start to set aside
		}
		at(Stream{m.Org, m.Kind}).Sealed.add(1, m.Records, objectBytes, m.Opened)
		sealed.add(m)
		legacySealed[m.SourceLog] = true
	})
	if err != nil {
		return nil, err
	}
	err = readManifests(fsys, filepath.Join(dir, quarantineFolder), func(m *Manifest, objectBytes int64, base string) {
		if m == nil {
			in.SetAside = append(in.SetAside, base)
			return
		}
		at(Stream{m.Org, m.Kind}).Quarantined.add(1, m.Records, objectBytes, m.Opened)
		sealed.add(m)
	})
	if err != nil {
		return nil, err
	}
	// The log's oldest segment, as recovery sees it: a batch entry whose first segment is gone is done with.
	oldest := uint64(math.MaxUint64)
	segs, _ := fsys.ReadDir(filepath.Join(dir, walFolder))
	for _, e := range segs {
		if id, ok := wal.ParseSegmentName(e.Name()); ok {
			oldest = min(oldest, id)
		}
	}
	inLog := map[Stream][][2]wal.Pos{}
	for _, e := range batches {
		if sealed.covers(e.st, e.first) || e.first.Seg < oldest {
			sealed[e.st] = append(sealed[e.st], [2]wal.Pos{e.first, e.last})
			continue
		}
		inLog[e.st] = append(inLog[e.st], [2]wal.Pos{e.first, e.last})
		sealed[e.st] = append(sealed[e.st], [2]wal.Pos{e.first, e.last})
		at(e.st).Sealed.add(1, 0, 0, e.ms)
	}
	for _, r := range runs {
		if sealedRanges(inLog).covers(r.st, r.pos) {
			at(r.st).Sealed.add(0, r.records, r.json, r.at)
			continue
		}
		if !sealed.covers(r.st, r.pos) {
			at(r.st).Unsealed.add(0, r.records, r.json, r.at)
		}
	}
	if err := readLegacyLogs(fsys, filepath.Join(dir, legacyLogs), legacySealed, func(p *Pending, records int, json int64) {
		at(p.Stream).Unsealed.add(0, records, json, p.Opened)
	}); err != nil {
		return nil, err
	}
	if in.DeadLetters, err = countLines(fsys, filepath.Join(dir, DeadLetterFile)); err != nil {
		return nil, err
	}
	for _, sc := range streams {
		in.Streams = append(in.Streams, *sc)
	}
	sort.Slice(in.Streams, func(i, j int) bool {
		a, b := in.Streams[i], in.Streams[j]
		return a.Org < b.Org || a.Org == b.Org && a.Kind < b.Kind
	})
	sort.Strings(in.SetAside)
	return in, nil
}

// loggedRun is a run of the log as Inspect counts it.
type loggedRun struct {
	st      Stream
	pos     wal.Pos
	records int
	json    int64
	at      int64
}

// readLog reads every segment in order and returns their runs and the ranges their sealed entries cover.
func (in *Inspection) readLog(fsys vfs.FS, walDir string) ([]loggedRun, sealedRanges, []entry, error) {
	sealed := sealedRanges{}
	var runs []loggedRun
	var batches []entry
	err := wal.Scan(fsys, walDir, logEntries(func(e entry, at wal.Pos, _ int) {
		runs = append(runs, loggedRun{st: e.st, pos: at, records: e.records, json: jsonBytes(e.body, e.records), at: e.ms})
	}, func(e entry) {
		if e.typ == batchEntry {
			batches = append(batches, e)
			return
		}
		sealed[e.st] = append(sealed[e.st], [2]wal.Pos{e.first, e.last})
	}, func([]byte) { in.DamagedRegions++ }))
	if err != nil {
		return nil, nil, nil, err
	}
	return runs, sealed, batches, nil
}

// readManifests calls found with each batch in dir: its manifest and its object's size. A file that is not
// part of a readable batch is reported with a nil manifest and its name; a batch that vanishes while it is
// read is skipped.
func readManifests(fsys vfs.FS, dir string, found func(m *Manifest, objectBytes int64, name string)) error {
	entries, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	paired := map[string]bool{}
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), manifestSuffix)
		if !ok {
			continue
		}
		data, err := vfs.ReadFile(fsys, filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var m Manifest
		if err != nil || json.Unmarshal(data, &m) != nil || !safeName(m.Org) || !safeName(m.Kind) {
			found(nil, 0, e.Name())
			continue
		}
		fi, err := fsys.Stat(filepath.Join(dir, base+objectSuffix))
		if errors.Is(err, fs.ErrNotExist) && !fileExists(fsys, filepath.Join(dir, e.Name())) {
			continue // uploaded (or moved) while this was read
		}
		if err != nil {
			found(nil, 0, e.Name())
			continue
		}
		paired[base+objectSuffix] = true
		found(&m, fi.Size(), e.Name())
	}
	for _, e := range entries {
		name := e.Name()
		if !paired[name] && !strings.HasSuffix(name, manifestSuffix) && !strings.HasSuffix(name, tmpSuffix) && fileExists(fsys, filepath.Join(dir, name)) {
			found(nil, 0, name)
		}
	}
	return nil
}

// readLegacyLogs counts the records of the log files a store of the layout before the write-ahead log left,
// except those a batch already holds.
func readLegacyLogs(fsys vfs.FS, dir string, sealed map[string]bool, found func(p *Pending, records int, json int64)) error {
	entries, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p, ok := parseLegacyName(e.Name())
		if !ok || sealed[e.Name()] {
			continue
		}
		data, err := vfs.ReadFile(fsys, filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		records, jsonLen := 0, int64(0)
		wal.ScanFrames(data, func(_ int, r []byte) { records++; jsonLen += int64(len(r)) }, func([]byte) {})
		found(p, records, jsonLen)
	}
	return nil
}

// countLines counts the lines and bytes of a file; a missing file has none.
func countLines(fsys vfs.FS, path string) (FileContents, error) {
	var fc FileContents
	f, err := fsys.OpenFile(path, 0, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fc, nil
	}
	if err != nil {
		return fc, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		fc.Bytes += int64(n)
		fc.Lines += bytes.Count(buf[:n], []byte{'\n'})
		if err == io.EOF {
			return fc, nil
		}
		if err != nil {
			return fc, err
		}
	}
}

func isDir(fsys vfs.FS, path string) bool {
	fi, err := fsys.Stat(path)
	return err == nil && fi.IsDir()
}
