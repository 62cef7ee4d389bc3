package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
)

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
	filter := buffer.LedgerFilter{Org: *org}
	if code, ok := parseTimes(e, fs, timeFlag{"--from", *from, &filter.From}, timeFlag{"--to", *to, &filter.To}); !ok {
		return code
	}
	if fi, err := os.Stat(pos[0]); err != nil || !fi.IsDir() {
		return usageError(e, fs, "%s is not a Store_Dir folder", pos[0])
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(tw, "TIME\tSTATUS\tORG\tKIND\tBUCKET\tKEY\tRECORDS\tBYTES\tSHA256\tVERSION")
	}
	n := 0
	for entry, err := range buffer.ReadLedger(pos[0], filter) {
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", entry.Time.Format(time.RFC3339Nano), entry.Status, entry.Org,
			entry.Kind, entry.Bucket, entry.Key, entry.Records, entry.Bytes, entry.SHA256, entry.VersionID)
	}
	tw.Flush()
	if !*asJSON {
		fmt.Fprintf(e.stdout, "%d entries\n", n)
	}
	return exitOK
}
