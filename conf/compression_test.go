package conf

import (
	"strings"
	"testing"
)

func TestCompressionLevel(t *testing.T) {
	for _, c := range []struct {
		value string
		want  int
		err   string
	}{
		{"", DefaultCompressionLevel, ""},
		{"1", 1, ""},
		{" 9 ", 9, ""},
		{"0", 0, `Compression_Level: "0" is not a whole number from 1 to 9`},
		{"10", 0, `Compression_Level: "10" is not a whole number from 1 to 9`},
		{"-2", 0, `Compression_Level: "-2" is not a whole number from 1 to 9`},
		{"best", 0, `Compression_Level: "best" is not a whole number from 1 to 9`},
	} {
		src := valid()
		src["compression_level"] = c.value
		got, err := Parse(src)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.value, err)
		case c.err == "" && got.CompressionLevel != c.want:
			t.Errorf("%q: level %d, want %d", c.value, got.CompressionLevel, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want it to contain %q", c.value, err, c.err)
		}
	}
}
