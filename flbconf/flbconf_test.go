package flbconf

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// memFiles is a file system in a map of absolute names; relative names are relative to /run.
type memFiles map[string]string

func (m memFiles) abs(name string) string {
	if filepath.IsAbs(name) {
		return filepath.Clean(name)
	}
	return filepath.Join("/run", name)
}

func (m memFiles) ReadFile(name string) ([]byte, error) {
	data, ok := m[m.abs(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return []byte(data), nil
}

func (m memFiles) Glob(pattern string) ([]string, error) {
	var names []string
	for name := range m {
		if ok, err := filepath.Match(m.abs(pattern), name); err != nil {
			return nil, err
		} else if ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

func (m memFiles) RealPath(name string) (string, error) { return m.abs(name), nil }

// dump shows sections one a line: name@file:line then key=value@line for every key.
func dump(sections []Section) string {
	var b strings.Builder
	for _, s := range sections {
		fmt.Fprintf(&b, "%s:%d", s.File, s.Line)
		for _, p := range s.Props {
			fmt.Fprintf(&b, " %s=%s@%d", p.Key, p.Value, p.Line)
			if p.File != s.File {
				fmt.Fprintf(&b, "(%s)", p.File)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

type outputsCase struct {
	name  string
	files memFiles
	path  string
	want  string // dump, or "error: <part of the message>"
}

func checkOutputs(t *testing.T, cases []outputsCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sections, err := Outputs(c.files, c.path)
			got := dump(sections)
			if err != nil {
				got = "error: " + err.Error()
			}
			if want, isErr := strings.CutPrefix(c.want, "error: "); isErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("got %s\nwant an error with %q", got, want)
				}
			} else if got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

func TestClassic(t *testing.T) {
	checkOutputs(t, []outputsCase{
		{"sections and keys", memFiles{"/etc/fb.conf": "" +
			"# comment\n" +
			"[SERVICE]\n" +
			"    Flush 1\n" +
			"[INPUT]\n" +
			"    Name dummy\n" +
			"\n" +
			"[OUTPUT]\n" +
			"    Name    wivaudit\n" +
			"    # a comment in a section\n" +
			"    Bucket   b-one  \r\n" +
			"    Key_Prefix a b/\n" +
			"    External_ID ${WIV_EXTERNAL_ID}\n" +
			"[output]\n" +
			"    Name stdout\n" +
			"    Match *"}, // no newline at the end
			"/etc/fb.conf", "" +
				"/etc/fb.conf:7 Name=wivaudit@8 Bucket=b-one@10 Key_Prefix=a b/@11 External_ID=${WIV_EXTERNAL_ID}@12\n" +
				"/etc/fb.conf:13 Name=stdout@14 Match=*@15\n"},
		{"tab indentation", memFiles{"/etc/fb.conf": "[OUTPUT]\n\tName wivaudit\n\tBucket b\n"},
			"/etc/fb.conf", "/etc/fb.conf:1 Name=wivaudit@2 Bucket=b@3\n"},
		{"a group's keys are not the section's", memFiles{"/etc/fb.conf": "" +
			"[OUTPUT]\n" +
			"  Name wivaudit\n" +
			"  [GROUP] g\n" + // a group line needs a space, as in Fluent Bit
			"    Inner x\n" +
			"  Bucket b\n" +
			"    Nested y\n"},
			"/etc/fb.conf", "/etc/fb.conf:1 Name=wivaudit@2 Bucket=b@5 Nested=y@6\n"},
		{"@SET is a directive, not a key", memFiles{"/etc/fb.conf": "@SET bucket=b\n[OUTPUT]\n    Name wivaudit\n    Bucket ${bucket}\n"},
			"/etc/fb.conf", "/etc/fb.conf:2 Name=wivaudit@3 Bucket=${bucket}@4\n"},
		{"@INCLUDE in place, relative to the current folder first", memFiles{
			"/etc/fb/fb.conf":     "[OUTPUT]\n    Name a\n@INCLUDE out.conf\n    Match a.*\n[OUTPUT]\n    Name c\n",
			"/etc/fb/out.conf":    "[OUTPUT]\n  Name from-root\n",
			"/run/out.conf":       "[OUTPUT]\n  Name from-cwd\n",
			"/etc/fb/unused.conf": "[OUTPUT]\n  Name unused\n"},
			"/etc/fb/fb.conf", "" +
				"/etc/fb/fb.conf:1 Name=a@2 Match=a.*@4\n" +
				"out.conf:1 Name=from-cwd@2\n" +
				"/etc/fb/fb.conf:5 Name=c@6\n"},
		{"@INCLUDE relative to the main file's folder, nested too", memFiles{
			"/etc/fb/fb.conf":      "@INCLUDE sub/one.conf\n",
			"/etc/fb/sub/one.conf": "@INCLUDE two.conf\n",
			"/etc/fb/two.conf":     "[OUTPUT]\n    Name wivaudit\n"},
			"/etc/fb/fb.conf", "/etc/fb/two.conf:1 Name=wivaudit@2\n"},
		{"@INCLUDE a pattern, from the main file's folder", memFiles{
			"/etc/fb/fb.conf":        "[SERVICE]\n    Flush 1\n@include outputs/*.conf\n",
			"/etc/fb/outputs/b.conf": "[OUTPUT]\n    Name b\n",
			"/etc/fb/outputs/a.conf": "[OUTPUT]\n    Name a\n",
			"/run/outputs/c.conf":    "[OUTPUT]\n    Name c\n"},
			"/etc/fb/fb.conf", "/etc/fb/outputs/a.conf:1 Name=a@2\n/etc/fb/outputs/b.conf:1 Name=b@2\n"},
		{"relative main file", memFiles{"/run/fb.conf": "[OUTPUT]\n    Name a\n@INCLUDE x.conf\n", "/run/x.conf": "[OUTPUT]\n    Name x\n"},
			"fb.conf", "fb.conf:1 Name=a@2\nx.conf:1 Name=x@2\n"},
		{"include cycle", memFiles{"/etc/a.conf": "@INCLUDE /etc/b.conf\n", "/etc/b.conf": "@INCLUDE /etc/a.conf\n"},
			"/etc/a.conf", "error: included twice"},
		{"missing include", memFiles{"/etc/a.conf": "@INCLUDE nothere.conf\n"}, "/etc/a.conf", "error: /etc/a.conf:1: @INCLUDE"},
		{"pattern matching nothing", memFiles{"/etc/a.conf": "@INCLUDE x/*.conf\n"}, "/etc/a.conf", "error: no file matches"},
		{"missing file", memFiles{}, "/etc/a.conf", "error: does not exist"},
		{"bad section header", memFiles{"/etc/a.conf": "[OUTPUT\n"}, "/etc/a.conf", "error: /etc/a.conf:1: bad section header"},
		{"key without value", memFiles{"/etc/a.conf": "[OUTPUT]\n    Name\n"}, "/etc/a.conf", "error: /etc/a.conf:2: a key without a value"},
		{"indentation too low", memFiles{"/etc/a.conf": "[OUTPUT]\n    Name a\n  Match b\n"}, "/etc/a.conf", "error: /etc/a.conf:3: indentation"},
		{"extra indentation", memFiles{"/etc/a.conf": "[OUTPUT]\n  Name a\n     Match b\n"}, "/etc/a.conf", "error: /etc/a.conf:3: extra indentation"},
		{"key outside a section", memFiles{"/etc/a.conf": "    Name a\n"}, "/etc/a.conf", "error: /etc/a.conf:1: a key outside any section"},
	})
}

func TestYAML(t *testing.T) {
	checkOutputs(t, []outputsCase{
		{"pipeline outputs", memFiles{"/etc/fb.yaml": `
env:
  BUCKET: b
service:
  flush: 1
pipeline:
  inputs:
    - name: dummy
  outputs:
    - name: wivaudit
      match: 'audit.*'
      Bucket: ${BUCKET}
      upload_workers: 8
      key_prefix: "a b/"
      processors:
        logs:
          - name: content_modifier
      list: [first, second]
      empty:
    - Name: stdout
`}, "/etc/fb.yaml", "" +
			"/etc/fb.yaml:10 name=wivaudit@10 match=audit.*@11 Bucket=${BUCKET}@12 upload_workers=8@13 key_prefix=a b/@14 list=first@18 empty=@19\n" +
			"/etc/fb.yaml:20 Name=stdout@20\n"},
		{"includes relative to the including file, in place", memFiles{
			"/etc/fb/fb.yml":           "includes:\n  - sub/outputs.yaml\npipeline:\n  outputs:\n    - name: last\n",
			"/etc/fb/sub/outputs.yaml": "includes: [more/*.yaml]\npipeline:\n  outputs:\n    - name: sub\n",
			"/etc/fb/sub/more/a.yaml":  "pipeline:\n  outputs:\n    - name: a\n"},
			"/etc/fb/fb.yml", "" +
				"/etc/fb/sub/more/a.yaml:3 name=a@3\n" +
				"/etc/fb/sub/outputs.yaml:4 name=sub@4\n" +
				"/etc/fb/fb.yml:5 name=last@5\n"},
		{"the extension in any case", memFiles{"/etc/FB.YML": "pipeline:\n  outputs:\n    - name: a\n"}, "/etc/FB.YML", "/etc/FB.YML:3 name=a@3\n"},
		{"every document", memFiles{"/etc/fb.yaml": "pipeline:\n  outputs:\n    - name: a\n---\npipeline:\n  outputs:\n    - name: b\n"},
			"/etc/fb.yaml", "/etc/fb.yaml:3 name=a@3\n/etc/fb.yaml:7 name=b@7\n"},
		{"other shapes are not outputs", memFiles{"/etc/fb.yaml": "pipeline:\n  outputs: {name: a}\n---\n- pipeline\n---\nplain\n"}, "/etc/fb.yaml", ""},
		{"invalid YAML", memFiles{"/etc/fb.yaml": "pipeline:\n  outputs:\n    - name: a\n   bad: [\n"}, "/etc/fb.yaml", "error: /etc/fb.yaml"},
		{"include cycle", memFiles{"/etc/a.yaml": "includes: [b.yaml]\n", "/etc/b.yaml": "includes: [a.yaml]\n"}, "/etc/a.yaml", "error: included twice"},
		{"include not a name", memFiles{"/etc/a.yaml": "includes: [[x]]\n"}, "/etc/a.yaml", "error: /etc/a.yaml:1: include: not a file name"},
	})
}

func TestSectionGet(t *testing.T) {
	s := Section{Props: []Prop{{Key: "NAME", Value: "wivaudit"}, {Key: "Bucket", Value: "a"}, {Key: "bucket", Value: "b"}}}
	if s.Name() != "wivaudit" {
		t.Errorf("Name %q", s.Name())
	}
	if p, ok := s.Get("BUCKET"); !ok || p.Value != "a" {
		t.Errorf("Get: %+v %v, want the first", p, ok)
	}
	if _, ok := s.Get("Region"); ok || (Section{}).Name() != "" {
		t.Error("a key not written was found")
	}
}

// TestOSReadsOnlyRegularFiles: a configuration given as a FIFO (Fluent Bit read it at start) is not opened
// again, which would wait for a writer for ever, nor is a folder.
func TestOSReadsOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fluent-bit.conf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, dir} {
		if _, err := Outputs(OS, path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("%s: %v", path, err)
		}
	}
	regular := filepath.Join(dir, "fb.conf")
	if err := os.WriteFile(regular, []byte("[OUTPUT]\n    Name wivaudit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Outputs(OS, regular); err != nil || len(s) != 1 || s[0].Name() != "wivaudit" {
		t.Errorf("a regular file: %v, %v", s, err)
	}
}
