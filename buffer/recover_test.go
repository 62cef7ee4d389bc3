package buffer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/wal"
)

// crashed is what the test crash hook panics with; the store is then abandoned as a killed process leaves it.
type crashed struct{ point string }

func crashAt(point string) func(string) {
	return func(p string) {
		if p == point {
			panic(crashed{p})
		}
	}
}

// expectCrash runs f and reports whether it stopped at a crash point.
func expectCrash(t *testing.T, point string, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if c, ok := r.(crashed); !ok || c.point != point {
			t.Fatalf("expected a crash at %s, got %v", point, r)
		}
	}()
	f()
}

// killed does what the kernel does for a killed process: it closes the files the store had open under dir,
// its lock among them, and nothing else. Each descriptor is replaced by /dev/null rather than closed, so that
// its number stays taken until the abandoned *os.File lets it go.
func killed(t *testing.T, dir string) {
	t.Helper()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			n, _ := strconv.Atoi(fd.Name())
			if err := syscall.Dup3(int(null.Fd()), n, syscall.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// everything seals what is pending and returns the records of every batch in the store (delivered or not),
// with the batches.
func everything(t *testing.T, s *Store, rec *Recovery) []string {
	t.Helper()
	objects := map[string]string{}
	for _, b := range rec.Batches {
		objects[b.Key] = readObject(t, b)
	}
	for _, p := range rec.InLog {
		objects[p.Key()] = compose(t, s, s.BatchOf(p))
	}
	s.Rotate(time.Time{})
	sealed, _ := sealAll(t, s)
	for k, v := range sealed {
		objects[k] = v
	}
	return lines(objects)
}

func TestRecoverRebuildsTheIndex(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s, _, _ := Open(dir, opts(1<<20, c))
	commit(t, s, "a/org:1", "b/org:2", "a/user:3")
	commit(t, s, "a/org:4")
	s.Rotate(time.Time{})
	for _, p := range s.TakeClosed() {
		if p.Stream == (Stream{"b", "org"}) {
			if _, _, err := sealOne(s, p); err != nil {
				t.Fatal(err)
			}
		} else {
			s.PutBack(p)
		}
	}
	commit(t, s, "a/org:5")
	s.Close()

	s2, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(rec.Batches) != 1 || rec.Pending != 2 {
		t.Errorf("recovered %d batches and %d to seal, want 1 and 2", len(rec.Batches), rec.Pending)
	}
	if got := everything(t, s2, rec); !slices.Equal(got, []string{"1", "2", "3", "4", "5"}) {
		t.Errorf("records %v: every record once", got)
	}
	s2.Close()
	// Sealed and not removed: the third start finds the batches only.
	s3, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if len(rec.Batches) != 3 || rec.Pending != 0 {
		t.Errorf("third start: %d batches, %d pending", len(rec.Batches), rec.Pending)
	}
}

// TestCrashPoints stops the store at each crash point, abandons it as a killed process would, and opens it
// again: every acknowledged record is in exactly one batch, an unacknowledged one in at most one, and Open
// always succeeds.
func TestCrashPoints(t *testing.T) {
	for _, point := range []string{CrashAfterWrite, CrashMidSeal, CrashAfterObject, CrashAfterManifest, CrashDuringRecovery} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			c := &clock{t: t0}
			o := opts(1<<20, c)
			s, _, _ := Open(dir, o)
			commit(t, s, "a/org:1", "b/api:2", "a/org:3")
			commit(t, s, "b/api:4")
			s.Rotate(time.Time{})
			commit(t, s, "a/org:5")
			s.opt.Crash = crashAt(point)
			switch point {
			case CrashAfterWrite:
				expectCrash(t, point, func() { commit(t, s, "a/org:6") })
			case CrashDuringRecovery:
				s.Close()
				o.Crash = crashAt(point)
				expectCrash(t, point, func() { Open(dir, o) })
				o.Crash = nil
			default:
				expectCrash(t, point, func() { sealAll(t, s) })
			}
			killed(t, dir)

			s2, rec, err := Open(dir, o)
			if err != nil {
				t.Fatalf("Open after the crash: %v", err)
			}
			defer s2.Close()
			got := strings.Join(everything(t, s2, rec), " ")
			if got != "1 2 3 4 5" && got != "1 2 3 4 5 6" {
				t.Errorf("records after a crash at %s: %s; want each acknowledged record once", point, got)
			}
		})
	}
}

// TestClockStepBackNeverReusesAKey: batches sealed and not yet delivered keep their streams' milliseconds
// taken, through rotations and restarts, whatever the clock does; no batch replaces another.
func TestClockStepBackNeverReusesAKey(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s, _, _ := Open(dir, opts(1<<20, c))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	first, _ := sealAll(t, s) // its upload keeps failing: it stays
	c.set(t0.Add(-time.Hour))
	for range 3 {
		s.Rotate(c.now()) // rotations used to forget the stream's last millisecond
	}
	commit(t, s, "a/org:2")
	s.Rotate(time.Time{})
	second, _ := sealAll(t, s)
	s.Close()
	s2, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	c.set(t0.Add(-2 * time.Hour))
	commit(t, s2, "a/org:3")
	if ms := s2.NextMs(Stream{"a", "org"}); ms <= t0.UnixMilli()+1 {
		t.Errorf("NextMs = %d after a restart with the clock back, want past %d", ms, t0.UnixMilli()+1)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range first {
			yield(k)
		}
		for k := range second {
			yield(k)
		}
	})
	if len(keys) != 2 || keys[0] == keys[1] {
		t.Errorf("keys %v", keys)
	}
	if got := everything(t, s2, rec); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("records %v", got)
	}
}

func TestUnusableBatchesAreMovedAside(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s, _, _ := Open(dir, opts(1<<20, c))
	commit(t, s, "a/org:1", "b/org:2", "c/org:3")
	s.Rotate(time.Time{})
	var batches []*Batch
	for _, p := range s.TakeClosed() {
		b, _, _ := sealOne(s, p)
		batches = append(batches, b)
	}
	s.Close()
	slices.SortFunc(batches, func(a, b *Batch) int { return strings.Compare(a.Org, b.Org) })
	os.WriteFile(batches[0].manifest, []byte("{not json"), 0o600) // unreadable manifest
	os.Remove(batches[1].object)                                  // manifest without its object

	s2, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatalf("Open with unusable batches: %v", err)
	}
	defer s2.Close()
	if len(rec.Batches) != 1 || rec.Batches[0].Org != "c" {
		t.Errorf("recovered %v", rec.Batches)
	}
	if len(rec.MovedAside) != 3 {
		t.Errorf("moved aside %v, want the two manifests and the one object", rec.MovedAside)
	}
	for _, p := range rec.MovedAside {
		if filepath.Dir(p) != filepath.Join(dir, quarantineFolder) {
			t.Errorf("%s is not in the quarantine folder", p)
		}
	}
}

func TestTornTailAndDamagedMiddle(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s, _, _ := Open(dir, opts(1<<20, c))
	commit(t, s, "o/org:first")
	commit(t, s, "o/org:second")
	commit(t, s, "o/org:third")
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, walFolder, "*.seg"))
	data, _ := os.ReadFile(segs[0])
	data[bytes.Index(data, []byte("second"))] = 'S' // damage the middle run
	torn := wal.AppendFrame(nil, []byte("cut-short-append-xyz"))
	data = append(data, torn[:15]...) // an append cut short
	os.WriteFile(segs[0], data, 0o600)

	s2, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if rec.TornTail != 15 || len(rec.Damaged) != 1 || !bytes.Contains(rec.Damaged[0], []byte("Second")) {
		t.Errorf("recovery %+v", rec)
	}
	if got := everything(t, s2, rec); !slices.Equal(got, []string{"first", "third"}) {
		t.Errorf("records %v, want the intact ones", got)
	}
}

// TestSegmentsGoInOrderOnceSealed: a segment goes when nothing in it or before it is unsealed, and a restart
// after that gathers nothing twice.
func TestSegmentsGoInOrderOnceSealed(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	o := opts(1<<20, c)
	o.SegmentSize = 64
	s, _, _ := Open(dir, o)
	commit(t, s, "slow/org:"+strings.Repeat("s", 60)) // segment 1
	for i := range 4 {
		commit(t, s, fmt.Sprintf("fast/org:%d%s", i, strings.Repeat("f", 60))) // one segment each
	}
	segments := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, walFolder, "*.seg"))
		return len(m)
	}
	before := segments()
	s.Rotate(time.Time{})
	var slow *Pending
	for _, p := range s.TakeClosed() {
		if p.Org == "slow" {
			slow = p
			continue
		}
		if _, _, err := sealOne(s, p); err != nil {
			t.Fatal(err)
		}
	}
	if n := segments(); n < before {
		t.Errorf("%d segments after sealing the later ones, had %d: the oldest still holds unsealed runs", n, before)
	}
	s.Close()
	s2, rec, err := Open(dir, o) // the slow batch is recovered, the sealed runs are not gathered again
	if err != nil {
		t.Fatal(err)
	}
	if rec.Pending != 1 || len(rec.Batches) != 1 {
		t.Errorf("recovered %d pending, %d batches; want 1 and 1", rec.Pending, len(rec.Batches))
	}
	got := everything(t, s2, rec)
	if len(got) != 5 {
		t.Errorf("records %v", got)
	}
	if n := segments(); n != 1 {
		t.Errorf("%d segments once everything is sealed, want the active one only", n)
	}
	s2.Close()
	_ = slow
}

// TestLegacyStoreIsTakenOver opens a Store_Dir written by the layout before the write-ahead log (a fixture
// made by that code: per-stream logs, a sealed batch, a stream's last millisecond in state/).
func TestLegacyStoreIsTakenOver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(dir, os.DirFS("testdata/legacy-v1")); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.UnixMilli(1764400000000)} // the fixture's own time: its milliseconds are not past
	s, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(rec.Batches) != 1 || rec.Pending != 4 {
		t.Fatalf("recovered %d batches, %d to seal; want 1 and 4", len(rec.Batches), rec.Pending)
	}
	objects := map[string]string{rec.Batches[0].Key: gunzip(t, readObject(t, rec.Batches[0]))}
	for _, p := range s.TakeClosed() {
		b, _, err := sealOne(s, p)
		if err != nil {
			t.Fatal(err)
		}
		objects[b.Key] = readObject(t, b)
	}
	var ids []string
	for _, o := range objects {
		for _, l := range strings.Fields(strings.NewReplacer("[", "", "]", "", ",{", " {").Replace(o)) {
			var r struct{ ID string }
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("record %q: %v", l, err)
			}
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	want := []string{"org-a-org-0", "org-a-org-1", "org-a-org-2", "org-a-user-0", "org-a-user-1", "org-a-user-2",
		"org-b-api-0", "org-b-api-1", "org-b-api-2", "org-b-api-3", "org-c-user-0"}
	if !slices.Equal(ids, want) {
		t.Errorf("records %v, want %v", ids, want)
	}
	for _, gone := range []string{legacyLogs, legacyState} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after every legacy log was sealed: %v", gone, err)
		}
	}
	if ms := s.NextMs(Stream{"org-d", "org"}); ms <= 1764400000028 { // state/org-d~org
		t.Errorf("NextMs = %d: the legacy state's last millisecond was not kept", ms)
	}
}

func gunzip(t *testing.T, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(zr)
	return string(b)
}
