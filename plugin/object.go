package plugin

import (
	"bufio"
	"fmt"
	"io"
	"iter"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
)

// compressor is a gzip writer and the buffer in front of it, kept for reuse: a writer's tables cost about as
// much to allocate and clear as compressing a small batch.
type compressor struct {
	zw *gzip.Writer
	bw *bufio.Writer
}

// compressors holds idle compressors, one pool per gzip level.
var compressors [gzip.BestCompression + 1]sync.Pool

// objectEncoder returns the writer of the objects customers download at a gzip level from 1 to 9: a gzip of
// one JSON array holding the records as received, one per line so that zgrep finds a single event.
func objectEncoder(level int) buffer.Encoder {
	return func(w io.Writer, records iter.Seq[[]byte]) error {
		if level < gzip.BestSpeed || level > gzip.BestCompression {
			return fmt.Errorf("compress: level %d is not from %d to %d", level, gzip.BestSpeed, gzip.BestCompression)
		}
		c, ok := compressors[level].Get().(*compressor)
		if ok {
			c.zw.Reset(w)
			c.bw.Reset(c.zw)
		} else {
			zw, err := gzip.NewWriterLevel(w, level)
			if err != nil {
				return fmt.Errorf("compress: %w", err)
			}
			c = &compressor{zw: zw, bw: bufio.NewWriterSize(zw, 64<<10)}
		}
		defer compressors[level].Put(c)
		if err := writeArray(c.bw, records); err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		return c.zw.Close()
	}
}

// writeArray writes the records as a JSON array, one record per line, and flushes w.
func writeArray(w *bufio.Writer, records iter.Seq[[]byte]) error {
	w.WriteString("[\n")
	first := true
	for r := range records {
		if !first {
			w.WriteString(",\n")
		}
		first = false
		w.Write(r)
	}
	w.WriteString("\n]\n")
	return w.Flush()
}

// objectKey is where a batch goes: <prefix><org_id>/<kind>-audit-logs-<unix_ms>.json.gz.
func objectKey(prefix, org, kind string, ms int64) string {
	return fmt.Sprintf("%s%s/%s-audit-logs-%d.json.gz", prefix, org, kind, ms)
}

// destKey is a batch's key at millisecond ms in destination d: d's prefix and d's spelling of the organisation.
func destKey(d conf.Destination, b *buffer.Batch, ms int64) string {
	return objectKey(d.KeyPrefix, d.OrgID, b.Kind, ms)
}
