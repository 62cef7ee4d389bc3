package record

import (
	"bytes"
	"testing"
)

// TestRejectionClasses: each rejection carries the class metrics count it by, and an accepted event none.
func TestRejectionClasses(t *testing.T) {
	withKind := func(k []byte) []byte { return cat([]byte{0x82}, orgA, []byte{0xa4, 'k', 'i', 'n', 'd'}, k) }
	cases := []struct {
		name, kindKey, tag string
		chunk              []byte
		want               Reason
	}{
		{"accepted", "", "audit.org", v2(evTime, bodyA), NotRejected},
		{"broken msgpack", "", "audit.org", []byte{0xc1}, Malformed},
		{"not a pair", "", "audit.org", []byte{0x93, 0x01, 0x02, 0x03}, Malformed},
		{"bad timestamp", "", "audit.org", v2([]byte{0xa1, 't'}, bodyA), Malformed},
		{"body not a map", "", "audit.org", v2(evTime, []byte{0xa1, 'x'}), Malformed},
		{"too large", "", "audit.org", v2(evTime, cat([]byte{0x82}, orgA, []byte{0xa1, 'x', 0xda, 0x08, 0x00}, bytes.Repeat([]byte{'y'}, 2048))), TooLarge},
		{"no org", "", "audit.org", v2(evTime, []byte{0x81, 0xa1, 'n', 0x01}), NoOrgID},
		{"org not a string", "", "audit.org", v2(evTime, []byte{0x81, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0x07}), BadOrgID},
		{"unsafe org", "", "audit.org", v2(evTime, []byte{0x81, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xa4, '.', '.', '/', 'x'}), BadOrgID},
		{"kind from tag", "", "audit.other", v2(evTime, bodyA), BadKind},
		{"no kind field", "kind", "audit.org", v2(evTime, bodyA), BadKind},
		{"kind not a string", "kind", "audit.org", v2(evTime, withKind([]byte{0xc3})), BadKind},
		{"unknown kind", "kind", "audit.org", v2(evTime, withKind([]byte{0xa5, 'a', 'd', 'm', 'i', 'n'})), BadKind},
	}
	for _, c := range cases {
		var got []Reason
		NewDecoder("org_id", c.kindKey, 2000).Decode(c.chunk, c.tag, func(ev *Event) {
			got = append(got, ev.Why)
			if (ev.Why == NotRejected) != (ev.Reject == "") {
				t.Errorf("%s: class %q with reason %q", c.name, ev.Why, ev.Reject)
			}
		})
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: classes %v, want [%s]", c.name, got, c.want)
		}
	}
}
