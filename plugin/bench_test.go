package plugin

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wiv/out_wivaudit/test/chunks"
)

// BenchmarkFlush is the whole flush path: decode, route, append and fsync, for one organisation.
func BenchmarkFlush(b *testing.B) { benchFlush(b, 1) }

// BenchmarkFlushManyOrgs is the same chunk spread over 200 organisations: 200 streams to append to and sync.
func BenchmarkFlushManyOrgs(b *testing.B) { benchFlush(b, 200) }

func benchFlush(b *testing.B, orgs int) {
	chunk := chunks.AuditChunk(200, orgs)
	cfg := testConfig(&testing.T{})
	cfg.StoreDir = b.TempDir()
	cfg.TotalFileSize = 1 << 30
	in, err := start(cfg, "bench", func(Level, string) {}, deps{send: &fakeS3{}, clock: realClock{}})
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
	chunk := chunks.AuditChunk(200, 1)
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
