package buffer

import (
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var t0 = time.UnixMilli(1769611845000)

func opts(maxBatch int64, c *clock) Options {
	return Options{MaxBatch: maxBatch, QuarantineLimit: 1 << 20, Now: c.now}
}

func open(t *testing.T, dir string, o Options) *Store {
	t.Helper()
	s, _, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// joinLines is a test encoder: the records one per line.
func joinLines(w io.Writer, fragments iter.Seq[[]byte]) error {
	for f := range fragments {
		w.Write([]byte(strings.ReplaceAll(string(f), Separator, "\n") + "\n"))
	}
	return nil
}

// commit appends records as one chunk; each record is st's org, kind and a payload: "org/kind:payload".
func commit(t *testing.T, s *Store, records ...string) {
	t.Helper()
	if err := tryCommit(s, records...); err != nil {
		t.Fatal(err)
	}
}

func tryCommit(s *Store, records ...string) error {
	c := NewChunk()
	for _, r := range records {
		st, payload := parseRec(r)
		c.Add(st, []byte(payload))
	}
	return s.Append(c, nil)
}

func parseRec(r string) (Stream, string) {
	name, payload, _ := strings.Cut(r, ":")
	org, kind, _ := strings.Cut(name, "/")
	return Stream{org, kind}, payload
}

func key(st Stream) func(int64) string {
	return func(ms int64) string { return fmt.Sprintf("%s/%s-%d", st.Org, st.Kind, ms) }
}

// naming is the tests' Naming: no destination, keys "org/kind-ms".
func naming(p *Pending) (string, func(int64) string) { return "", key(p.Stream) }

func sealOne(s *Store, p *Pending) (*Batch, SealReport, error) {
	r := s.Seal([]*Pending{p}, naming, joinLines)[0]
	return r.Batch, r.Report, r.Err
}

// sealAll seals every closed batch in one round and returns the objects by key, and the reports.
func sealAll(t *testing.T, s *Store) (map[string]string, []SealReport) {
	t.Helper()
	objects := map[string]string{}
	var reps []SealReport
	for _, r := range s.Seal(s.TakeClosed(), naming, joinLines) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		reps = append(reps, r.Report)
		if r.Batch != nil {
			objects[r.Batch.Key] = readObject(t, r.Batch)
		}
	}
	return objects, reps
}

func readObject(t *testing.T, b *Batch) string {
	t.Helper()
	f, err := b.OpenObject()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	return string(data)
}

// lines are all records of objects, sorted.
func lines(objects map[string]string) []string {
	var out []string
	for _, o := range objects {
		out = append(out, strings.Fields(o)...)
	}
	sort.Strings(out)
	return out
}

func TestCommitRotateSeal(t *testing.T) {
	c := &clock{t: t0}
	s := open(t, t.TempDir(), opts(1<<20, c))
	commit(t, s, "org-a/api:1", "org-a/user:2", "org-a/api:3")
	c.set(t0.Add(time.Second))
	commit(t, s, "org-a/api:4")
	s.Rotate(t0) // closes the batches opened at or before t0
	objects, _ := sealAll(t, s)
	want := map[string]string{
		fmt.Sprintf("org-a/api-%d", t0.UnixMilli()):  "1\n3\n4\n",
		fmt.Sprintf("org-a/user-%d", t0.UnixMilli()): "2\n",
	}
	if fmt.Sprint(objects) != fmt.Sprint(want) {
		t.Errorf("objects %v, want %v", objects, want)
	}
	if _, ok := s.OldestPending(); ok {
		t.Error("something is left pending")
	}
}

func TestRotateKeepsYoungBatches(t *testing.T) {
	c := &clock{t: t0}
	s := open(t, t.TempDir(), opts(1<<20, c))
	commit(t, s, "o/org:1")
	s.Rotate(t0.Add(-time.Millisecond))
	if got := s.TakeClosed(); len(got) != 0 {
		t.Errorf("Rotate closed a batch younger than the cutoff: %v", got)
	}
	if ms, ok := s.OldestPending(); !ok || ms != t0.UnixMilli() {
		t.Errorf("OldestPending = %d, %v", ms, ok)
	}
	s.Rotate(time.Time{})
	if got := s.TakeClosed(); len(got) != 1 || got[0].Records != 1 {
		t.Errorf("Rotate(zero) closed %v", got)
	}
}

func TestSizeClosesBatchesWithUniqueMilliseconds(t *testing.T) {
	c := &clock{t: t0}
	s := open(t, t.TempDir(), opts(40, c))
	for range 5 {
		commit(t, s, "o/org:0123456789abcdef") // 16 bytes: two fit under 40
	}
	s.Rotate(time.Time{})
	closed := s.TakeClosed()
	if len(closed) != 3 {
		t.Fatalf("%d batches, want 3", len(closed))
	}
	for i, p := range closed {
		if p.Opened != t0.UnixMilli()+int64(i) {
			t.Errorf("batch %d opened at %d: milliseconds must be unique and increasing while the clock stands still", i, p.Opened)
		}
	}
}

func TestUnsafeStreamNames(t *testing.T) {
	s := open(t, t.TempDir(), opts(1<<20, &clock{t: t0}))
	for _, st := range []Stream{{"../x", "org"}, {"a/b", "org"}, {"a~b", "org"}, {"", "org"}, {"o", ".."}, {strings.Repeat("x", 129), "org"}} {
		c := NewChunk()
		c.Add(st, []byte("x"))
		if err := s.Append(c, nil); err == nil {
			t.Errorf("%v accepted", st)
		}
	}
	if used, _ := s.Usage(); used != 0 {
		t.Errorf("refused chunks use %d bytes", used)
	}
}

func TestLockAndPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	c := &clock{t: t0}
	s := open(t, dir, opts(1<<20, c))
	if _, _, err := Open(dir, opts(1<<20, c)); err == nil || !strings.Contains(err.Error(), "in use by another wivaudit instance (pid ") {
		t.Errorf("second Open: %v", err)
	}
	commit(t, s, "o/org:a")
	s.Rotate(time.Time{})
	sealAll(t, s)
	s.DeadLetter([]byte("{}\n"))
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	s.Close()
	if s2, _, err := Open(dir, opts(1<<20, c)); err != nil {
		t.Errorf("Open after Close: %v", err)
	} else {
		s2.Close()
	}
}
