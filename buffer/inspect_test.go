package buffer

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// storeWithEverything leaves in dir: unsealed records of o1/org, a sealed batch of o1/user, a quarantined
// batch of o2/api, two dead-letter lines and a file set aside by recovery. The store stays open.
func storeWithEverything(t *testing.T, dir string, c *clock) *Store {
	t.Helper()
	s := open(t, dir, opts(1<<20, c))
	commit(t, s, "o1/user:u1", "o1/user:u22", "o2/api:a1")
	s.Rotate(time.Time{})
	var quarantined *Batch
	for _, r := range s.Seal(s.TakeClosed(), naming, joinLines) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.Batch.Org == "o2" {
			quarantined = r.Batch
		}
	}
	if err := s.Quarantine(quarantined); err != nil {
		t.Fatal(err)
	}
	c.set(t0.Add(time.Second))
	commit(t, s, "o1/org:x", "o1/org:yy")
	c.set(t0.Add(2 * time.Second))
	commit(t, s, "o1/org:zzz")
	if _, err := s.DeadLetter([]byte(`{"a":1}` + "\n" + `{"b":2}` + "\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "quarantine", "unreadable~0000000000000001.seg"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	s := storeWithEverything(t, dir, &clock{t: t0})
	got, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	ms := t0.UnixMilli()
	want := &Inspection{
		Streams: []StreamContents{
			{Org: "o1", Kind: "org", Unsealed: Holding{Records: 3, Bytes: 6, Oldest: ms + 1000}},
			{Org: "o1", Kind: "user", Sealed: Holding{Batches: 1, Records: 2, Bytes: int64(len("u1\nu22\n")), Oldest: ms}},
			{Org: "o2", Kind: "api", Quarantined: Holding{Batches: 1, Records: 1, Bytes: int64(len("a1\n")), Oldest: ms}},
		},
		DeadLetters: FileContents{Lines: 2, Bytes: 16},
		SetAside:    []string{"unreadable~0000000000000001.seg"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Inspect:\n got %+v\nwant %+v", got, want)
	}

	// Sealing the open batch moves its records from unsealed to sealed, whichever way the log is read.
	s.Rotate(time.Time{})
	sealAll(t, s)
	got, err = Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	want.Streams[0] = StreamContents{Org: "o1", Kind: "org", Sealed: Holding{Batches: 1, Records: 3, Bytes: int64(len("x\nyy\nzzz\n")), Oldest: ms + 1000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Inspect after sealing:\n got %+v\nwant %+v", got, want)
	}
}

func TestInspectRefusesOtherFolders(t *testing.T) {
	if _, err := Inspect(t.TempDir()); !errors.Is(err, ErrNotStore) {
		t.Errorf("an empty folder: %v", err)
	}
	if _, err := Requeue(t.TempDir(), "", t0); !errors.Is(err, ErrNotStore) {
		t.Errorf("requeue in an empty folder: %v", err)
	}
}

func TestRequeue(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	s := storeWithEverything(t, dir, c)
	later := t0.Add(time.Hour)

	_, err := Requeue(dir, "", later)
	var locked *LockedError
	if !errors.As(err, &locked) || !errors.Is(err, ErrLocked) || locked.Holder != strconv.Itoa(os.Getpid()) {
		t.Fatalf("requeue while the store is open: %v", err)
	}
	s.Close()

	// A batch already in batches/ under the quarantined batch's name is not replaced.
	quarantined, _ := filepath.Glob(filepath.Join(dir, "quarantine", "o2~api~*"+manifestSuffix))
	if len(quarantined) != 1 {
		t.Fatalf("quarantine holds %v", quarantined)
	}
	name := strings.TrimSuffix(filepath.Base(quarantined[0]), manifestSuffix)
	if err := os.WriteFile(filepath.Join(dir, "batches", name+objectSuffix), []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}

	r, err := Requeue(dir, "O1", later) // no quarantined batch of o1
	if err != nil || len(r.Batches) != 0 {
		t.Fatalf("requeue of o1: %+v, %v", r, err)
	}
	r, err = Requeue(dir, "o2", later)
	if err != nil || len(r.Batches) != 1 || r.Batches[0].Org != "o2" || r.Batches[0].Records != 1 {
		t.Fatalf("requeue of o2: %+v, %v", r, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "batches", name+objectSuffix)); string(data) != "other" {
		t.Errorf("requeue replaced a file in batches/: %q", data)
	}
	os.Remove(filepath.Join(dir, "batches", name+objectSuffix))
	if left, _ := filepath.Glob(filepath.Join(dir, "quarantine", "o2~*")); len(left) != 0 {
		t.Errorf("the quarantine still holds %v", left)
	}

	s2, rec, err := Open(dir, opts(1<<20, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var back *Batch
	for _, b := range rec.Batches {
		if b.Org == "o2" {
			back = b
		}
	}
	if back == nil || back.Requeued != later.UnixMilli() || readObject(t, back) != "a1\n" || back.Opened != t0.UnixMilli() {
		t.Fatalf("the requeued batch as the next start reads it: %+v", back)
	}
	if !strings.HasSuffix(back.Key, "-"+strconv.FormatInt(t0.UnixMilli(), 10)) {
		t.Errorf("the requeued batch's key changed: %s", back.Key)
	}
}
