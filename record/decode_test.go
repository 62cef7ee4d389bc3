package record

import (
	"bytes"
	"strings"
	"testing"

	"github.com/wiv/out_wivaudit/test/chunks"
)

// Golden msgpack, byte by byte.
var (
	evTime   = []byte{0xd7, 0x00, 0x69, 0x7a, 0x22, 0x45, 0x00, 0x00, 0x00, 0x00} // EventTime 1769611845.0
	orgA     = []byte{0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xa5, 'o', 'r', 'g', '-', 'a'}
	bodyA    = append([]byte{0x82}, append(orgA, 0xa1, 'n', 0x01)...) // {"org_id":"org-a","n":1}
	v2       = chunks.V2
	legacy   = chunks.Legacy
	groupBeg = chunks.GroupStart()
	groupEnd = chunks.GroupEnd()
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

type decoded struct {
	json, org, kind, reject string
}

func decodeAll(d *Decoder, chunk []byte, tag string) []decoded {
	var out []decoded
	d.Decode(chunk, tag, func(ev *Event) {
		out = append(out, decoded{string(ev.JSON), ev.Org, ev.Kind, ev.Reject})
	})
	return out
}

func TestDecodeLayouts(t *testing.T) {
	good := decoded{json: `{"org_id":"org-a","n":1}`, org: "org-a", kind: "user"}
	cases := []struct {
		name  string
		chunk []byte
		want  []decoded
	}{
		{"V2 EventTime", v2(evTime, bodyA), []decoded{good}},
		{"V2 with metadata", cat([]byte{0x92, 0x92}, evTime, []byte{0x81, 0xa1, 'k', 0x01}, bodyA), []decoded{good}},
		{"legacy EventTime", legacy(evTime, bodyA), []decoded{good}},
		{"legacy uint32 seconds", legacy([]byte{0xce, 0x69, 0x7a, 0x22, 0x45}, bodyA), []decoded{good}},
		{"V2 positive fixint seconds", v2([]byte{0x05}, bodyA), []decoded{good}},
		{"V2 float64 seconds", v2([]byte{0xcb, 0x41, 0xda, 0x5e, 0x88, 0x91, 0x50, 0, 0}, bodyA), []decoded{good}},
		{"legacy float32 seconds", legacy([]byte{0xca, 0x4e, 0xd2, 0xf4, 0x44}, bodyA), []decoded{good}},
		{"group markers skipped", cat(groupBeg, v2(evTime, bodyA), groupEnd), []decoded{good}},
		{"int -1 group marker skipped", cat(legacy([]byte{0xff}, []byte{0x80}), legacy(evTime, bodyA)), []decoded{good}},
		{"several events", cat(v2(evTime, bodyA), legacy(evTime, bodyA)), []decoded{good, good}},
		{"empty chunk", nil, nil},
		{"body not a map", cat(v2(evTime, []byte{0xa1, 'x'}), v2(evTime, bodyA)),
			[]decoded{{reject: "record body is not a map but msgpack string"}, good}},
		{"not a pair", cat([]byte{0x93, 0x01, 0x02, 0x03}, v2(evTime, bodyA)),
			[]decoded{{reject: "event is not a [header, body] array"}, good}},
		{"not an array", cat([]byte{0x01}, v2(evTime, bodyA)), []decoded{{reject: "event is not a [header, body] array"}, good}},
		{"string timestamp", v2([]byte{0xa1, 't'}, bodyA), []decoded{{reject: "event timestamp has msgpack type 0xa1, not a time"}}},
		{"negative timestamp", legacy([]byte{0xd0, 0x80}, bodyA), []decoded{{reject: "event timestamp -128 is negative"}}},
		{"other extension", v2([]byte{0xd4, 0x05, 0x00}, bodyA), []decoded{{reject: "event timestamp is extension type 5 of 1 bytes, not an EventTime"}}},
		{"empty header", cat([]byte{0x92, 0x90}, bodyA), []decoded{{reject: "event header is an empty array"}}},
		{"truncated", cat(v2(evTime, bodyA), v2(evTime, bodyA)[:9]),
			[]decoded{good, {reject: "malformed msgpack at byte 30 of the chunk (unexpected EOF); the remaining 9 bytes could not be read"}}},
		{"never-used code", cat(v2(evTime, bodyA), []byte{0xc1, 0x00}),
			[]decoded{good, {reject: "malformed msgpack at byte 30 of the chunk (msgpack code 0xc1, which is never used)"}}},
		{"header metadata truncated", cat([]byte{0x92, 0x92}, evTime, []byte{0x81, 0xa1}), []decoded{{reject: "malformed msgpack at byte 0"}}},
		{"no org", v2(evTime, []byte{0x81, 0xa1, 'n', 0x01}), []decoded{{json: `{"n":1}`, reject: `no "org_id" field`}}},
		{"org not a string", v2(evTime, []byte{0x81, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0x07}),
			[]decoded{{json: `{"org_id":7}`, reject: `"org_id" is not a string but msgpack integer`}}},
		{"traversal", v2(evTime, []byte{0x81, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xa4, '.', '.', '/', 'x'}),
			[]decoded{{json: `{"org_id":"../x"}`, reject: `org_id "../x" is not a safe organisation ID`}}},
		{"org as bin", v2(evTime, []byte{0x81, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xc4, 0x01, 'b'}),
			[]decoded{{json: `{"org_id":"Yg==","_wivaudit_base64":{"/org_id":"bin"}}`, reject: `"org_id" is not a string but msgpack bin`}}},
	}
	d := NewDecoder("org_id", "", 1<<20)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decodeAll(d, c.chunk, "audit.user")
			if len(got) != len(c.want) {
				t.Fatalf("got %d events %+v, want %d", len(got), got, len(c.want))
			}
			for i := range got {
				w := c.want[i]
				if got[i].json != w.json || got[i].org != w.org || got[i].kind != w.kind || !strings.HasPrefix(got[i].reject, w.reject) || (w.reject == "") != (got[i].reject == "") {
					t.Errorf("event %d: got %+v, want %+v", i, got[i], w)
				}
			}
		})
	}
}

func TestKindRouting(t *testing.T) {
	kindBody := func(k string) []byte {
		return cat([]byte{0x82}, orgA, []byte{0xa4, 'k', 'i', 'n', 'd', 0xa0 | byte(len(k))}, []byte(k))
	}
	cases := []struct {
		kindKey, tag string
		body         []byte
		kind, reject string
	}{
		{"", "audit.org", bodyA, "org", ""},
		{"", "audit.USER", bodyA, "user", ""},
		{"", "api", bodyA, "api", ""},
		{"", "audit.other", bodyA, "", `kind "other" (from the last part of tag "audit.other") is not one of org, user, api`},
		{"", "audit.", bodyA, "", `kind ""`},
		{"kind", "anything", kindBody("Api"), "api", ""},
		{"kind", "audit.org", kindBody("admin"), "", `kind "admin" (from record field)`},
		{"kind", "audit.org", bodyA, "", `no "kind" field`},
		{"kind", "audit.org", cat([]byte{0x82}, orgA, []byte{0xa4, 'k', 'i', 'n', 'd', 0xc3}), "", `"kind" is not a string but msgpack boolean`},
	}
	for _, c := range cases {
		got := decodeAll(NewDecoder("org_id", c.kindKey, 1<<20), v2(evTime, c.body), c.tag)
		if len(got) != 1 || got[0].kind != c.kind || !strings.HasPrefix(got[0].reject, c.reject) || (c.reject == "") != (got[0].reject == "") {
			t.Errorf("Kind_Key %q, tag %q: got %+v, want kind %q reject %q", c.kindKey, c.tag, got, c.kind, c.reject)
		}
	}
}

func TestHostileLimits(t *testing.T) {
	bigMap := []byte{0xde, 0x27, 0x11} // map16 of 10001 entries
	for i := range 10001 {
		bigMap = append(bigMap, 0xcd, byte(i>>8), byte(i), 0xc0)
	}
	longStr := cat([]byte{0xdb, 0x00, 0x10, 0x00, 0x01}, bytes.Repeat([]byte{'x'}, 1<<20+1))
	cases := []struct {
		name   string
		body   []byte
		limit  int
		reject string
	}{
		{"record over Max_Record_Size", cat([]byte{0x82}, orgA, []byte{0xa1, 'x', 0xda, 0x08, 0x00}, bytes.Repeat([]byte{'y'}, 2048)), 2000, "event of 2080 bytes, over Max_Record_Size (2000)"},
		{"too many keys", cat([]byte{0x82}, orgA, []byte{0xa1, 'm'}, bigMap), 1 << 20, `record body: an object of 10001 keys at "/m", over the limit of 10000`},
		{"string too long", cat([]byte{0x82}, orgA, []byte{0xa1, 's'}, longStr), 4 << 20, `record body: a string of 1048577 bytes at "/s", over the limit of 1048576`},
		{"bin too long", cat([]byte{0x82}, orgA, []byte{0xa1, 's', 0xc6, 0x00, 0x10, 0x00, 0x01}, bytes.Repeat([]byte{'x'}, 1<<20+1)), 4 << 20, `record body: bin of 1048577 bytes at "/s", over the limit of 1048576`},
		{"map declaring more entries than the chunk holds", cat([]byte{0x82}, orgA, []byte{0xa1, 'm', 0xdf, 0xff, 0xff, 0xff, 0xff}), 1 << 20, "malformed msgpack at byte 0 of the chunk (unexpected EOF)"},
		{"declared length beyond the chunk", cat([]byte{0x82}, orgA, []byte{0xa1, 's', 0xdb, 0x7f, 0xff, 0xff, 0xff, 'x'}), 1 << 20, "malformed msgpack"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decodeAll(NewDecoder("org_id", "", c.limit), v2(evTime, c.body), "audit.org")
			if len(got) != 1 || !strings.HasPrefix(got[0].reject, c.reject) {
				t.Errorf("got %+v, want a rejection starting %q", got, c.reject)
			}
		})
	}
}

// TestNoAllocationPerRecord: once its scratch space has grown, the decoder allocates nothing for a chunk of
// 200 records, whether they belong to one organisation or to 200. (Decode takes the scratch space from a
// pool, which the race detector empties at random; BenchmarkDecode measures it through the pool.)
func TestNoAllocationPerRecord(t *testing.T) {
	for _, orgs := range []int{1, 200} {
		chunk := chunks.AuditChunk(200, orgs)
		d := NewDecoder("org_id", "", 1<<20)
		s := d.scratch.Get().(*scratch)
		n := 0
		count := func(ev *Event) {
			if ev.Reject == "" {
				n++
			}
		}
		d.decode(s, chunk, "audit.api", count)
		if n != 200 {
			t.Fatalf("%d of 200 records accepted", n)
		}
		if allocs := testing.AllocsPerRun(20, func() { d.decode(s, chunk, "audit.api", count) }); allocs != 0 {
			t.Errorf("%d organisations: %.1f allocations for a chunk of 200 records", orgs, allocs)
		}
	}
}

// TestEventReused: the decoder passes the same Event, with its JSON in the same buffer, for every record; the
// organisation strings it hands out stay valid.
func TestEventReused(t *testing.T) {
	var first *Event
	var firstJSON []byte
	var orgs []string
	NewDecoder("org_id", "", 1<<20).Decode(chunks.AuditChunk(3, 3), "audit.org", func(ev *Event) {
		if first == nil {
			first, firstJSON = ev, ev.JSON
		} else if ev != first || &ev.JSON[0] != &firstJSON[0] {
			t.Errorf("a new Event or JSON buffer for a later record")
		}
		orgs = append(orgs, ev.Org)
	})
	if strings.Join(orgs, ",") != "org-0000,org-0001,org-0002" {
		t.Errorf("organisations %v", orgs)
	}
}
