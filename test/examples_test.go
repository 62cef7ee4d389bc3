package test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wiv/out_wivaudit/conf"
)

// section is one [NAME] block of a classic Fluent Bit configuration file.
type section struct {
	name string
	keys conf.Map
}

func readSections(t *testing.T, path string) []section {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []section
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			out = append(out, section{name: strings.ToUpper(strings.Trim(line, "[]")), keys: conf.Map{}})
		case len(out) > 0:
			k, v, _ := strings.Cut(line, " ")
			out[len(out)-1].keys[k] = strings.TrimSpace(v)
		default:
			t.Fatalf("%s: %q outside a section", path, line)
		}
	}
	return out
}

// TestShippedExamplesAreValid: the configurations we ship load as Fluent Bit would load them. Every input is
// buffered on disk and its parser is defined in the Parsers_File next to the configuration, and every wivaudit
// output's settings pass validation once its ${VARIABLES} are set. (demo.conf has no inputs: the host reads
// the demo's events itself.)
func TestShippedExamplesAreValid(t *testing.T) {
	vars := regexp.MustCompile(`\$\{[A-Z_]+\}`)
	values := map[string]string{"${WIV_DESTINATIONS}": "/tmp/destinations.json", "${WIV_ENDPOINT}": "http://127.0.0.1:5000",
		"${WIV_STORE_DIR}": "/tmp/wivaudit-store"}
	for _, name := range []string{"fluent-bit.conf", "demo.conf"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("..", "examples", name)
			parsers := map[string]bool{}
			outputs := 0
			storagePath := ""
			for _, s := range readSections(t, path) {
				switch s.name {
				case "SERVICE":
					storagePath = s.keys.Get("storage.path")
					if file := s.keys.Get("Parsers_File"); file != "" {
						for _, p := range readSections(t, filepath.Join(filepath.Dir(path), file)) {
							parsers[p.keys.Get("Name")] = p.name == "PARSER"
						}
					}
				case "INPUT":
					if storagePath == "" || s.keys.Get("storage.type") != "filesystem" {
						t.Errorf("input %s is not buffered on disk (storage.path, storage.type filesystem)", s.keys.Get("Tag"))
					}
					if p := s.keys.Get("Parser"); p != "" && !parsers[p] {
						t.Errorf("input %s uses parser %q, which its Parsers_File does not define", s.keys.Get("Tag"), p)
					}
				case "OUTPUT":
					if !strings.EqualFold(s.keys.Get("Name"), "wivaudit") {
						continue
					}
					outputs++
					for k, v := range s.keys {
						s.keys[k] = vars.ReplaceAllStringFunc(v, func(x string) string {
							if val, ok := values[x]; ok {
								return val
							}
							t.Errorf("%s: no test value for %s", k, x)
							return x
						})
					}
					c, err := conf.Parse(s.keys)
					if err != nil {
						t.Fatalf("output settings: %v", err)
					}
					if c.Archive() || c.OrgID != "" || c.DestinationsFile == "" {
						t.Errorf("the example does not deliver through a destinations file, as the README recommends: %s", c)
					}
				}
			}
			if outputs == 0 {
				t.Error("no wivaudit output")
			}
		})
	}
}

// TestShippedDestinationsFile: examples/destinations.json, which the README and fluent-bit.conf point to, is a
// valid destinations file.
func TestShippedDestinationsFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "destinations.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := conf.Parse(conf.Map{"Destinations_File": "/fluent-bit/etc/destinations.json"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := conf.ParseDestinations(data, c)
	if err != nil || len(d) != 2 {
		t.Errorf("%d destinations, %v", len(d), err)
	}
}
