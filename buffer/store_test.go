package buffer

import (
	"bytes"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.UnixMilli(1769611845000)

func open(t *testing.T, dir string, maxLog int64, c *clock) *Store {
	t.Helper()
	s, _, err := Open(dir, maxLog, c.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// joinLines is a test encoder: the records one per line.
func joinLines(w io.Writer, recs iter.Seq[[]byte]) error {
	for r := range recs {
		w.Write(append(r, '\n'))
	}
	return nil
}

func recs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func sealAll(t *testing.T, s *Store) (map[string]string, []SealReport) {
	t.Helper()
	objects := map[string]string{}
	var reps []SealReport
	for _, l := range s.TakeClosed() {
		b, rep, err := s.Seal(l, fmt.Sprintf("%s/%s-%d", l.Org, l.Kind, l.Opened), joinLines)
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
		if b == nil {
			continue
		}
		f, _ := b.OpenObject()
		data, _ := io.ReadAll(f)
		f.Close()
		objects[b.Key] = string(data)
	}
	return objects, reps
}

func TestAppendRotateSeal(t *testing.T) {
	c := &clock{t0}
	s := open(t, t.TempDir(), 1<<20, c)
	a, u := Stream{"org-a", "api"}, Stream{"org-a", "user"}
	for _, st := range []Stream{a, u, a} {
		if err := s.Append(st, recs(`{"x":1}`, `{"x":2}`)); err != nil {
			t.Fatal(err)
		}
	}
	c.t = c.t.Add(time.Second)
	s.Rotate(t0) // closes logs opened at or before t0
	objects, _ := sealAll(t, s)
	want := map[string]string{
		"org-a/api-1769611845000":  "{\"x\":1}\n{\"x\":2}\n{\"x\":1}\n{\"x\":2}\n",
		"org-a/user-1769611845000": "{\"x\":1}\n{\"x\":2}\n",
	}
	if len(objects) != len(want) {
		t.Fatalf("got %v", objects)
	}
	for k, v := range want {
		if objects[k] != v {
			t.Errorf("%s: got %q, want %q", k, objects[k], v)
		}
	}
	logs, _ := os.ReadDir(s.logs)
	if len(logs) != 0 {
		t.Errorf("logs left after sealing: %v", logs)
	}
}

func TestRotateKeepsYoungLogs(t *testing.T) {
	c := &clock{t0}
	s := open(t, t.TempDir(), 1<<20, c)
	s.Append(Stream{"o", "org"}, recs("1"))
	s.Rotate(t0.Add(-time.Millisecond))
	if got := s.TakeClosed(); len(got) != 0 {
		t.Errorf("a young log was closed: %v", got)
	}
	s.Rotate(time.Time{})
	if got := s.TakeClosed(); len(got) != 1 {
		t.Errorf("Rotate(zero) closed %d logs, want 1", len(got))
	}
}

func TestSizeRotationAndUniqueMilliseconds(t *testing.T) {
	c := &clock{t0} // the clock does not move: keys must still differ
	s := open(t, t.TempDir(), 40, c)
	st := Stream{"o", "org"}
	for i := 0; i < 3; i++ {
		if err := s.Append(st, recs("0123456789abcdef")); err != nil {
			t.Fatal(err)
		}
	}
	s.Rotate(time.Time{})
	closed := s.TakeClosed()
	if len(closed) != 3 {
		t.Fatalf("%d logs, want 3 (each append of 28 bytes exceeds 40 with the previous)", len(closed))
	}
	for i, l := range closed {
		if l.Opened != t0.UnixMilli()+int64(i) {
			t.Errorf("log %d opened at %d, want %d", i, l.Opened, t0.UnixMilli()+int64(i))
		}
	}
}

func TestRecoverLogsAndBatches(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t0}
	s, _, err := Open(dir, 1<<20, c.now)
	if err != nil {
		t.Fatal(err)
	}
	s.Append(Stream{"o", "api"}, recs("sealed"))
	s.Rotate(time.Time{})
	for _, l := range s.TakeClosed() {
		if _, _, err := s.Seal(l, "o/api-key", joinLines); err != nil {
			t.Fatal(err)
		}
	}
	s.Append(Stream{"o", "user"}, recs("open-1", "open-2"))
	s.Close() // as after a crash: nothing else is done

	s2, batches, err := Open(dir, 1<<20, c.now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(batches) != 1 || batches[0].Key != "o/api-key" || batches[0].Records != 1 {
		t.Fatalf("recovered batches %+v", batches)
	}
	objects, _ := sealAll(t, s2)
	if len(objects) != 1 {
		t.Fatalf("recovered logs sealed into %v", objects)
	}
	for _, v := range objects {
		if v != "open-1\nopen-2\n" {
			t.Errorf("recovered log content %q", v)
		}
	}
	// New logs of a recovered stream never reuse its milliseconds.
	s2.Append(Stream{"o", "user"}, recs("new"))
	s2.Rotate(time.Time{})
	if l := s2.TakeClosed(); len(l) != 1 || l[0].Opened <= t0.UnixMilli() {
		t.Errorf("new log after recovery opened at %v", l)
	}
}

func TestTornTailAndDamagedMiddle(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t0}
	s, _, _ := Open(dir, 1<<20, c.now)
	s.Append(Stream{"o", "org"}, recs("first", "second", "third"))
	s.Close()
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	data, _ := os.ReadFile(logs[0])
	i := bytes.Index(data, []byte("second"))
	data[i] = 'S'                                                        // damage the middle record
	data = append(data, appendFrame(nil, []byte("torn-append"))[:15]...) // a cut-short append
	os.WriteFile(logs[0], data, 0o600)

	s2 := open(t, dir, 1<<20, c)
	objects, reps := sealAll(t, s2)
	for _, v := range objects {
		if v != "first\nthird\n" {
			t.Errorf("sealed %q, want the intact records only", v)
		}
	}
	if len(reps) != 1 || reps[0].TornTail != 15 || len(reps[0].Damaged) != 1 || !bytes.Contains(reps[0].Damaged[0], []byte("Second")) {
		t.Errorf("report %+v", reps)
	}
}

func TestCrashPointsDuringSeal(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t0}
	s, _, _ := Open(dir, 1<<20, c.now)
	s.Append(Stream{"o", "org"}, recs("a"))
	s.Rotate(time.Time{})
	l := s.TakeClosed()[0]
	b, _, err := s.Seal(l, "o/org-k", joinLines)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Crash after the manifest was renamed but before the log was removed: the log reappears.
	os.WriteFile(l.path, appendFrame(nil, []byte("a")), 0o600)
	// Crash before a manifest: an object and temporary files without one.
	stray := filepath.Join(dir, "batches", "o~user~1"+objectSuffix)
	os.WriteFile(stray, []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "batches", "o~user~1"+manifestSuffix+tmpSuffix), []byte("x"), 0o600)

	s2, batches, err := Open(dir, 1<<20, c.now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(batches) != 1 || batches[0].Key != b.Key {
		t.Errorf("batches %+v", batches)
	}
	if got := s2.TakeClosed(); len(got) != 0 {
		t.Errorf("the already sealed log was recovered again: %v", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "batches"))
	if len(entries) != 2 {
		t.Errorf("batches folder after recovery: %v", entries)
	}
	if err := s2.Remove(batches[0]); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "batches")); len(entries) != 0 {
		t.Errorf("Remove left %v", entries)
	}
}

func TestLockAndPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	c := &clock{t0}
	s := open(t, dir, 1<<20, c)
	if _, _, err := Open(dir, 1<<20, c.now); err == nil || !strings.Contains(err.Error(), "in use by another wivaudit instance (pid ") {
		t.Errorf("second Open: %v", err)
	}
	s.Append(Stream{"o", "org"}, recs("a"))
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
	if s2, _, err := Open(dir, 1<<20, c.now); err != nil {
		t.Errorf("Open after Close: %v", err)
	} else {
		s2.Close()
	}
}

func TestUnsafeStreamNames(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20, &clock{t0})
	for _, st := range []Stream{{"../x", "org"}, {"a/b", "org"}, {"a~b", "org"}, {"", "org"}, {"o", ".."}} {
		if err := s.Append(st, recs("x")); err == nil {
			t.Errorf("%v accepted", st)
		}
	}
}
