package buffer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestReserveCountsAChunkOnce: a chunk being committed counts once towards the limit, so that two chunks
// that fit exactly both go through, even when the second claims its room while the first is being synced.
func TestReserveCountsAChunkOnce(t *testing.T) {
	c := &clock{t: t0}
	probe := NewChunk()
	probe.Add(Stream{"o", "org"}, []byte("0123456789"))
	n := probe.Size()
	o := opts(1<<20, c)
	o.Limit, o.SegmentSize = 2*n, 1<<20
	s := open(t, t.TempDir(), o)
	second := false
	s.opt.Crash = func(point string) {
		if point == CrashAfterWrite && !second {
			second = true
			if s.reserve(n) != nil { // the first chunk is written, not yet synced
				t.Error("the second chunk found no room while the first was being committed")
			}
			s.use.commitReserved(n, 0)
		}
	}
	commit(t, s, "o/org:0123456789")
	commit(t, s, "o/org:0123456789")
	if used, limit := s.Usage(); used != 2*n || limit != 2*n {
		t.Errorf("usage %d of %d, want %d of %d", used, limit, 2*n, 2*n)
	}
	if s.reserve(1) == nil {
		t.Error("room past the limit")
	}
}

func TestLimitCountsTheLogBatchesAndRecoveredData(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	o := opts(1<<20, c)
	o.Limit = 1 << 20
	s, _, _ := Open(dir, o)
	commit(t, s, "o/org:a", "o/api:b")
	used, _ := s.Usage()
	s.Rotate(time.Time{})
	objects, _ := sealAll(t, s)
	after, _ := s.Usage()
	if len(objects) != 2 || after <= used {
		t.Errorf("usage %d before sealing, %d after: sealed objects count, and the log stays until its segment goes", used, after)
	}
	s.Close()
	s2, _, _ := Open(dir, o)
	defer s2.Close()
	var objectBytes int64
	for _, o := range objects {
		objectBytes += int64(len(o))
	}
	if recovered, _ := s2.Usage(); recovered != objectBytes {
		t.Errorf("usage after a restart %d, want %d (the batches; the sealed segment went)", recovered, objectBytes)
	}
}

func TestQuarantineLimitIsAtomic(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	o := opts(1<<20, c)
	s, _, _ := Open(dir, o)
	var batches []*Batch
	for i := range 8 {
		commit(t, s, fmt.Sprintf("o%d/org:%d", i, i))
	}
	s.Rotate(time.Time{})
	for _, p := range s.TakeClosed() {
		b, _, _ := sealOne(s, p)
		batches = append(batches, b)
	}
	s.use.quarantineLimit = batches[0].ObjectBytes // room for one
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for _, b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Quarantine(b)
			if err != nil && !errors.Is(err, ErrQuarantineFull) {
				t.Error(err)
			}
			mu.Lock()
			if err == nil {
				ok++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Errorf("%d batches quarantined with room for one", ok)
	}
	moved, _ := filepath.Glob(filepath.Join(dir, quarantineFolder, "*"+objectSuffix))
	if len(moved) != 1 {
		t.Errorf("%d objects in the quarantine folder", len(moved))
	}
	s.Close()
	s2, rec, _ := Open(dir, o)
	defer s2.Close()
	if len(rec.Batches) != 7 {
		t.Errorf("%d batches back for upload, want the 7 not quarantined", len(rec.Batches))
	}
}

func TestDeadLetterLimit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	c := &clock{t: t0}
	o := opts(1<<20, c)
	o.DeadLetterLimit = 10
	s := open(t, dir, o)
	steps := []struct {
		lines string
		kept  int
		full  bool
	}{
		{"12345\n", 6, false},
		{"1234\n", 0, true},       // 11 bytes: past the limit, and no whole line fits
		{"1\n22\n333\n", 2, true}, // the whole lines that fit are kept
		{"3\n", 2, false},         // exactly 10
		{"\n", 0, true},
	}
	for i, st := range steps {
		kept, err := s.DeadLetter([]byte(st.lines))
		if full := errors.Is(err, ErrDeadLetterFull); kept != st.kept || full != st.full || (err != nil && !full) {
			t.Errorf("step %d: DeadLetter(%q) = %d, %v; want %d, full=%v", i, st.lines, kept, err, st.kept, st.full)
		}
	}
	if got, _ := os.ReadFile(s.DeadLetterPath()); string(got) != "12345\n1\n3\n" {
		t.Errorf("dead-letter file %q", got)
	}
	// Moving the file away makes room: the limit is the file's own size.
	if err := os.Rename(s.DeadLetterPath(), s.DeadLetterPath()+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeadLetter([]byte("1234\n")); err != nil {
		t.Errorf("after moving the file away: %v", err)
	}
}
