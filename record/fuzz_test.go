package record

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/wiv/out_wivaudit/conf"
)

// seedChunks are the layouts Fluent Bit produces: V2 with EventTime and metadata, legacy with integer and
// float times, group markers, several events, nested values, bin, extensions, and some broken ones.
func seedChunks() [][]byte {
	nested := cat([]byte{0x84}, orgA, []byte{0xa1, 'a', 0x93, 0x01, 0x90, 0x81, 0xa1, 'b', 0xc0},
		[]byte{0xc4, 0x01, 'k', 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 2}, []byte{0x01, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0})
	return [][]byte{
		v2(evTime, bodyA),
		cat([]byte{0x92, 0x92}, evTime, []byte{0x81, 0xa1, 'k', 0x01}, bodyA),
		legacy([]byte{0xce, 0x69, 0x7a, 0x22, 0x45}, bodyA),
		legacy([]byte{0xcb, 0x41, 0xda, 0x5e, 0x88, 0x91, 0x50, 0, 0}, bodyA),
		cat(groupBeg, v2(evTime, nested), groupEnd),
		cat(v2(evTime, bodyA), legacy(evTime, nested), v2(evTime, bodyA)[:9]),
		v2(evTime, []byte{0xa1, 'x'}),
		{0x93, 0x01, 0x02, 0x03},
		{0xc1},
		v2(evTime, cat([]byte{0x84}, orgA, []byte{0xa1, 'b', 0xc4, 0x01, 0xff, 0xa1, 'x', 0xd5, 0x05, 0x01, 0x02, 0xa1, 'e', 0x91, 0x81, 0xa2, '~', '/', 0xc4, 0x00})),
	}
}

// FuzzDecode: no chunk crashes the decoder; every event it passes on has valid JSON with no key twice in an
// object, a safe org and a known kind.
func FuzzDecode(f *testing.F) {
	for _, s := range seedChunks() {
		f.Add(s, "audit.org")
	}
	d := NewDecoder("org_id", "", 1<<20)
	f.Fuzz(func(t *testing.T, chunk []byte, tag string) {
		d.Decode(chunk, tag, func(ev *Event) {
			if ev.JSON != nil {
				checkRecord(t, ev.JSON, ev.Raw)
			}
			if ev.Reject == "" && (!conf.ValidOrgID(ev.Org) || (ev.Kind != "org" && ev.Kind != "user" && ev.Kind != "api") || len(ev.JSON) == 0) {
				t.Fatalf("accepted %+v", ev)
			}
		})
	})
}

// FuzzRecordJSON: any msgpack value is skipped exactly as msgpack's own decoder skips it, and as a record
// body it either is rejected or becomes valid JSON with no key twice, whose encodedKey names base64 strings.
func FuzzRecordJSON(f *testing.F) {
	for _, s := range seedChunks() {
		f.Add(s)
	}
	for _, v := range []any{map[string]any{"a": []any{1, "x", nil, 1.5, true}}, "é\x00\u2028", uint64(1 << 63), -1, 3.25,
		map[string]any{"b": []byte{0, 1}, "n": map[string]any{"c/~": []byte{}}}} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := reader{b: data}
		err := r.skip()
		theirs := bytes.NewReader(data)
		theirErr := msgpack.NewDecoder(theirs).Skip()
		if (err == nil) != (theirErr == nil) || err == nil && r.off != len(data)-theirs.Len() {
			t.Fatalf("skip of %x: %d bytes, %v; msgpack's: %d bytes, %v", data, r.off, err, len(data)-theirs.Len(), theirErr)
		}
		var tr transcoder
		tr.reset(data, 0)
		if tr.r.read(&tr.it) != nil || tr.it.typ != tMap {
			return
		}
		if out, err := tr.body(nil, tr.it.n); err == nil {
			checkRecord(t, out, data)
		}
	})
}

// checkRecord fails unless js is a JSON object with no key twice in any object, and every JSON Pointer in its
// encodedKey leads to a base64 string.
func checkRecord(t *testing.T, js, from []byte) {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal(js, &rec); err != nil {
		t.Fatalf("invalid JSON object %q from %x: %v", js, from, err)
	}
	if err := duplicateKeys(js); err != nil {
		t.Fatalf("%q from %x: %v", js, from, err)
	}
	marks, _ := rec[encodedKey].(map[string]any)
	for ptr, kind := range marks {
		var v any = rec
		for _, tok := range strings.Split(ptr, "/")[1:] {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch c := v.(type) {
			case map[string]any:
				v = c[tok]
			case []any:
				i, _ := strconv.Atoi(tok)
				v = c[i]
			}
		}
		s, ok := v.(string)
		if _, err := base64.StdEncoding.DecodeString(s); !ok || err != nil || (kind != "bin" && !strings.HasPrefix(kind.(string), "ext:")) {
			t.Fatalf("%s names %s as %v in %q from %x", encodedKey, ptr, kind, js, from)
		}
	}
}
