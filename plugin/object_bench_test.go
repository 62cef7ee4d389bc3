package plugin

import (
	"bufio"
	"fmt"
	"io"
	"iter"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/test/workload"
)

// referenceStreams is the reference workload (200,000 events, 100 organisations x 3 kinds) grouped by stream:
// the objects the plugin makes of it when every stream fits in one batch.
var referenceStreams = sync.OnceValues(func() ([][][]byte, error) {
	w, err := workload.Generate(workload.Reference)
	if err != nil {
		return nil, err
	}
	return w.Streams(), nil
})

// countingWriter counts what it is given and keeps nothing.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return len(b), nil
}

// benchObjects encodes every stream of the reference workload per op. Besides ns/op it reports MB/s of JSON
// in, the compression ratio (JSON bytes / object bytes) and the thread's CPU-seconds per 1M events, which other
// load on the machine does not inflate as it does wall time.
func benchObjects(b *testing.B, encode buffer.Encoder) {
	streams, err := referenceStreams()
	if err != nil {
		b.Fatal(err)
	}
	var in, events int64
	for _, s := range streams {
		events += int64(len(s))
		for _, r := range s {
			in += int64(len(r))
		}
	}
	var out countingWriter
	b.SetBytes(in)
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, ops := threadCPU(), 0
	for b.Loop() {
		out.n = 0
		for _, s := range streams {
			if err := encode(&out, slices.Values(s)); err != nil {
				b.Fatal(err)
			}
		}
		ops++
	}
	b.ReportMetric((threadCPU()-start).Seconds()/float64(ops)/float64(events)*1e6, "cpu-s/1M-events")
	b.ReportMetric(float64(in)/float64(out.n), "ratio")
}

// threadCPU is the calling thread's CPU time (getrusage RUSAGE_THREAD, Linux).
func threadCPU() time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSealObject is the CPU of sealing: every stream of the reference workload into its object at the
// default Compression_Level.
func BenchmarkSealObject(b *testing.B) { benchObjects(b, objectEncoder(conf.DefaultCompressionLevel)) }

// BenchmarkCompressionLevel measures CPU against ratio for every Compression_Level, and HuffmanOnly (which
// the setting refuses) for comparison.
func BenchmarkCompressionLevel(b *testing.B) {
	for level := 1; level <= 9; level++ {
		b.Run(fmt.Sprintf("level=%d", level), func(b *testing.B) { benchObjects(b, objectEncoder(level)) })
	}
	b.Run("huffman-only", func(b *testing.B) {
		benchObjects(b, func(w io.Writer, records iter.Seq[[]byte]) error {
			zw, err := gzip.NewWriterLevel(w, gzip.HuffmanOnly)
			if err != nil {
				return err
			}
			if err := writeArray(bufio.NewWriterSize(zw, 64<<10), records); err != nil {
				return err
			}
			return zw.Close()
		})
	})
}
