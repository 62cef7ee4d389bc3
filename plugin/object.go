package plugin

import (
	"bufio"
	"fmt"
	"io"
	"iter"

	"github.com/klauspost/compress/gzip"
)

// writeObject writes the object customers download: a gzip of one JSON array holding the records as received,
// one per line so that zgrep finds a single event.
func writeObject(w io.Writer, records iter.Seq[[]byte]) error {
	zw := gzip.NewWriter(w)
	bw := bufio.NewWriterSize(zw, 64<<10)
	bw.WriteString("[\n")
	first := true
	for r := range records {
		if !first {
			bw.WriteString(",\n")
		}
		first = false
		bw.Write(r)
	}
	bw.WriteString("\n]\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	return zw.Close()
}

// objectKey is where a batch goes: <prefix><org_id>/<kind>-audit-logs-<unix_ms>.json.gz.
func objectKey(prefix, org, kind string, ms int64) string {
	return fmt.Sprintf("%s%s/%s-audit-logs-%d.json.gz", prefix, org, kind, ms)
}
