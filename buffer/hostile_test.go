package buffer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/wal"
)

// Cases found by attacking the store: each failed before its fix.

// A manifest lost after its batch was sealed: the object is the records' only copy, so recovery keeps it.
func TestObjectWithoutManifestIsKept(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s, _, _ := Open(dir, opts(1<<20, c))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	sealAll(t, s)
	s.Close()
	m, _ := filepath.Glob(filepath.Join(dir, batchesFolder, "*"+manifestSuffix))
	os.Remove(m[0])
	s2, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(rec.MovedAside) != 1 || !strings.Contains(rec.MovedAside[0], "no-manifest") {
		t.Errorf("moved aside %v, want the object", rec.MovedAside)
	}
}

// Two batches quarantined under the same name (the key clock stepped back onto the same millisecond) are
// both kept.
func TestQuarantineNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	o := opts(1<<20, c)
	o.KeyClock = func() time.Time { return t0 }
	for _, rec := range []string{"a/org:first", "a/org:second"} {
		s, _, _ := Open(dir, o)
		commit(t, s, rec)
		s.Rotate(time.Time{})
		r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
		if err := s.Quarantine(r.Batch); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if m, _ := filepath.Glob(filepath.Join(dir, quarantineFolder, "*"+objectSuffix)); len(m) != 2 {
		t.Errorf("%d quarantined objects, want 2", len(m))
	}
	if m, _ := filepath.Glob(filepath.Join(dir, quarantineFolder, "*"+manifestSuffix)); len(m) != 2 {
		t.Errorf("%d quarantined manifests, want 2", len(m))
	}
}

// A clock that ran ahead and was set right does not hold new batches open for as long as it was ahead.
func TestAgeIsArrivalNotKeyMillisecond(t *testing.T) {
	c := &clock{t: t0.Add(time.Hour)}
	s := open(t, t.TempDir(), opts(1<<20, c))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	sealAll(t, s)
	c.set(t0)
	commit(t, s, "a/org:2")
	c.set(t0.Add(10 * time.Minute))
	s.Rotate(c.now().Add(-5 * time.Minute))
	if len(s.TakeClosed()) != 1 {
		t.Error("a record 10 minutes old was not closed with a 5-minute cutoff")
	}
}

// The "sealed" entry could not be appended: the batch is still delivered once, and its records are not
// gathered again after it is removed.
func TestUnmarkedBatchIsMarkedBeforeRemoval(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	o := opts(1<<20, c)
	o.SegmentSize = 60
	s, _, _ := Open(dir, o)
	commit(t, s, "a/org:1234567890")
	s.Rotate(time.Time{})
	wal := filepath.Join(dir, walFolder)
	if exec.Command("chattr", "+i", wal).Run() != nil {
		t.Skip("chattr +i is not available here")
	}
	r := s.Seal(s.TakeClosed(), naming, joinLines)[0]
	exec.Command("chattr", "-i", wal).Run()
	if r.Report.Unreleased == nil {
		t.Fatal("the log could not take the entry, yet the seal reports nothing")
	}
	if err := s.Remove(r.Batch); err != nil {
		t.Fatal(err)
	}
	killed(t, dir)
	s2, rec, _ := Open(dir, o)
	defer s2.Close()
	if again := everything(t, s2, rec); len(again) > 0 {
		t.Errorf("delivered again after a restart: %v", again)
	}
}

// A segment that cannot be read is moved aside; Open goes on.
func TestUnreadableSegmentIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s, _, _ := Open(dir, opts(1<<20, c))
	commit(t, s, "a/org:1")
	s.Close()
	os.Mkdir(filepath.Join(dir, walFolder, wal.SegmentName(0xff)), 0o700)
	s2, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s2.Close()
	if len(rec.MovedAside) != 1 {
		t.Errorf("moved aside %v", rec.MovedAside)
	}
	if got := everything(t, s2, rec); len(got) != 1 {
		t.Errorf("records %v", got)
	}
}

// The quarantine's usage is counted the same way while running and after a restart.
func TestQuarantineUsageAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s, _, _ := Open(dir, opts(1<<20, c))
	commit(t, s, "a/org:1")
	s.Rotate(time.Time{})
	s.Quarantine(s.Seal(s.TakeClosed(), naming, joinLines)[0].Batch)
	before := s.use.quarantined
	s.Close()
	s2, _, _ := Open(dir, opts(1<<20, c))
	defer s2.Close()
	if s2.use.quarantined != before {
		t.Errorf("quarantine usage %d running, %d after a restart", before, s2.use.quarantined)
	}
}

// A stream name whose batch file names would pass 255 bytes is refused at commit, not acknowledged.
func TestOverlongStreamNamesAreRefused(t *testing.T) {
	s := open(t, t.TempDir(), opts(1<<20, &clock{t: t0}))
	if err := tryCommit(s, strings.Repeat("o", 128)+"/"+strings.Repeat("k", 128)+":x"); err == nil {
		t.Error("accepted")
	}
	if err := tryCommit(s, strings.Repeat("o", 128)+"/user:x"); err != nil {
		t.Errorf("a 128-byte organisation refused: %v", err)
	}
}
