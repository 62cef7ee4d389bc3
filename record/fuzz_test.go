package record

import (
	"bytes"
	"encoding/json"
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
	}
}

// FuzzDecode: no chunk crashes the decoder; every event it passes on has valid JSON, a safe org and a known kind.
func FuzzDecode(f *testing.F) {
	for _, s := range seedChunks() {
		f.Add(s, "audit.org")
	}
	d := NewDecoder("org_id", "", 1<<20)
	f.Fuzz(func(t *testing.T, chunk []byte, tag string) {
		d.Decode(chunk, tag, func(ev *Event) {
			if ev.JSON != nil && !json.Valid(ev.JSON) {
				t.Fatalf("invalid JSON %q from %x", ev.JSON, ev.Raw)
			}
			if ev.Reject == "" && (!conf.ValidOrgID(ev.Org) || (ev.Kind != "org" && ev.Kind != "user" && ev.Kind != "api") || len(ev.JSON) == 0 || ev.JSON[0] != '{') {
				t.Fatalf("accepted %+v", ev)
			}
		})
	})
}

// FuzzRecordJSON: any msgpack value either fails with an error or becomes valid JSON.
func FuzzRecordJSON(f *testing.F) {
	for _, s := range seedChunks() {
		f.Add(s)
	}
	for _, v := range []any{map[string]any{"a": []any{1, "x", nil, 1.5, true}}, "é\x00\u2028", uint64(1 << 63), -1, 3.25} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := transcoder{d: msgpack.NewDecoder(bytes.NewReader(data))}
		out, err := tr.value(nil, 0)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid JSON %q from %x", out, data)
		}
	})
}
