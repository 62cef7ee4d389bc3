package conf

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// configurationDoc is the operators' list of every key.
const configurationDoc = "../docs/configuration.md"

// docRow is one row of the configuration doc's key table.
type docRow struct {
	line                 int
	key, deflt, accepted string
}

// keyTable reads the rows of the table whose header is | Key | Default | Range | Meaning |.
func keyTable(doc string) ([]docRow, error) {
	var rows []docRow
	in := false
	for i, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "| Key | Default | Range | Meaning |"):
			in = true
		case !in || strings.HasPrefix(line, "|---"):
		case !strings.HasPrefix(line, "|"):
			return rows, nil
		default:
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) < 4 {
				return nil, fmt.Errorf("line %d: %d cells, want 4: %s", i+1, len(cells), line)
			}
			rows = append(rows, docRow{i + 1, strings.Trim(strings.TrimSpace(cells[0]), "`"), strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])})
		}
	}
	if !in {
		return nil, fmt.Errorf("no table with the header | Key | Default | Range | Meaning |")
	}
	return rows, nil
}

// TestConfigurationDoc: docs/configuration.md lists every key Parse reads, no other, each with the default
// Parse applies and the range it accepts.
func TestConfigurationDoc(t *testing.T) {
	data, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := keyTable(string(data))
	if err != nil {
		t.Fatalf("%s: %v", configurationDoc, err)
	}
	keys := map[string]Key{}
	for _, k := range Keys() {
		keys[k.Name] = k
	}
	seen := map[string]bool{}
	for _, r := range rows {
		k, ok := keys[r.key]
		switch {
		case seen[r.key]:
			t.Errorf("%s:%d: %s is listed twice", configurationDoc, r.line, r.key)
		case !ok:
			t.Errorf("%s:%d: %s is not a key conf reads", configurationDoc, r.line, r.key)
		}
		seen[r.key] = true
		if !ok {
			continue
		}
		if err := k.checkDefault(r.deflt); err != nil {
			t.Errorf("%s:%d: %s: default: %v", configurationDoc, r.line, r.key, err)
		}
		if err := k.checkRange(r.accepted); err != nil {
			t.Errorf("%s:%d: %s: range: %v", configurationDoc, r.line, r.key, err)
		}
	}
	for _, k := range Keys() {
		if !seen[k.Name] {
			t.Errorf("%s: %s is missing from the key table", configurationDoc, k.Name)
		}
	}
}

// checkDefault: a key without a default reads "(none)", with an explanation after it if need be; any other
// starts with its default in backquotes.
func (k Key) checkDefault(cell string) error {
	if k.Default == "" {
		if !strings.HasPrefix(cell, "(none)") {
			return fmt.Errorf("%q, but conf applies none: write (none)", cell)
		}
		return nil
	}
	if want := "`" + k.Default + "`"; !strings.HasPrefix(cell, want) {
		return fmt.Errorf("%q, but conf applies %s", cell, want)
	}
	return nil
}

// checkRange reads the range as the doc writes it: "A to B", "at least A" or "any" (up to the largest value
// of the type), after "0, or " when 0 means none; the words of a switch or choice, separated by commas.
// Strings are described in words, which their own tests check against the messages.
func (k Key) checkRange(cell string) error {
	cell = strings.ReplaceAll(cell, "`", "")
	switch k.Type {
	case TypeString, TypeSecret:
		return nil
	case TypeSwitch, TypeChoice:
		var words []string
		for w := range strings.SplitSeq(cell, ",") {
			words = append(words, strings.ToLower(strings.TrimSpace(w)))
		}
		want := slices.Clone(k.Values)
		slices.Sort(words)
		slices.Sort(want)
		if !slices.Equal(words, want) {
			return fmt.Errorf("%q, but conf accepts %s", cell, strings.Join(k.Values, ", "))
		}
		return nil
	}
	expr, off := strings.CutPrefix(cell, "0, or ")
	lo, hi, err := k.bounds(expr)
	if err != nil {
		return fmt.Errorf("%q: %v", cell, err)
	}
	if lo != k.Min || hi != k.Max || off != k.Off {
		return fmt.Errorf("%q, but conf accepts %s", cell, k.rangeText())
	}
	return nil
}

func (k Key) bounds(expr string) (lo, hi int64, err error) {
	largest := func() (int64, error) {
		if k.Type != TypeSize {
			return 0, fmt.Errorf("a %s needs an upper bound", k.Type)
		}
		return maxBytes, nil
	}
	if expr == "any" {
		hi, err = largest()
		return 0, hi, err
	}
	if a, ok := strings.CutPrefix(expr, "at least "); ok {
		if lo, err = k.number(a); err == nil {
			hi, err = largest()
		}
		return lo, hi, err
	}
	a, b, ok := strings.Cut(expr, " to ")
	if !ok {
		return 0, 0, fmt.Errorf("not A to B, at least A, or any")
	}
	if lo, err = k.number(a); err == nil {
		hi, err = k.number(b)
	}
	return lo, hi, err
}

func (k Key) number(s string) (int64, error) {
	switch k.Type {
	case TypeSize:
		return ParseSize(s)
	case TypeDuration:
		d, err := ParseDuration(s)
		return int64(d), err
	}
	n, err := strconv.Atoi(s)
	return int64(n), err
}

// rangeText is the range in the failure message, in the units conf counts in.
func (k Key) rangeText() string {
	show := func(n int64) string {
		if k.Type == TypeDuration {
			return fmt.Sprint(time.Duration(n))
		}
		return strconv.FormatInt(n, 10)
	}
	s := show(k.Min) + " to " + show(k.Max)
	if k.Off {
		s = "0, or " + s
	}
	return s
}
