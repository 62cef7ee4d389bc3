package record

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/wiv/out_wivaudit/test/chunks"
)

// BenchmarkDecode is our path: one pass from msgpack to JSON bytes, key order kept, routing fields read, for
// a chunk of 200 events of one organisation.
func BenchmarkDecode(b *testing.B) { benchDecode(b, 1) }

// BenchmarkDecodeManyOrgs is the same chunk spread over 200 organisations.
func BenchmarkDecodeManyOrgs(b *testing.B) { benchDecode(b, 200) }

func benchDecode(b *testing.B, orgs int) {
	chunk := chunks.AuditChunk(200, orgs)
	d := NewDecoder("org_id", "", 1<<20)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		d.Decode(chunk, "audit.user", func(ev *Event) {
			if ev.Reject != "" {
				b.Fatal(ev.Reject)
			}
		})
	}
}

// benchTime lets the baseline decode Fluent Bit's EventTime through msgpack's extension registry.
type benchTime [8]byte

func (t *benchTime) MarshalMsgpack() ([]byte, error) { return t[:], nil }

func (t *benchTime) UnmarshalMsgpack(b []byte) error {
	copy(t[:], b)
	return nil
}

func init() { msgpack.RegisterExt(0, (*benchTime)(nil)) }

// BenchmarkDecodeBaseline is the common approach (decode to interface values, then encoding/json), which also
// loses the key order; it is the yardstick for BenchmarkDecode.
func BenchmarkDecodeBaseline(b *testing.B) {
	chunk := chunks.AuditChunk(200, 1)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		d := msgpack.NewDecoder(bytes.NewReader(chunk))
		for {
			var ev []any
			if err := d.Decode(&ev); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(ev[1]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
