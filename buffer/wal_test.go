package buffer

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit: concurrent commits all succeed, share syncs, and each stream's records keep the order in
// which each committer wrote them, before and after a restart.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s, _, _ := Open(dir, opts(1<<30, c))
	const committers, commits = 8, 40
	var wg sync.WaitGroup
	for g := range committers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range commits {
				var recs []string
				for _, org := range []string{"a", "b", "c"} {
					recs = append(recs, fmt.Sprintf("%s/org:%d.%d", org, g, i))
				}
				if err := tryCommit(s, recs...); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	check := func(s *Store, when string) {
		s.Rotate(time.Time{})
		for _, p := range s.TakeClosed() {
			b, _, err := sealOne(s, p)
			if err != nil {
				t.Fatal(err)
			}
			last := map[string]int{}
			recs := strings.Fields(readObject(t, b))
			if len(recs) != committers*commits {
				t.Errorf("%s: %s has %d records, want %d", when, p.Stream, len(recs), committers*commits)
			}
			for _, r := range recs {
				g, i, _ := strings.Cut(r, ".")
				n, _ := strconv.Atoi(i)
				if prev, ok := last[g]; ok && n <= prev {
					t.Errorf("%s: %s: committer %s's record %d after %d", when, p.Stream, g, n, prev)
				}
				last[g] = n
			}
		}
	}
	s.Close()
	s2, _, err := Open(dir, opts(1<<30, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2, "after a restart")
}

// TestCommitsWhileSealing: commits from several goroutines roll small segments while batches are sealed and
// segments released; every record is sealed once, intact.
func TestCommitsWhileSealing(t *testing.T) {
	c := &clock{t: t0}
	o := opts(300, c)
	o.SegmentSize = 2500
	s := open(t, t.TempDir(), o)
	objects := map[string]string{}
	seal := func() {
		s.Rotate(time.Time{})
		for _, p := range s.TakeClosed() {
			b, rep, err := sealOne(s, p)
			if err != nil || len(rep.Damaged) > 0 {
				t.Fatalf("seal: %v, damaged %q", err, rep.Damaged)
			}
			objects[b.Key] = readObject(t, b)
		}
	}
	var wg sync.WaitGroup
	const committers, commits, orgs = 4, 100, 5
	for g := range committers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range commits {
				var recs []string
				for org := range orgs {
					o := (org + i) % 7
					recs = append(recs, fmt.Sprintf("o%d/api:%d.%d.%d.%s", o, o, g, i, strings.Repeat("x", 30)))
				}
				if err := tryCommit(s, recs...); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		seal()
	}
	seal()
	got := lines(objects)
	if len(got) != committers*commits*orgs {
		t.Errorf("%d records sealed, want %d", len(got), committers*commits*orgs)
	}
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Errorf("record %s sealed twice", got[i])
		}
	}
}
