package buffer

import (
	"errors"
	"os"
	"path/filepath"
)

// ReadFileIn reads a small file the caller keeps in a folder of the store (nil when it does not exist).
func (s *Store) ReadFileIn(folder, name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, filepath.Base(folder), filepath.Base(name)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// WriteFileIn replaces a small file in a folder of the store atomically, creating the folder durably first.
func (s *Store) WriteFileIn(folder, name string, data []byte) error {
	dir := filepath.Join(s.dir, filepath.Base(folder))
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	return replaceFile(filepath.Join(dir, filepath.Base(name)), data)
}
