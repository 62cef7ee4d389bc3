package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
)

// be is a msgpack value of code followed by v in n big-endian bytes.
func be(code byte, n int, v uint64) []byte {
	b := []byte{code}
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// transcodeBody runs body (a msgpack map) through the decoder as the one record of a chunk and returns its
// JSON, or the reason it was rejected.
func transcodeBody(t *testing.T, body []byte) (string, string) {
	t.Helper()
	got := decodeAll(NewDecoder("org_id", "", 8<<20), v2(evTime, body), "audit.org")
	if len(got) != 1 {
		t.Fatalf("%d events from one record: %+v", len(got), got)
	}
	return got[0].json, got[0].reject
}

// checkJSON fails unless s is one valid JSON value, as encoding/json reads it, with no key twice in an object.
func checkJSON(t *testing.T, s string) {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Errorf("%s is not valid JSON: %v", s, err)
	}
	if err := duplicateKeys([]byte(s)); err != nil {
		t.Errorf("%s: %v", s, err)
	}
}

// duplicateKeys reports a key that appears twice in one object of the JSON text b.
func duplicateKeys(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next string token of an object is a key
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if s, ok := tok.(string); ok && top != nil && top.object && top.key {
			if top.keys[s] {
				return fmt.Errorf("key %q appears twice", s)
			}
			top.keys[s] = true
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, object: true, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true // a value ended: a key comes next
		}
	}
}

func TestDuplicateKeysOracle(t *testing.T) {
	for s, dup := range map[string]bool{`{"a":1,"b":{"a":2}}`: false, `{"a":[{"a":1},{"a":2}],"b":"a"}`: false,
		`{"a":1,"a":2}`: true, `{"x":{"k":[1,{}],"k":null}}`: true, `[{"a":1},{"b":{"c":1,"c":2}}]`: true} {
		if got := duplicateKeys([]byte(s)) != nil; got != dup {
			t.Errorf("%s: duplicate %v, want %v", s, got, dup)
		}
	}
}

// TestValueRules pins how each msgpack type is written, one row per type: golden msgpack in, exact JSON out,
// or the record rejected with a reason naming where. The value sits at "v" in {"org_id":"org-a","v":...}.
func TestValueRules(t *testing.T) {
	const ext5 = 0x05
	cases := []struct {
		name   string
		in     []byte
		want   string // the JSON of v; ignored when reject is set
		marks  string // the expected encodedKey object, when the value holds bin or ext
		reject string
	}{
		{"nil", []byte{0xc0}, "null", "", ""},
		{"false", []byte{0xc2}, "false", "", ""},
		{"true", []byte{0xc3}, "true", "", ""},
		{"positive fixint", []byte{0x7f}, "127", "", ""},
		{"negative fixint", []byte{0xe0}, "-32", "", ""},
		{"uint8", be(0xcc, 1, 0xff), "255", "", ""},
		{"uint16", be(0xcd, 2, 0xffff), "65535", "", ""},
		{"uint32", be(0xce, 4, 0xffffffff), "4294967295", "", ""},
		{"uint64 max", be(0xcf, 8, math.MaxUint64), "18446744073709551615", "", ""},
		{"int8", be(0xd0, 1, 0x80), "-128", "", ""},
		{"int16", be(0xd1, 2, 0xfc18), "-1000", "", ""},
		{"int32", be(0xd2, 4, 0x80000000), "-2147483648", "", ""},
		{"int64 min", be(0xd3, 8, 1<<63), "-9223372036854775808", "", ""},
		{"float32", be(0xca, 4, uint64(math.Float32bits(0.1))), "0.1", "", ""},
		{"float64", be(0xcb, 8, math.Float64bits(-2.25)), "-2.25", "", ""},
		{"float64 tiny", be(0xcb, 8, math.Float64bits(1e-7)), "1e-7", "", ""},
		{"float64 NaN", be(0xcb, 8, math.Float64bits(math.NaN())), "", "", `record body: NaN at "/v": JSON has no NaN or infinity`},
		{"float32 NaN", be(0xca, 4, 0x7fc00000), "", "", `record body: NaN at "/v"`},
		{"float64 +Inf", be(0xcb, 8, math.Float64bits(math.Inf(1))), "", "", `record body: +Inf at "/v"`},
		{"float32 -Inf", be(0xca, 4, uint64(math.Float32bits(float32(math.Inf(-1))))), "", "", `record body: -Inf at "/v"`},
		{"fixstr", []byte{0xa2, 'h', 'i'}, `"hi"`, "", ""},
		{"str8", cat([]byte{0xd9, 0x03}, []byte("abc")), `"abc"`, "", ""},
		{"str16", cat([]byte{0xda, 0x00, 0x03}, []byte("abc")), `"abc"`, "", ""},
		{"str32", cat([]byte{0xdb, 0, 0, 0, 0x03}, []byte("abc")), `"abc"`, "", ""},
		{"str escapes", cat([]byte{0xa8}, []byte("\"\\\n\x01<\u2028")), `"\"\\\n\u0001<\u2028"`, "", ""},
		{"str with U+FFFD itself", []byte{0xa3, 0xef, 0xbf, 0xbd}, "\"\ufffd\"", "", ""},
		{"str invalid UTF-8", []byte{0xa3, 'a', 0xff, 'b'}, "", "", `record body: invalid UTF-8 in the string at "/v"`},
		{"str UTF-16 surrogate", []byte{0xa3, 0xed, 0xa0, 0x80}, "", "", `record body: invalid UTF-8 in the string at "/v"`},
		{"bin8", []byte{0xc4, 0x03, 0x00, 0x01, 0xff}, `"AAH/"`, `"/v":"bin"`, ""},
		{"bin16", []byte{0xc5, 0x00, 0x02, 'h', 'i'}, `"aGk="`, `"/v":"bin"`, ""},
		{"bin32 empty", []byte{0xc6, 0, 0, 0, 0}, `""`, `"/v":"bin"`, ""},
		{"fixext1", []byte{0xd4, ext5, 0x01}, `"AQ=="`, `"/v":"ext:5"`, ""},
		{"fixext2", []byte{0xd5, ext5, 0x01, 0x02}, `"AQI="`, `"/v":"ext:5"`, ""},
		{"fixext4", []byte{0xd6, ext5, 1, 2, 3, 4}, `"AQIDBA=="`, `"/v":"ext:5"`, ""},
		{"fixext8 of type 5", []byte{0xd7, ext5, 1, 2, 3, 4, 5, 6, 7, 8}, `"AQIDBAUGBwg="`, `"/v":"ext:5"`, ""},
		{"fixext16", cat([]byte{0xd8, ext5}, bytes.Repeat([]byte{0xff}, 16)), `"/////////////////////w=="`, `"/v":"ext:5"`, ""},
		{"ext8", []byte{0xc7, 0x01, ext5, 0x2a}, `"Kg=="`, `"/v":"ext:5"`, ""},
		{"ext16", []byte{0xc8, 0x00, 0x01, ext5, 0x2a}, `"Kg=="`, `"/v":"ext:5"`, ""},
		{"ext32", []byte{0xc9, 0, 0, 0, 0x01, ext5, 0x2a}, `"Kg=="`, `"/v":"ext:5"`, ""},
		{"msgpack timestamp (ext -1)", []byte{0xd6, 0xff, 0x69, 0x7a, 0x22, 0x45}, `"aXoiRQ=="`, `"/v":"ext:-1"`, ""},
		{"ext 0 not of 8 bytes", []byte{0xd6, 0x00, 1, 2, 3, 4}, `"AQIDBA=="`, `"/v":"ext:0"`, ""},
		{"EventTime", []byte{0xd7, 0x00, 0x69, 0x7a, 0x22, 0x45, 0x00, 0x00, 0x00, 0x7b}, "1769611845.000000123", "", ""},
		{"EventTime, whole second", []byte{0xd7, 0x00, 0x69, 0x7a, 0x22, 0x45, 0, 0, 0, 0}, "1769611845", "", ""},
		{"EventTime, half second", []byte{0xd7, 0x00, 0x69, 0x7a, 0x22, 0x45, 0x1d, 0xcd, 0x65, 0x00}, "1769611845.5", "", ""},
		{"EventTime over 999999999 ns", []byte{0xd7, 0x00, 0, 0, 0, 1, 0x3b, 0x9a, 0xca, 0x00}, "", "",
			`record body: the EventTime at "/v" has 1000000000 nanoseconds`},
		{"fixarray", []byte{0x93, 0x01, 0xc0, 0xa1, 'x'}, `[1,null,"x"]`, "", ""},
		{"array16", []byte{0xdc, 0x00, 0x01, 0x01}, "[1]", "", ""},
		{"array32", []byte{0xdd, 0, 0, 0, 2, 0x01, 0x02}, "[1,2]", "", ""},
		{"fixmap", []byte{0x81, 0xa1, 'a', 0x90}, `{"a":[]}`, "", ""},
		{"map16", []byte{0xde, 0x00, 0x01, 0xa1, 'k', 0xa1, 'v'}, `{"k":"v"}`, "", ""},
		{"map32", []byte{0xdf, 0, 0, 0, 0x01, 0xa1, 'k', 0x80}, `{"k":{}}`, "", ""},
		{"bin deep inside", []byte{0x81, 0xa3, 'a', '/', '~', 0x92, 0xc0, 0xc4, 0x01, 0x00}, `{"a/~":[null,"AA=="]}`, `"/v/a~1~0/1":"bin"`, ""},
		{"NaN deep inside", []byte{0x81, 0xa1, 'a', 0x91, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1}, "", "", `record body: NaN at "/v/a/0"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, reject := transcodeBody(t, cat([]byte{0x82}, orgA, []byte{0xa1, 'v'}, c.in))
			if c.reject != "" {
				if got != "" || !strings.HasPrefix(reject, c.reject) {
					t.Errorf("got %s, rejected %q; want rejected with %q", got, reject, c.reject)
				}
				return
			}
			want := `{"org_id":"org-a","v":` + c.want
			if c.marks != "" {
				want += `,"` + encodedKey + `":{` + c.marks + `}`
			}
			want += "}"
			if got != want || reject != "" {
				t.Errorf("got %s (reject %q), want %s", got, reject, want)
			}
			checkJSON(t, got)
		})
	}
}

// TestKeyRules pins the map rules: keys are strings, valid UTF-8 and unique in their map, the record's
// top-level key encodedKey is the plugin's, and several base64 values are all named.
func TestKeyRules(t *testing.T) {
	// manyKeys is {"org_id":"org-a", key: nil...}: over 16 keys, duplicates are found by sorting.
	manyKeys := func(keys ...string) []byte {
		b := cat(be(0xde, 2, uint64(len(keys)+1)), orgA)
		for _, k := range keys {
			b = append(append(append(b, 0xa0|byte(len(k))), k...), 0xc0)
		}
		return b
	}
	var forty []string
	for i := range 40 {
		forty = append(forty, fmt.Sprintf("k%02d", i))
	}
	cases := []struct {
		name   string
		body   []byte
		want   string
		reject string
	}{
		{"keys in order", cat([]byte{0x83, 0xa1, 'z', 0x01}, orgA, []byte{0xa1, 'a', 0x02}), `{"z":1,"org_id":"org-a","a":2}`, ""},
		{"same key in different maps", cat([]byte{0x83}, orgA, []byte{0xa1, 'a', 0x81, 0xa1, 'a', 0x01, 0xa1, 'b', 0x81, 0xa1, 'a', 0x02}),
			`{"org_id":"org-a","a":{"a":1},"b":{"a":2}}`, ""},
		{"duplicate key", cat([]byte{0x83}, orgA, []byte{0xa2, 'i', 'd', 0xa1, 'a', 0xa2, 'i', 'd', 0xa1, 'b'}), "",
			`record body: the key "id" appears more than once in the object at the top level`},
		{"duplicate org_id", cat([]byte{0x82}, orgA, orgA), "", `record body: the key "org_id" appears more than once in the object at the top level`},
		{"duplicate key nested", cat([]byte{0x82}, orgA, []byte{0xa1, 'e', 0x82, 0xa1, 'k', 0x01, 0xa1, 'k', 0x02}), "",
			`record body: the key "k" appears more than once in the object at "/e"`},
		{"duplicate key among many", manyKeys(append(forty[:40:40], "k07")...), "", `record body: the key "k07" appears more than once in the object at the top level`},
		{"many distinct keys", manyKeys(forty...), "", ""},
		{"integer key", cat([]byte{0x82}, orgA, []byte{0x07, 0xc3}), "", `record body: a key of type integer in the object at the top level: keys must be strings`},
		{"nil key", cat([]byte{0x82}, orgA, []byte{0xc0, 0x01}), "", `record body: a key of type nil in the object at the top level`},
		{"bin key", cat([]byte{0x82}, orgA, []byte{0xa1, 'e', 0x81, 0xc4, 0x01, 'k', 0x01}), "", `record body: a key of type bin in the object at "/e"`},
		{"array key", cat([]byte{0x82}, orgA, []byte{0x91, 0x01, 0x01}), "", `record body: a key of type array in the object at the top level`},
		{"key with invalid UTF-8", cat([]byte{0x82}, orgA, []byte{0xa2, 'k', 0xfe, 0x01}), "", `record body: invalid UTF-8 in the key "k\xfe" of the object at the top level`},
		{"reserved key", cat([]byte{0x82}, orgA, []byte{0xa0 | byte(len(encodedKey))}, []byte(encodedKey), []byte{0x80}), "",
			`record body: the record has a top-level key "_wivaudit_base64", which is reserved`},
		{"reserved key nested is data", cat([]byte{0x82}, orgA, []byte{0xa1, 'e', 0x81, 0xa0 | byte(len(encodedKey))}, []byte(encodedKey), []byte{0x01}),
			`{"org_id":"org-a","e":{"_wivaudit_base64":1}}`, ""},
		{"two base64 values", cat([]byte{0x83, 0xa1, 'b', 0xc4, 0x01, 0x00}, orgA, []byte{0xa1, 'x', 0xd4, 0x7f, 0x01}),
			`{"b":"AA==","org_id":"org-a","x":"AQ==","_wivaudit_base64":{"/b":"bin","/x":"ext:127"}}`, ""},
		{"empty key", cat([]byte{0x82}, orgA, []byte{0xa0, 0xc4, 0x01, 0x00}), `{"org_id":"org-a","":"AA==","_wivaudit_base64":{"/":"bin"}}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, reject := transcodeBody(t, c.body)
			if c.reject != "" {
				if got != "" || !strings.HasPrefix(reject, c.reject) {
					t.Errorf("got %s, rejected %q; want rejected with %q", got, reject, c.reject)
				}
				return
			}
			if reject != "" || (c.want != "" && got != c.want) {
				t.Errorf("got %s (reject %q), want %s", got, reject, c.want)
			}
			checkJSON(t, got)
		})
	}
}

func TestNestingLimit(t *testing.T) {
	for _, open := range []byte{0x91, 0x81} { // arrays, and maps whose one key is "" (0xa0)
		var deep []byte
		for range maxDepth {
			deep = append(deep, open)
			if open == 0x81 {
				deep = append(deep, 0xa0)
			}
		}
		deep = append(deep, 0x01)
		got, reject := transcodeBody(t, cat([]byte{0x82}, orgA, []byte{0xa1, 'd'}, deep))
		if got != "" || !strings.Contains(reject, "nesting deeper than 100 levels") {
			t.Errorf("%x: got %s, %q", open, got, reject)
		}
		// One level less is fine: the body and 99 levels inside it.
		got, reject = transcodeBody(t, cat([]byte{0x82}, orgA, []byte{0xa1, 'd'}, deep[len(deep)/maxDepth:]))
		if reject != "" {
			t.Errorf("%x: 99 levels rejected: %s", open, reject)
		}
		checkJSON(t, got)
	}
}

// encoding/json is the oracle for how strings and floats are written.
func TestStringsAndFloatsMatchEncodingJSON(t *testing.T) {
	strs := []string{"", "plain", "quote\" back\\slash", "ctl \x00\x01\x1f\x7f", "\b\f\n\r\t", "é ü 日本 😀",
		"line\u2028sep\u2029", "<html>&amp;", "\ufffd"}
	for _, s := range strs {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		if got, ok := appendString(nil, []byte(s)); !ok || string(got) != strings.TrimSuffix(want.String(), "\n") {
			t.Errorf("string %q: got %s, %v, want %s", s, got, ok, want.String())
		}
	}
	for _, s := range []string{"bad \xff", "\xfe", "\xc3\x28", "\xed\xa0\x80 surrogate", "cut \xe6\x97"} {
		if _, ok := appendString(nil, []byte(s)); ok {
			t.Errorf("string %q: accepted, but it is not UTF-8", s)
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
