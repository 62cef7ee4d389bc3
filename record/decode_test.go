package record

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// Golden msgpack, byte by byte.
var (
	evTime   = []byte{0xd7, 0x00, 0x69, 0x7a, 0x22, 0x45, 0x00, 0x00, 0x00, 0x00} // EventTime 1769611845.0
	orgA     = []byte{0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xa5, 'o', 'r', 'g', '-', 'a'}
	bodyA    = append([]byte{0x82}, append(orgA, 0xa1, 'n', 0x01)...) // {"org_id":"org-a","n":1}
	v2       = func(ts, body []byte) []byte { return cat([]byte{0x92, 0x92}, ts, []byte{0x80}, body) }
	legacy   = func(ts, body []byte) []byte { return cat([]byte{0x92}, ts, body) }
	groupBeg = v2([]byte{0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, []byte{0x80})
	groupEnd = v2([]byte{0xd7, 0x00, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0}, []byte{0x80})
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
			[]decoded{{json: `"x"`, reject: "record body is not a map"}, good}},
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
			[]decoded{good, {reject: "malformed msgpack at byte 30 of the chunk (msgpack: unknown code c1)"}}},
		{"no org", v2(evTime, []byte{0x81, 0xa1, 'n', 0x01}), []decoded{{json: `{"n":1}`, reject: `no "org_id" field`}}},
		{"org not a string", v2(evTime, []byte{0x81, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0x07}),
			[]decoded{{json: `{"org_id":7}`, reject: `"org_id" is not a string`}}},
		{"org twice", v2(evTime, cat([]byte{0x82}, orgA, orgA)),
			[]decoded{{json: `{"org_id":"org-a","org_id":"org-a"}`, reject: `"org_id" appears 2 times`}}},
		{"traversal", v2(evTime, []byte{0x81, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xa4, '.', '.', '/', 'x'}),
			[]decoded{{json: `{"org_id":"../x"}`, reject: `org_id "../x" is not a safe organisation ID`}}},
		{"org as bin", v2(evTime, []byte{0x81, 0xa6, 'o', 'r', 'g', '_', 'i', 'd', 0xc4, 0x01, 'b'}),
			[]decoded{{json: `{"org_id":"b"}`, org: "b", kind: "user"}}},
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
	}
	for _, c := range cases {
		got := decodeAll(NewDecoder("org_id", c.kindKey, 1<<20), v2(evTime, c.body), c.tag)
		if len(got) != 1 || got[0].kind != c.kind || !strings.HasPrefix(got[0].reject, c.reject) || (c.reject == "") != (got[0].reject == "") {
			t.Errorf("Kind_Key %q, tag %q: got %+v, want kind %q reject %q", c.kindKey, c.tag, got, c.kind, c.reject)
		}
	}
}

func TestTranscodeValues(t *testing.T) {
	be := func(code byte, n int, v uint64) []byte {
		b := []byte{code}
		for i := n - 1; i >= 0; i-- {
			b = append(b, byte(v>>(8*i)))
		}
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", []byte{0xc0}, "null"},
		{"bools", []byte{0x92, 0xc2, 0xc3}, "[false,true]"},
		{"negative fixint", []byte{0xff}, "-1"},
		{"uint64 max", be(0xcf, 8, math.MaxUint64), "18446744073709551615"},
		{"int64 min", be(0xd3, 8, 1<<63), "-9223372036854775808"},
		{"int16", be(0xd1, 2, 0xfc18), "-1000"},
		{"float32", be(0xca, 4, uint64(math.Float32bits(0.1))), "0.1"},
		{"NaN", be(0xcb, 8, math.Float64bits(math.NaN())), "null"},
		{"+Inf", be(0xcb, 8, math.Float64bits(math.Inf(1))), "null"},
		{"-Inf float32", be(0xca, 4, uint64(math.Float32bits(float32(math.Inf(-1))))), "null"},
		{"bin", []byte{0xc4, 0x02, 'h', 'i'}, `"hi"`},
		{"str8", cat([]byte{0xd9, 0x03}, []byte("abc")), `"abc"`},
		{"invalid UTF-8", []byte{0xa3, 'a', 0xff, 'b'}, `"a\ufffdb"`},
		{"nested", []byte{0x81, 0xa1, 'a', 0x91, 0x81, 0xa1, 'b', 0x90}, `{"a":[{"b":[]}]}`},
		{"int key", []byte{0x81, 0x07, 0xc3}, `{"7":true}`},
		{"nil key", []byte{0x81, 0xc0, 0x01}, `{"null":1}`},
		{"array key", []byte{0x81, 0x92, 0x01, 0xa1, 'x', 0x01}, `{"[1,\"x\"]":1}`},
		{"EventTime value", []byte{0xd7, 0x00, 0x69, 0x7a, 0x22, 0x45, 0x00, 0x00, 0x00, 0x7b}, "1769611845.000000123"},
		{"other extension", []byte{0xd5, 0x09, 0x01, 0x02}, `"AQI="`},
		{"map16", cat([]byte{0xde, 0x00, 0x01, 0xa1, 'k', 0xa1, 'v'}), `{"k":"v"}`},
		{"array32", []byte{0xdd, 0, 0, 0, 2, 0x01, 0x02}, "[1,2]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := transcoder{d: newTestDecoder(c.in)}
			got, err := tr.value(nil, 0)
			if err != nil || string(got) != c.want {
				t.Errorf("got %s, %v; want %s", got, err, c.want)
			}
		})
	}
}

func TestNestingLimit(t *testing.T) {
	deep := bytes.Repeat([]byte{0x91}, maxDepth+5)
	deep = append(deep, 0x01)
	body := cat([]byte{0x82}, orgA, []byte{0xa1, 'd'}, deep)
	got := decodeAll(NewDecoder("org_id", "", 1<<20), v2(evTime, body), "audit.org")
	if len(got) != 1 || !strings.Contains(got[0].reject, "nesting deeper than") {
		t.Errorf("got %+v", got)
	}
}

// encoding/json is the oracle for how strings and floats are written.
func TestStringsAndFloatsMatchEncodingJSON(t *testing.T) {
	strs := []string{"", "plain", "quote\" back\\slash", "ctl \x00\x01\x1f\x7f", "\b\f\n\r\t", "é ü 日本 😀",
		"line\u2028sep\u2029", "<html>&amp;", "bad \xff\xfe utf8 \xc3\x28", "\xed\xa0\x80 surrogate"}
	for _, s := range strs {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		if got := appendString(nil, []byte(s)); string(got) != strings.TrimSuffix(want.String(), "\n") {
			t.Errorf("string %q: got %s, want %s", s, got, want.String())
		}
	}
	floats := []float64{0, 1, -1, 0.1, 1.5, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 1.7976931348623157e308, 5e-324,
		-2.25, 6.02e23, 123456789.123456789, math.Copysign(0, -1)}
	for _, f := range floats {
		want, _ := json.Marshal(f)
		if got := appendFloat(nil, f, 64); string(got) != string(want) {
			t.Errorf("float %v: got %s, want %s", f, got, want)
		}
		want32, _ := json.Marshal(float32(f))
		if got := appendFloat(nil, float64(float32(f)), 32); !math.IsInf(float64(float32(f)), 0) && string(got) != string(want32) {
			t.Errorf("float32 %v: got %s, want %s", float32(f), got, want32)
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
		{"too many keys", cat([]byte{0x82}, orgA, []byte{0xa1, 'm'}, bigMap), 1 << 20, "record body: a map has 10001 keys, over the limit of 10000"},
		{"string too long", cat([]byte{0x82}, orgA, []byte{0xa1, 's'}, longStr), 4 << 20, "record body: a string of 1048577 bytes, over the limit of 1048576"},
		{"keys nested in keys", cat([]byte{0x82}, orgA, bytes.Repeat([]byte{0x81}, 30), []byte{0xa1, 'k'}, bytes.Repeat([]byte{0x01}, 31)), 1 << 20, "record body: a map key of"},
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
