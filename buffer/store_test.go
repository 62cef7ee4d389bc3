package buffer

import (
	"bytes"
	"errors"
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

func opts(maxLog int64, c *clock) Options {
	return Options{MaxLog: maxLog, QuarantineLimit: 1 << 20, Now: c.now}
}

func open(t *testing.T, dir string, maxLog int64, c *clock) *Store {
	t.Helper()
	s, _, err := Open(dir, opts(maxLog, c))
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
		b, rep, err := s.Seal(l, fmt.Sprintf("%s/%s-%d", l.Org, l.Kind, l.Opened), "", joinLines)
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
	s, _, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	s.Append(Stream{"o", "api"}, recs("sealed"))
	s.Rotate(time.Time{})
	for _, l := range s.TakeClosed() {
		if _, _, err := s.Seal(l, "o/api-key", "", joinLines); err != nil {
			t.Fatal(err)
		}
	}
	s.Append(Stream{"o", "user"}, recs("open-1", "open-2"))
	s.Close() // as after a crash: nothing else is done

	s2, batches, err := Open(dir, opts(1<<20, c))
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
	s, _, _ := Open(dir, opts(1<<20, c))
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
	s, _, _ := Open(dir, opts(1<<20, c))
	s.Append(Stream{"o", "org"}, recs("a"))
	s.Rotate(time.Time{})
	l := s.TakeClosed()[0]
	b, _, err := s.Seal(l, "o/org-k", "", joinLines)
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

	s2, batches, err := Open(dir, opts(1<<20, c))
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
	if _, _, err := Open(dir, opts(1<<20, c)); err == nil || !strings.Contains(err.Error(), "in use by another wivaudit instance (pid ") {
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
	if s2, _, err := Open(dir, opts(1<<20, c)); err != nil {
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

func sealOne(t *testing.T, s *Store) *Batch {
	t.Helper()
	s.Rotate(time.Time{})
	closed := s.TakeClosed()
	if len(closed) != 1 {
		t.Fatalf("%d closed logs, want 1", len(closed))
	}
	b, _, err := s.Seal(closed[0], fmt.Sprintf("k-%d", closed[0].Opened), "", joinLines)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLimitCountsLogsBatchesAndRecoveredData(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t0}
	o := opts(1<<20, c)
	o.Limit = 100
	s, _, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	st := Stream{"o", "org"}
	const framed = 40 + FrameOverhead
	if !s.Reserve(framed) {
		t.Fatal("no room in an empty store")
	}
	if s.Reserve(framed) {
		t.Fatal("a second claim fits while the first is under way")
	}
	if err := s.Append(st, recs(strings.Repeat("a", 40))); err != nil {
		t.Fatal(err)
	}
	s.Release(framed)
	if s.Reserve(framed) {
		t.Fatal("a claim past the limit was granted")
	}
	used, _ := s.Usage()
	s.Close()

	s, batches, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := s.Usage(); got != used || len(batches) != 0 {
		t.Errorf("recovered usage %d, want %d", got, used)
	}
	b := sealOne(t, s)
	if got, _ := s.Usage(); got != b.ObjectBytes {
		t.Errorf("usage after sealing %d, want the object's %d", got, b.ObjectBytes)
	}
	if err := s.Remove(b); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Usage(); got != 0 {
		t.Errorf("usage after removal %d", got)
	}
	if !s.Reserve(framed) {
		t.Errorf("no room after space was freed")
	}
}

func TestKeysNeverRepeatAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t0} // frozen: only persisted state keeps keys apart
	st := Stream{"o", "org"}
	s, _, _ := Open(dir, opts(1<<20, c))
	s.Append(st, recs("a"))
	b := sealOne(t, s)
	if err := s.Rekey(b, "k-rekeyed", b.KeyMs+5); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAttempt(b); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, batches, _ := Open(dir, opts(1<<20, c))
	if len(batches) != 1 || batches[0].Key != "k-rekeyed" || batches[0].KeyMs != t0.UnixMilli()+5 || batches[0].Attempts != 1 {
		t.Fatalf("recovered %+v", batches)
	}
	if err := s.Remove(batches[0]); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, _, _ = Open(dir, opts(1<<20, c)) // nothing left but the state
	defer s.Close()
	if ms := s.NextMs(st); ms != t0.UnixMilli()+6 {
		t.Errorf("NextMs after restart %d, want %d", ms, t0.UnixMilli()+6)
	}
}

func TestQuarantine(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t0}
	o := opts(1<<20, c)
	s, _, _ := Open(dir, o)
	s.Append(Stream{"o", "org"}, recs("a"))
	b := sealOne(t, s)
	s.Append(Stream{"o", "api"}, recs("b"))
	b2 := sealOne(t, s)
	if err := s.Quarantine(b); err != nil {
		t.Fatal(err)
	}
	obj, man := b.Files()
	if filepath.Dir(obj) != s.QuarantineDir() || filepath.Dir(man) != s.QuarantineDir() {
		t.Errorf("files %s %s", obj, man)
	}
	if used, _ := s.Usage(); used != b2.ObjectBytes {
		t.Errorf("usage %d after quarantine, want %d", used, b2.ObjectBytes)
	}
	s.Close()

	o.QuarantineLimit = b.ObjectBytes + 10 // no room for a second batch
	s, batches, _ := Open(dir, o)
	defer s.Close()
	if len(batches) != 1 || batches[0].Key != b2.Key {
		t.Errorf("quarantined batch came back for upload: %+v", batches)
	}
	if err := s.Quarantine(batches[0]); !errors.Is(err, ErrQuarantineFull) {
		t.Errorf("quarantine past its limit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "batches", filepath.Base(obj))); !os.IsNotExist(err) {
		t.Errorf("object still in batches: %v", err)
	}
}

func TestAppendAllManyStreams(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20, &clock{t0})
	var batch []Records
	for i := range 3*maxOpenLogs + 5 {
		batch = append(batch, Records{Stream{fmt.Sprintf("org-%d", i), "api"}, recs(fmt.Sprintf(`{"i":%d}`, i))})
	}
	if err := s.AppendAll(batch); err != nil {
		t.Fatal(err)
	}
	s.Rotate(time.Time{})
	objects, _ := sealAll(t, s)
	if len(objects) != len(batch) {
		t.Errorf("%d objects for %d streams", len(objects), len(batch))
	}
}

func TestDeadLetterLimit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	c := &clock{t0}
	o := opts(1<<20, c)
	o.DeadLetterLimit = 10
	s, _, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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

func TestOldestLogCoversOpenAndClosedLogs(t *testing.T) {
	c := &clock{t0}
	s := open(t, t.TempDir(), 1<<20, c)
	if _, ok := s.OldestLog(); ok {
		t.Fatal("an empty store has an oldest log")
	}
	a, b := Stream{"a", "org"}, Stream{"b", "org"}
	s.Append(a, recs("1"))
	c.t = t0.Add(time.Second)
	s.Append(b, recs("2"))
	want := func(step string, at time.Time) {
		t.Helper()
		if ms, ok := s.OldestLog(); !ok || ms != at.UnixMilli() {
			t.Errorf("%s: oldest %d (%v), want %d", step, ms, ok, at.UnixMilli())
		}
	}
	want("both open", t0)
	s.Rotate(t0) // closes a's log: it waits to be sealed
	want("a closed", t0)
	s.TakeClosed()
	want("a taken for sealing", t0.Add(time.Second))
	s.Rotate(time.Time{})
	s.TakeClosed()
	if ms, ok := s.OldestLog(); ok {
		t.Errorf("every log taken, yet oldest %d", ms)
	}
}
