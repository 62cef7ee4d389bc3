package buffer

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/wiv/out_wivaudit/vfs"
)

// ReadFileIn reads a small file the caller keeps in a folder of the store (nil when it does not exist).
func (s *Store) ReadFileIn(folder, name string) ([]byte, error) {
	data, err := vfs.ReadFile(s.fs, filepath.Join(s.dir, filepath.Base(folder), filepath.Base(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// WriteFileIn replaces a small file in a folder of the store atomically, creating the folder durably first.
func (s *Store) WriteFileIn(folder, name string, data []byte) error {
	dir := filepath.Join(s.dir, filepath.Base(folder))
	if _, err := s.fs.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := s.fs.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := s.fs.SyncDir(s.dir); err != nil {
			return err
		}
	}
	return replaceFile(s.fs, filepath.Join(dir, filepath.Base(name)), data)
}
