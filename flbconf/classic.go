package flbconf

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// classicFile reads a classic configuration file, relative includes resolved against its folder.
func (r *reader) classicFile(path string) error {
	real, err := r.files.RealPath(path)
	if err != nil {
		return err
	}
	return r.classicRead(path, filepath.Dir(real))
}

// classicInclude reads the file an @INCLUDE names. Like Fluent Bit, a relative name is tried from the
// current folder first, then from root, the main file's folder; a pattern only from root.
func (r *reader) classicInclude(name, root string) error {
	if strings.Contains(name, "*") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(root, name)
		}
		return r.glob(name, func(n string) error { return r.classicRead(n, root) })
	}
	data, err := r.load(name)
	if errors.Is(err, fs.ErrNotExist) && !filepath.IsAbs(name) {
		name = filepath.Join(root, name)
		data, err = r.load(name)
	}
	if err != nil {
		return err
	}
	return r.classic(name, data, root)
}

func (r *reader) classicRead(name, root string) error {
	data, err := r.load(name)
	if err != nil {
		return err
	}
	return r.classic(name, data, root)
}

// classic reads one file in Fluent Bit's classic format (read_config in flb_cf_fluentbit.c): sections start
// with [NAME] in the first column; the first indented line sets the file's indentation; a key line is
// indented by it, the key ends at the first space and the rest, trimmed, is the value; a line indented twice
// belongs to the group a [GROUP] line opened, if any; # starts a comment line; @INCLUDE reads another file
// in place and other @ lines (@SET) are directives.
func (r *reader) classic(file string, data []byte, root string) error {
	var (
		indent     string
		haveIndent bool
		inSection  bool // some section started in this file
		output     = -1 // index in r.out of the [OUTPUT] section being read, or -1
		inGroup    bool
	)
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		fail := func(msg string) error { return fmt.Errorf("%s:%d: %s", file, n, msg) }
		line = strings.TrimSuffix(line, "\r")
		switch {
		case line == "" || line[0] == '#':
			continue
		case len(line) > 9 && strings.EqualFold(line[:9], "@INCLUDE "):
			if err := r.classicInclude(line[9:], root); err != nil {
				return fmt.Errorf("%s:%d: @INCLUDE: %w", file, n, err)
			}
			continue
		case line[0] == '@' && len(line) > 3:
			continue
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return fail("bad section header")
			}
			inSection, inGroup, output = true, false, -1
			if strings.EqualFold(line[1:end], "output") {
				r.out = append(r.out, Section{File: file, Line: n})
				output = len(r.out) - 1
			}
			continue
		}
		if !haveIndent {
			j := 1
			for j < len(line) && isBlank(line[j]) {
				j++
			}
			indent, haveIndent = line[:j], true
			if j == len(line) {
				continue
			}
		}
		level := 0
		for level < len(indent) && level < len(line) && line[level] == indent[level] {
			level++
		}
		if level < len(indent) {
			return fail("indentation differs from the file's first indented line")
		}
		nested := false
		if level < len(line) && isBlank(line[level]) {
			extra := 0
			for level+extra < len(line) && isBlank(line[level+extra]) {
				extra++
			}
			if extra != level {
				return fail("extra indentation")
			}
			level, nested = level+extra, true
		} else {
			inGroup = false
		}
		if level == len(line) || line[level] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line[level:], " ")
		if !ok {
			return fail("a key without a value")
		}
		if key[0] == '[' {
			if !strings.Contains(line[level:], "]") || !inSection {
				return fail("bad group header")
			}
			inGroup = true
			continue
		}
		if value == "" {
			return fail("a key with an empty value")
		}
		if !inSection {
			return fail("a key outside any section")
		}
		if output >= 0 && !(nested && inGroup) {
			r.out[output].Props = append(r.out[output].Props,
				Prop{Key: trimSpace(key), Value: trimSpace(value), File: file, Line: n})
		}
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// trimSpace trims what C's isspace matches, as Fluent Bit trims keys and values.
func trimSpace(s string) string { return strings.Trim(s, " \t\n\v\f\r") }
