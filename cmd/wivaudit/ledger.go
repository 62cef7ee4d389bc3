package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/vfs"
)

// ledgerRows is how many table rows are aligned together: the table is written as it is read, so that a
// ledger of Ledger_Limit_Size (100M by default) is not held in memory, e.g. in the plugin's container.
const ledgerRows = 1000

// table writes rows in blocks of ledgerRows, each column as wide as its widest cell so far: a column never
// narrows from one block to the next.
type table struct {
	w      io.Writer
	rows   [][]string
	widths []int
}

func (t *table) add(cells ...string) {
	for i, c := range cells {
		if i == len(t.widths) {
			t.widths = append(t.widths, 0)
		}
		t.widths[i] = max(t.widths[i], len(c))
	}
	if t.rows = append(t.rows, cells); len(t.rows) == ledgerRows {
		t.flush()
	}
}

func (t *table) flush() {
	var b strings.Builder
	for _, row := range t.rows {
		var line strings.Builder
		for i, c := range row {
			line.WriteString(c + strings.Repeat(" ", t.widths[i]-len(c)+2))
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	io.WriteString(t.w, b.String())
	t.rows = t.rows[:0]
}

// ledgerTime is the table's time: milliseconds always, so that the column keeps its width.
const ledgerTime = "2006-01-02T15:04:05.000Z"

// runLedger prints the delivery ledger of a Store_Dir: what was delivered where, when and with what.
func runLedger(e *env, c *command, args []string) int {
	fs := flags(e, c)
	org := fs.String("org", "", "only this organisation (case-insensitive)")
	from := fs.String("from", "", "only entries recorded at or after this time (RFC 3339, e.g. 2026-11-29T00:00:00Z)")
	to := fs.String("to", "", "only entries recorded before this time (RFC 3339)")
	asJSON := fs.Bool("json", false, "print each entry as one JSON line, as the ledger keeps it")
	pos, code, ok := parse(e, fs, args, "DIR")
	if !ok {
		return code
	}
	filter := ledger.Filter{Org: *org}
	if code, ok := parseTimes(e, fs, timeFlag{"--from", *from, &filter.From}, timeFlag{"--to", *to, &filter.To}); !ok {
		return code
	}
	if fi, err := os.Stat(pos[0]); err != nil || !fi.IsDir() {
		return usageError(e, fs, "%s is not a Store_Dir folder", pos[0])
	}
	tw := &table{w: e.stdout}
	if !*asJSON {
		tw.add("TIME", "STATUS", "ORG", "KIND", "BUCKET", "KEY", "RECORDS", "BYTES", "SHA256", "VERSION")
	}
	n := 0
	for entry, err := range ledger.Read(vfs.OS, filepath.Join(pos[0], ledger.Folder), filter) {
		if err != nil {
			fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
			continue
		}
		n++
		if *asJSON {
			line, _ := json.Marshal(entry)
			fmt.Fprintf(e.stdout, "%s\n", line)
			continue
		}
		tw.add(entry.Time.UTC().Format(ledgerTime), entry.Status, entry.Org, entry.Kind, entry.Bucket, entry.Key,
			strconv.Itoa(entry.Records), strconv.FormatInt(entry.Bytes, 10), entry.SHA256, entry.VersionID)
	}
	tw.flush()
	if !*asJSON {
		fmt.Fprintf(e.stdout, "%d entries\n", n)
	}
	return exitOK
}
