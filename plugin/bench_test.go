package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// benchChunk is 200 audit events shaped like the delivery guide's, in the V2 layout, of orgs organisations.
func benchChunk(b *testing.B, orgs ...int) []byte {
	n := 1
	if len(orgs) > 0 {
		n = orgs[0]
	}
	var chunk []byte
	for i := range 200 {
		body, err := msgpack.Marshal(map[string]any{ // the key order does not matter for timing
			"id": fmt.Sprintf("57c850b7-46ba-4b53-a421-%012d", i), "org_id": fmt.Sprintf("org-%04d", i%n),
			"org_name": "Your Organization", "event_type": "UserRoleChanged",
			"event_data": map[string]any{"from": "viewer", "to": "admin", "changes": []any{1, "two", 3.5, nil}},
			"created_at": 1769611845 + i, "caused_by_id": "c3a1", "caused_by_type": "ApiKey",
			"caused_by_source_ip": "54.89.215.109", "relevant_user_email": nil,
		})
		if err != nil {
			b.Fatal(err)
		}
		chunk = append(chunk, v2(evTime, body)...)
	}
	return chunk
}

// BenchmarkDecode is our path: one pass from msgpack to JSON bytes, key order kept, routing fields read.
func BenchmarkDecode(b *testing.B) {
	chunk := benchChunk(b)
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
	chunk := benchChunk(b)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		d := msgpack.NewDecoder(byteReader(chunk))
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

// BenchmarkFlush is the whole flush path: decode, route, append and fsync, for one organisation.
func BenchmarkFlush(b *testing.B) { benchFlush(b, 1) }

// BenchmarkFlushManyOrgs is the same chunk spread over 200 organisations: 200 streams to append to and sync.
func BenchmarkFlushManyOrgs(b *testing.B) { benchFlush(b, 200) }

func benchFlush(b *testing.B, orgs int) {
	chunk := benchChunk(b, orgs)
	cfg := testConfig(&testing.T{})
	cfg.StoreDir = b.TempDir()
	cfg.TotalFileSize = 1 << 30
	in, err := start(cfg, "bench", func(Level, string) {}, &fakeS3{objects: map[string][]byte{}}, testHooks{})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		if in.Flush(chunk, "audit.user") != OK {
			b.Fatal("flush failed")
		}
	}
}

// BenchmarkFlushBaseline writes and fsyncs the same number of bytes: the floor that the disk sets.
func BenchmarkFlushBaseline(b *testing.B) {
	chunk := benchChunk(b)
	path := filepath.Join(b.TempDir(), "raw")
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		f.Write(chunk)
		f.Sync()
		f.Close()
	}
}
