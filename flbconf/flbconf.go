// Package flbconf reads what this plugin needs of the configuration Fluent Bit was started with: the file
// named by -c on its command line, classic (.conf) or YAML (.yaml, .yml), with the files it includes, and of it
// only the output sections, each key with the file and line it is written on. It follows Fluent Bit's own
// readers (src/config_format/flb_cf_fluentbit.c and flb_cf_yaml.c): a file Fluent Bit accepts gives the keys
// and values Fluent Bit gave the output, except that ${VAR} references are left as written; a file it refuses
// may give an error or sections Fluent Bit never had, which callers must not trust blindly.
package flbconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Prop is one key of a section as written: its value trimmed, ${VAR} references not expanded.
type Prop struct {
	Key, Value string
	File       string
	Line       int
}

// Where is the file and line of the key, as file:line.
func (p Prop) Where() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Section is one output: its keys in the order written, Name among them. Nested blocks (groups in a classic
// file, processors in YAML) are left out: they are not the output's keys.
type Section struct {
	File  string
	Line  int
	Props []Prop
}

// Name is the value of the section's Name key, or "".
func (s Section) Name() string {
	if p, ok := s.Get("name"); ok {
		return p.Value
	}
	return ""
}

// Get returns the first key named key in any case, as Fluent Bit looks a property up.
func (s Section) Get(key string) (Prop, bool) {
	for _, p := range s.Props {
		if strings.EqualFold(p.Key, key) {
			return p, true
		}
	}
	return Prop{}, false
}

// Files reads configuration files.
type Files interface {
	ReadFile(name string) ([]byte, error)
	// Glob returns the names matching pattern (filepath.Match syntax).
	Glob(pattern string) ([]string, error)
	// RealPath returns name made absolute, with symbolic links resolved (realpath(3)).
	RealPath(name string) (string, error)
}

// OS reads the machine's files.
var OS Files = osFiles{}

type osFiles struct{}

// ReadFile reads only regular files: opening a FIFO whose writer has gone (Fluent Bit read the configuration
// from it already) would block Init for ever.
func (osFiles) ReadFile(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	return os.ReadFile(name)
}

func (osFiles) Glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }
func (osFiles) RealPath(name string) (string, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// maxFiles bounds the files one configuration reads, as Fluent Bit does (FLB_CF_FILE_NUM_LIMIT).
const maxFiles = 1000

// Outputs reads the configuration file path, and the files it includes, and returns its output sections in
// the order Fluent Bit creates them. Like Fluent Bit, it reads path as YAML when it ends in .yaml or .yml (in
// any case), else in the classic format.
func Outputs(files Files, path string) ([]Section, error) {
	r := &reader{files: files, read: map[string]bool{}}
	var err error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		err = r.yamlFile(path)
	default:
		err = r.classicFile(path)
	}
	if err != nil {
		return nil, err
	}
	return r.out, nil
}

// reader collects the output sections of one configuration, across its files.
type reader struct {
	files Files
	read  map[string]bool
	out   []Section
}

// load reads one file of the configuration, refusing to read more than maxFiles or one file twice (an
// include cycle, which Fluent Bit refuses too).
func (r *reader) load(name string) ([]byte, error) {
	if len(r.read) >= maxFiles {
		return nil, fmt.Errorf("more than %d files", maxFiles)
	}
	clean := filepath.Clean(name)
	if r.read[clean] {
		return nil, fmt.Errorf("%s is included twice", name)
	}
	data, err := r.files.ReadFile(name)
	if err == nil {
		r.read[clean] = true
	}
	return data, err
}

// glob reads every file a pattern of an include matches, in order; like Fluent Bit, a pattern that matches
// nothing is an error.
func (r *reader) glob(pattern string, parse func(string) error) error {
	names, err := r.files.Glob(pattern)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return errors.New(pattern + ": no file matches")
	}
	for _, n := range names {
		if err := parse(n); err != nil {
			return err
		}
	}
	return nil
}
