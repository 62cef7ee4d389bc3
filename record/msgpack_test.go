package record

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestSkip: skip finds where a value ends, however deep, and reports truncation, including counts of
// elements that the bytes left cannot hold.
func TestSkip(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0x91}, 1<<16), 0x01)
	cases := []struct {
		name string
		in   []byte
		end  int
		err  error
	}{
		{"scalar then more", []byte{0x01, 0x02}, 1, nil},
		{"nested map", []byte{0x81, 0xa1, 'k', 0x92, 0xc4, 0x01, 0x00, 0xd7, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0}, 17, nil},
		{"65536 levels", append(deep, 0x02), len(deep), nil},
		{"one level cut", deep[:len(deep)-1], 0, io.ErrUnexpectedEOF},
		{"str longer than the input", []byte{0xd9, 0x05, 'a'}, 0, io.ErrUnexpectedEOF},
		{"array32 of 4 billion", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02}, 0, io.ErrUnexpectedEOF},
		{"ext without its type", []byte{0xc7, 0x01}, 0, io.ErrUnexpectedEOF},
		{"unused code", []byte{0x91, 0xc1}, 0, errUnusedCode},
	}
	for _, c := range cases {
		r := reader{b: c.in}
		err := r.skip()
		if err != c.err || err == nil && r.off != c.end {
			t.Errorf("%s: skipped to %d, %v; want %d, %v", c.name, r.off, err, c.end, c.err)
		}
	}
}

// TestDeepEventThenGood: an event nested 65,536 levels deep is rejected and the chunk's next event is read.
func TestDeepEventThenGood(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0x91}, 1<<16), 0x01)
	got := decodeAll(NewDecoder("org_id", "", 1<<20), cat(v2(evTime, cat([]byte{0x82}, orgA, []byte{0xa1, 'd'}, deep)), v2(evTime, bodyA)), "audit.org")
	if len(got) != 2 || !strings.Contains(got[0].reject, "nesting deeper than 100 levels") || got[1].reject != "" {
		t.Errorf("got %+v", got)
	}
}
