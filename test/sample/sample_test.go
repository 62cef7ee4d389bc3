package sample

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

// frameTags splits frames in the host's framing and returns each one's tag.
func frameTags(t *testing.T, b []byte) []string {
	t.Helper()
	var tags []string
	for len(b) > 0 {
		n := binary.BigEndian.Uint32(b)
		tags = append(tags, string(b[4:4+n]))
		b = b[4+n:]
		b = b[4+binary.BigEndian.Uint32(b):]
	}
	return tags
}

func TestFrames(t *testing.T) {
	for _, tc := range []struct {
		name, body    string
		per           int
		events, count int
		err           string
	}{
		{name: "lines", body: "{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n", per: 2, events: 3, count: 2},
		{name: "one object", body: `{"a":1}`, per: 3, events: 1, count: 1},
		{name: "array", body: `[{"a":1},{"a":2},{"a":3}]`, per: 1, events: 3, count: 3},
		{name: "empty", body: " \n", per: 3},
		{name: "not an object", body: "{\"a\":1}\n42\n", per: 3, err: "record 2 is not a JSON object"},
		{name: "array of numbers", body: `[1]`, per: 3, err: "record 1 is not a JSON object"},
		{name: "broken", body: "{\"a\":1}\n{\"a\":", per: 3, err: "after 1 records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames, n, err := Frames("audit.org", []byte(tc.body), tc.per, time.Unix(1, 0))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tags := frameTags(t, frames)
			if n != tc.events || len(tags) != tc.count {
				t.Fatalf("%d events in %d chunks, want %d in %d", n, len(tags), tc.events, tc.count)
			}
			for _, tag := range tags {
				if tag != "audit.org" {
					t.Errorf("tag %q", tag)
				}
			}
		})
	}
}
