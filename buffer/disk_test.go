package buffer

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
)

func TestDiskPlan(t *testing.T) {
	for _, tc := range []struct {
		segment, capacity, wantSeg, wantReserve int64
	}{
		{16 << 20, 0, 16 << 20, 20 << 20},         // capacity unknown: as asked
		{16 << 20, 1 << 40, 16 << 20, 20 << 20},   // a large disk
		{16 << 20, 1 << 20, 128 << 10, 160 << 10}, // a 1 MB tmpfs: an eighth of it
		{64 << 10, 1 << 20, 64 << 10, 80 << 10},   // smaller segments asked for stay
		{16 << 20, 4 << 10, minSegmentSize, 1280}, // a tiny disk: the least segment
		{16 << 20, 100 << 20, 12800 << 10, 16000 << 10},
	} {
		seg, reserve := diskPlan(tc.segment, tc.capacity)
		if seg != tc.wantSeg || reserve != tc.wantReserve {
			t.Errorf("diskPlan(%d, %d) = %d, %d; want %d, %d", tc.segment, tc.capacity, seg, reserve, tc.wantSeg, tc.wantReserve)
		}
	}
}

// drain delivers what the store holds as the plugin does on a full disk: Relieve, seal what is closed
// (putting back what finds no room), remove each sealed batch at once (its upload), until nothing is closed.
// It counts each delivered record.
func drain(t *testing.T, s *Store, delivered map[string]int) {
	t.Helper()
	for round := 0; ; round++ {
		s.Relieve()
		closed := s.TakeClosed()
		if len(closed) == 0 {
			return
		}
		progress := false
		for _, r := range s.Seal(closed, naming, joinLines) {
			if r.Err != nil {
				if !errors.Is(r.Err, syscall.ENOSPC) {
					t.Fatal(r.Err)
				}
				s.PutBack(r.Pending)
				if round > 1000 {
					t.Fatalf("sealing makes no progress: %v", r.Err)
				}
				continue
			}
			progress = true
			if r.Batch == nil {
				continue
			}
			for _, rec := range strings.Fields(readObject(t, r.Batch)) {
				delivered[rec]++
			}
			if err := s.Remove(r.Batch); err != nil {
				t.Fatal(err)
			}
		}
		if !progress && round > 1000 {
			t.Fatal("sealing makes no progress")
		}
	}
}

// Defect (issue 15, from the real Fluent Bit): the store filled its own disk. The log took every byte, sealing
// could then not write an object, nothing could free a segment, and nothing was delivered again, not even
// after a restart. Now appends leave a reserve free and are refused for the disk (ErrFull, saying so) before
// it is full, and what is durable is sealed and delivered, freeing space: appends are taken again, and every
// acknowledged record is sealed into a batch exactly once, also across a restart while full. The batches
// span every segment and the encoder does not compress: a batch too big for the reserve is sealed segment by
// segment.
func TestFullDiskIsAStateThatEnds(t *testing.T) {
	const capacity = 256 << 10
	m := vfs.NewMemFS()
	m.SetCapacity(capacity)
	o := opts(1<<30, &clock{t: t0})
	o.FS = m
	s := open(t, "/store", o)
	acked, delivered := map[string]int{}, map[string]int{}
	n := 0
	fill := func() error {
		for {
			var recs []string
			for _, org := range []string{"a", "b", "c"} {
				n++
				recs = append(recs, fmt.Sprintf("%s/org:%06d-%s", org, n, strings.Repeat("x", 100)))
			}
			if err := tryCommit(s, recs...); err != nil {
				return err
			}
			for _, r := range recs {
				_, p := parseRec(r)
				acked[p]++
			}
			if n > 100_000 {
				t.Fatal("appends are never refused")
			}
		}
	}
	for cycle := range 3 {
		refused := fill()
		if cycle == 2 {
			// Killed while full, and started again: recovery closes each stream's whole batch.
			m = m.Crash(vfs.CrashOptions{})
			o.FS = m
			s = open(t, "/store", o)
		}
		drain(t, s, delivered)
		if !errors.Is(refused, ErrFull) || !strings.Contains(refused.Error(), "file system holding the store is full") {
			t.Fatalf("cycle %d: an append was refused with %v; want ErrFull for the disk", cycle, refused)
		}
		if free, _ := m.Free("/"); free < capacity/2 {
			t.Errorf("cycle %d: %d bytes free after delivering everything sealed", cycle, free)
		}
	}
	if err := fill(); !errors.Is(err, ErrFull) {
		t.Fatal(err)
	}
	s.Rotate(time.Time{})
	drain(t, s, delivered)
	for r, k := range acked {
		if delivered[r] != k {
			t.Errorf("record %s delivered %d times", r[:6], delivered[r])
		}
	}
	for r := range delivered {
		if acked[r] == 0 {
			t.Errorf("record %s delivered but never acknowledged", r[:6])
		}
	}
	if len(acked) < 3000 {
		t.Errorf("only %d records acknowledged in 3 cycles", len(acked))
	}
}

// When the active segment is all the log holds, it is what holds the disk: Relieve moves the log on from it
// and closes the batches in it, so that sealing them frees it.
func TestRelieveMovesOnFromTheActiveSegment(t *testing.T) {
	s, _, m, dir := memStore(t, opts(1<<30, &clock{t: t0}))
	commit(t, s, "a/org:1", "b/org:2")
	full := segmentFiles(t, m, dir)
	s.Relieve()
	objects, _ := sealAll(t, s)
	if got := lines(objects); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("sealed %v after Relieve", got)
	}
	for _, p := range full {
		if slices.Contains(segmentFiles(t, m, dir), p) {
			t.Errorf("%s is still there once its records are sealed", filepath.Base(p))
		}
	}
	before := segmentFiles(t, m, dir)
	s.Relieve()
	s.Relieve()
	if got := segmentFiles(t, m, dir); len(got) > len(before) {
		t.Errorf("Relieve moved on from a segment that holds nothing: %v, then %v", before, got)
	}
}

// A free space that cannot be read refuses nothing: the store opens and takes appends, and says how often it
// failed and why.
func TestUnreadableFreeSpaceRefusesNothing(t *testing.T) {
	f := vfs.NewFaults(vfs.NewMemFS())
	f.Only(func(op vfs.Op) bool { return op.Kind == vfs.OpStatfs })
	f.FailFrom(1, vfs.EIO)
	o := opts(1<<30, &clock{t: t0})
	o.FS = f
	s := open(t, "/store", o)
	for i := range 3 {
		commit(t, s, fmt.Sprintf("a/org:%d", i))
	}
	if n, first := s.DiskErrors(); n != 4 || !errors.Is(first, syscall.EIO) {
		t.Errorf("DiskErrors = %d, %v; want 4 (Open and each append), EIO", n, first)
	}
}
