package buffer

import (
	"os"
	"testing"
	"time"
)

// TestUnsealedStreams: what each stream holds before sealing, closed batches and open ones, by batches,
// records, JSON bytes and the arrival of its oldest record; a batch taken for sealing is no longer counted.
func TestUnsealedStreams(t *testing.T) {
	c := &clock{t: t0}
	dir := t.TempDir()
	s := open(t, dir, opts(10, c))
	commit(t, s, `org-a/org:{"n":1}`)
	c.set(t0.Add(time.Second))
	commit(t, s, `org-a/org:{"n":2}`, `org-a/org:{"n":3}`) // one run, over MaxBatch: the first batch is closed
	c.set(t0.Add(2 * time.Second))
	commit(t, s, `org-b/api:{}`)
	want := map[Stream]Unsealed{
		{"org-a", "org"}: {Batches: 2, Records: 3, Bytes: 21, Oldest: t0.UnixMilli()},
		{"org-b", "api"}: {Batches: 1, Records: 1, Bytes: 2, Oldest: t0.Add(2 * time.Second).UnixMilli()},
	}
	if got := s.UnsealedStreams(); len(got) != len(want) || got[Stream{"org-a", "org"}] != want[Stream{"org-a", "org"}] || got[Stream{"org-b", "api"}] != want[Stream{"org-b", "api"}] {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	s.TakeClosed()
	if got := s.UnsealedStreams()[Stream{"org-a", "org"}]; got != (Unsealed{Batches: 1, Records: 2, Bytes: 14, Oldest: t0.Add(time.Second).UnixMilli()}) {
		t.Errorf("after taking the closed batches: %+v", got)
	}
	if !s.Present() {
		t.Error("Present is false for a store in place")
	}
	os.RemoveAll(dir)
	if s.Present() {
		t.Error("Present is true after the folder was removed")
	}
}
