package flbconf

import (
	"maps"
	"slices"
	"testing"
)

// FuzzOutputs reads any bytes as a main configuration file, classic or YAML, that may include a second file
// of any bytes (inc.conf or inc.yaml, and itself): it returns sections or an error, never both and never a
// panic, and every key it returns names a file it read and a line in it, with its value trimmed.
func FuzzOutputs(f *testing.F) {
	f.Add([]byte("[OUTPUT]\n    Name wivaudit\n    Bucket b\n@INCLUDE inc.conf\n"), []byte("[OUTPUT]\n  Name x\n  [G] g\n    K v\n"), false)
	f.Add([]byte("@INCLUDE *.conf\n"), []byte("@INCLUDE inc.conf\n"), false)
	f.Add([]byte("[OUTPUT]\r\n\tName  a \r\n\t\tNested b\r\n# c\n@SET a=b\n"), []byte(""), false)
	f.Add([]byte("includes: [inc.yaml]\npipeline:\n  outputs:\n    - name: wivaudit\n      bucket: [a, b]\n      processors: {logs: []}\n"),
		[]byte("pipeline:\n  outputs:\n    - {name: x, k: v}\n---\nincludes: ['*.yaml']\n"), true)
	f.Add([]byte("pipeline:\n  outputs:\n    - name: &a x\n      b: *a\n"), []byte("\xff"), true)
	f.Fuzz(func(t *testing.T, main, included []byte, yaml bool) {
		files := memFiles{"/etc/fb/inc.conf": string(included), "/etc/fb/inc.yaml": string(included)}
		path := "/etc/fb/fluent-bit.conf"
		if yaml {
			path = "/etc/fb/fluent-bit.yaml"
		}
		files[path] = string(main)
		sections, err := Outputs(files, path)
		if err != nil {
			if sections != nil {
				t.Fatalf("sections and an error: %v", err)
			}
			return
		}
		for _, s := range sections {
			for _, p := range append([]Prop{{File: s.File, Line: s.Line}}, s.Props...) {
				data, ok := files[p.File]
				if !ok || p.Line < 1 || p.Line > len(data)+1 {
					t.Fatalf("%q at line %d: not a line of a file read (%v)", p.Key, p.Line, slices.Sorted(maps.Keys(files)))
				}
				if p.Value != trimSpace(p.Value) {
					t.Fatalf("%q: value %q not trimmed", p.Key, p.Value)
				}
			}
		}
	})
}
