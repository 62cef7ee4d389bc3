package buffer

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFileInFolder(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir, Options{MaxBatch: 1 << 20, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if data, err := s.ReadFileIn("digests", "org-a.json"); data != nil || err != nil {
		t.Errorf("a file never written: %q, %v", data, err)
	}
	for _, v := range []string{"one", "two"} {
		if err := s.WriteFileIn("digests", "org-a.json", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if data, err := s.ReadFileIn("digests", "org-a.json"); string(data) != v || err != nil {
			t.Errorf("read back %q, %v; want %q", data, err, v)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "digests", "org-a.json")); err != nil {
		t.Error(err)
	}
	if err := s.WriteFileIn("../x", "../../y", []byte("z")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x", "y")); err != nil {
		t.Errorf("names are kept inside the store: %v", err)
	}
}
