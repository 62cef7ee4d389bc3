package buffer

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
)

// sealInLog seals every closed batch in the log, in stream order.
func sealInLog(t *testing.T, s *Store) []*Batch {
	t.Helper()
	closed := s.TakeClosed()
	slices.SortFunc(closed, func(x, y *Pending) int { return strings.Compare(x.Stream.String(), y.Stream.String()) })
	if err := s.SealInLog(closed, naming); err != nil {
		t.Fatal(err)
	}
	return batchesOf(s, closed)
}

func batchesOf(s *Store, ps []*Pending) []*Batch {
	bs := make([]*Batch, len(ps))
	for i, p := range ps {
		bs[i] = s.BatchOf(p)
	}
	return bs
}

func compose(t *testing.T, s *Store, b *Batch) string {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Compose(b, &buf, joinLines); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// A batch sealed in the log writes no file: its object is composed from the log, with the checksums of what
// was composed. Delivered, it lets its segments go; a restart finds nothing of it.
func TestBatchLivesInTheLogUntilDelivered(t *testing.T) {
	c := &clock{t: t0}
	s, f, m, dir := memStore(t, opts(1<<20, c))
	commit(t, s, "a/org:1", "b/org:x")
	commit(t, s, "a/org:2")
	s.Rotate(time.Time{})
	r := &recorder{}
	on(f, r.rule)
	bs := sealInLog(t, s)
	if len(bs) != 2 || !bs[0].InLog() || bs[0].Key != key(Stream{"a", "org"})(t0.UnixMilli()) || bs[0].Records != 2 {
		t.Fatalf("sealed %+v, want a/org's two records in the log", bs)
	}
	if i := r.index(vfs.OpCreate, in(dir+"/batches")); i >= 0 {
		t.Errorf("sealing in the log created a batch file: %v", r.ops[i])
	}
	if n := r.count(vfs.OpDatasync) + r.count(vfs.OpSync); n != 1 {
		t.Errorf("sealing two batches in the log took %d syncs, want 1: %v", n, r.ops)
	}
	if got := compose(t, s, bs[0]); got != "1\n2\n" {
		t.Errorf("composed %q", got)
	}
	if bs[0].SHA256 != sha256Of([]byte("1\n2\n")) || bs[0].ContentMD5 != md5Of([]byte("1\n2\n")) || bs[0].ObjectBytes != 4 {
		t.Errorf("checksums %s %s %d are not the composed object's", bs[0].SHA256, bs[0].ContentMD5, bs[0].ObjectBytes)
	}
	segs := segmentFiles(t, m, dir)
	for _, b := range bs {
		if err := s.Remove(b); err != nil {
			t.Fatal(err)
		}
	}
	if got := segmentFiles(t, m, dir); len(got) >= len(segs) && len(segs) > 1 {
		t.Errorf("segments %v after every batch was delivered, had %v", got, segs)
	}
	if err := s.Tidy(); err != nil {
		t.Fatal(err)
	}
	s2, rec := afterPowerCut(t, dir, c, m)
	if got := everything(t, s2, rec); len(got) > 0 {
		t.Errorf("delivered records came back after a restart: %v", got)
	}
}

// A power cut finds a batch sealed in the log under its key and destination, with its records; they are not
// gathered into a new batch as well.
func TestBatchInTheLogSurvivesAPowerCut(t *testing.T) {
	c := &clock{t: t0}
	s, _, m, _ := memStore(t, opts(1<<20, c))
	commit(t, s, "a/org:1", "a/org:2")
	s.Rotate(time.Time{})
	closed := s.TakeClosed()
	if err := s.SealInLog(closed, func(p *Pending) (string, func(int64) string) { return "archive", key(p.Stream) }); err != nil {
		t.Fatal(err)
	}
	bs := batchesOf(s, closed)
	commit(t, s, "a/org:3")
	s2, rec := afterPowerCut(t, "/store", c, m)
	if len(rec.InLog) != 1 || len(rec.Batches) != 0 {
		t.Fatalf("recovered %d batches in the log and %d files, want the one in the log", len(rec.InLog), len(rec.Batches))
	}
	b := s2.BatchOf(rec.InLog[0])
	if !b.InLog() || b.Key != bs[0].Key || b.KeyMs != bs[0].KeyMs || b.Destination != "archive" || b.Records != 2 {
		t.Errorf("recovered %+v, want %+v", b.Manifest, bs[0].Manifest)
	}
	if got := compose(t, s2, b); got != "1\n2\n" {
		t.Errorf("recovered batch composes %q", got)
	}
	s2.Rotate(time.Time{})
	objects, _ := sealAll(t, s2)
	if got := lines(objects); !slices.Equal(got, []string{"3"}) {
		t.Errorf("gathered again after the restart: %v, want only the record sealed in no batch", got)
	}
}

// A batch that cannot be delivered promptly is spilled to a batch file under its key; a restart then finds
// the file only.
func TestSpillWritesABatchFile(t *testing.T) {
	c := &clock{t: t0}
	s, _, m, dir := memStore(t, opts(1<<20, c))
	commit(t, s, "a/org:1", "a/org:2")
	s.Rotate(time.Time{})
	b := sealInLog(t, s)[0]
	b.Attempts = 2
	wantKey := b.Key
	gone, err := s.Spill(b, naming, joinLines)
	if err != nil || gone {
		t.Fatalf("spill: gone %v, %v", gone, err)
	}
	// Its manifest is written again from b (a failed attempt, a new key): the range it holds goes with it.
	if b.InLog() || b.Key != wantKey || readObject(t, b) != "1\n2\n" || b.Attempts != 2 || b.LogRange == nil {
		t.Errorf("spilled to %+v", b.Manifest)
	}
	s2, rec := afterPowerCut(t, dir, c, m)
	if len(rec.Batches) != 1 || len(rec.InLog) != 0 || rec.Batches[0].Key != wantKey {
		t.Fatalf("recovered %v, want the batch file only", rec.Batches)
	}
	if got := everything(t, s2, rec); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("records after the restart: %v", got)
	}
}

// Composing a batch whose run fails its checksum says it is damaged; spilling it keeps the damage aside and
// writes what is intact.
func TestDamagedBatchInTheLogIsSpilled(t *testing.T) {
	c := &clock{t: t0}
	o := opts(1<<20, c)
	var kept [][]byte
	o.KeepDamaged = func(_ Stream, regions [][]byte) error { kept = append(kept, regions...); return nil }
	s, _, m, dir := memStore(t, o)
	commit(t, s, "a/org:intact")
	commit(t, s, "a/org:flipped")
	s.Rotate(time.Time{})
	b := sealInLog(t, s)[0]
	seg := segmentFiles(t, m, dir)
	data, _ := vfs.ReadFile(m, seg[len(seg)-1])
	file, _ := m.OpenFile(seg[len(seg)-1], os.O_WRONLY, 0)
	file.WriteAt([]byte("F"), int64(bytes.Index(data, []byte("flipped"))))
	file.Close()
	if err := s.Compose(b, &bytes.Buffer{}, joinLines); !errors.Is(err, ErrDamaged) {
		t.Fatalf("compose: %v, want ErrDamaged", err)
	}
	if gone, err := s.Spill(b, naming, joinLines); err != nil || gone {
		t.Fatalf("spill: gone %v, %v", gone, err)
	}
	if got := readObject(t, b); got != "intact\n" || b.Records != 1 || len(kept) != 1 || !bytes.Contains(kept[0], []byte("Flipped")) {
		t.Errorf("spilled %q (%d records), kept %q", got, b.Records, kept)
	}
}

// A delivered batch whose "sealed" entry was not yet appended when the power went is found again (the
// delivery ledger then says it was delivered); one whose first segment was deleted is not.
func TestDeliveredBatchInTheLogAfterAPowerCut(t *testing.T) {
	c := &clock{t: t0}
	s, _, m, dir := memStore(t, Options{MaxBatch: 1 << 20, Now: c.now, SegmentSize: minSegmentSize})
	commit(t, s, "a/org:1", "b/org:1")
	s.Rotate(time.Time{})
	bs := sealInLog(t, s)
	if err := s.Remove(bs[0]); err != nil { // a/org: b/org keeps the segment
		t.Fatal(err)
	}
	_, rec := afterPowerCut(t, dir, c, m)
	var found []string
	for _, p := range rec.InLog {
		found = append(found, p.Stream.String())
	}
	if !slices.Equal(found, []string{"a/org", "b/org"}) && !slices.Equal(found, []string{"b/org", "a/org"}) {
		t.Errorf("recovered %v, want both: a/org's sealed entry was never durable", found)
	}

	// Delivering b/org lets the segment go: a restart finds neither.
	if err := s.Remove(bs[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.log.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := s.releaseSegments(); err != nil {
		t.Fatal(err)
	}
	_, rec = afterPowerCut(t, dir, c, m)
	if len(rec.Batches)+len(rec.InLog) != 0 {
		t.Errorf("recovered %d delivered batches", len(rec.Batches)+len(rec.InLog))
	}
}

// count is how many operations of kind were made.
func (r *recorder) count(kind vfs.OpKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, op := range r.ops {
		if op.Kind == kind {
			n++
		}
	}
	return n
}

// afterPowerCut opens the store in dir on what a power cut now leaves of m; it is closed when the test ends.
func afterPowerCut(t *testing.T, dir string, c *clock, m *vfs.MemFS) (*Store, *Recovery) {
	t.Helper()
	s, rec, err := Open(dir, Options{MaxBatch: 1 << 20, Now: c.now, FS: m.Crash(vfs.CrashOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, rec
}

// A batch in the log whose first run is damaged, in a segment that holds no other run: the segment is still
// there, so the batch was neither delivered nor spilled, and its intact runs in later segments are
// acknowledged records that a restart must find again.
func TestDamagedFirstRunDoesNotMakeABatchInTheLogDone(t *testing.T) {
	c := &clock{t: t0}
	s, _, m, dir := memStore(t, opts(1<<20, c))
	commit(t, s, "b/org:bee") // segment 1
	if err := s.log.Roll(); err != nil {
		t.Fatal(err)
	}
	c.set(t0.Add(time.Second))
	commit(t, s, "a/org:first") // segment 2
	s.Rotate(t0)                // b/org only
	b := sealInLog(t, s)        // its batch entry goes to segment 2
	if len(b) != 1 || b[0].Org != "b" {
		t.Fatalf("sealed %v, want b/org", b)
	}
	if err := s.Remove(b[0]); err != nil { // delivered: segment 1 goes
		t.Fatal(err)
	}
	if err := s.log.Roll(); err != nil {
		t.Fatal(err)
	}
	commit(t, s, "a/org:second") // segment 3
	s.Rotate(time.Time{})
	if a := sealInLog(t, s); len(a) != 1 || a[0].Records != 2 {
		t.Fatalf("sealed %v, want a/org's two records", a)
	}
	// Bit rot in a/org's first run.
	seg := segmentFiles(t, m, dir)
	var hit bool
	for _, path := range seg {
		data, _ := vfs.ReadFile(m, path)
		if i := bytes.Index(data, []byte("first")); i >= 0 {
			f, _ := m.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt([]byte("F"), int64(i))
			f.Sync()
			f.Close()
			hit = true
		}
	}
	if !hit {
		t.Fatal("no run to damage")
	}
	s2, rec := afterPowerCut(t, dir, c, m)
	if len(rec.Damaged) != 1 {
		t.Errorf("%d damaged regions, want a/org's first run", len(rec.Damaged))
	}
	if got := everything(t, s2, rec); !slices.Equal(got, []string{"second"}) {
		t.Errorf("records after the restart: %v, want a/org's intact record \"second\"", got)
	}
}

// The log's bound: batches waiting in the log that keep more than spillSegments segments behind the active one
// name the oldest, whose batches are to be spilled; within the bound, none.
func TestPinnedNamesTheOldestSegmentPastTheBound(t *testing.T) {
	c := &clock{t: t0}
	s, _, _, _ := memStore(t, Options{MaxBatch: 1 << 20, Now: c.now, SegmentSize: minSegmentSize})
	record := strings.Repeat("x", minSegmentSize/2)
	commit(t, s, "a/org:"+record) // a/org's batch keeps the first segment
	s.Rotate(time.Time{})
	first := sealInLog(t, s)[0]
	for s.log.Active()-first.InLogPending().FirstSegment() <= spillSegments {
		if got := s.Pinned(); got != 0 {
			t.Fatalf("Pinned() = %d with the log %d segments behind; want 0 within the bound", got, s.log.Active()-first.InLogPending().FirstSegment())
		}
		commit(t, s, "b/org:"+record)
		s.Rotate(time.Time{})
		for _, b := range sealInLog(t, s) {
			if err := s.Remove(b); err != nil { // delivered at once: only a/org's batch keeps segments
				t.Fatal(err)
			}
		}
	}
	if got := s.Pinned(); got != first.InLogPending().FirstSegment() {
		t.Errorf("Pinned() = %d past the bound; want %d, the segment a/org's waiting batch keeps", got, first.InLogPending().FirstSegment())
	}
}
