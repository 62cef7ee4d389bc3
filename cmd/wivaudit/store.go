package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
)

func runInspect(e *env, c *command, args []string) int {
	fs := flags(e, c)
	asJSON := fs.Bool("json", false, "print the numbers as JSON")
	pos, code, ok := parse(e, fs, args, "DIR")
	if !ok {
		return code
	}
	in, err := buffer.Inspect(pos[0])
	if errors.Is(err, buffer.ErrNotStore) {
		return usageError(e, fs, "%v", err)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitRefused
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(in)
		return exitOK
	}
	printInspection(e, pos[0], in)
	return exitOK
}

// printInspection prints one line per stream, the totals, the dead letters and what else needs a look.
func printInspection(e *env, dir string, in *buffer.Inspection) {
	fmt.Fprintf(e.stdout, "Store_Dir %s (read without its lock: a snapshot)\n", dir)
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ORG_ID\tKIND\tUNSEALED (JSON)\tSEALED BATCHES\tQUARANTINED BATCHES\tOLDEST RECORD")
	var total buffer.StreamContents
	for _, s := range in.Streams {
		oldest := "-"
		if ms := oldestOf(s.Unsealed, s.Sealed, s.Quarantined); ms != 0 {
			at := time.UnixMilli(ms)
			oldest = fmt.Sprintf("%s (%s ago)", at.UTC().Format(time.RFC3339), e.now().Sub(at).Round(time.Second))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Org, s.Kind, records(s.Unsealed, false), records(s.Sealed, true), records(s.Quarantined, true), oldest)
		for _, h := range []struct{ to, from *buffer.Holding }{{&total.Unsealed, &s.Unsealed}, {&total.Sealed, &s.Sealed}, {&total.Quarantined, &s.Quarantined}} {
			h.to.Batches += h.from.Batches
			h.to.Records += h.from.Records
			h.to.Bytes += h.from.Bytes
		}
	}
	fmt.Fprintf(w, "total\t\t%s\t%s\t%s\t\n", records(total.Unsealed, false), records(total.Sealed, true), records(total.Quarantined, true))
	w.Flush()
	fmt.Fprintf(e.stdout, "dead letters: %d lines, %d bytes (%s)\n", in.DeadLetters.Lines, in.DeadLetters.Bytes, buffer.DeadLetterFile)
	if len(in.SetAside) > 0 {
		fmt.Fprintf(e.stdout, "set aside in quarantine/ by recovery (not batches; requeue leaves them): %d files\n", len(in.SetAside))
		for _, name := range in.SetAside {
			fmt.Fprintf(e.stdout, "  %s\n", name)
		}
	}
	if in.DamagedRegions > 0 {
		fmt.Fprintf(e.stdout, "damaged log regions: %d (the next start moves them to the dead-letter file)\n", in.DamagedRegions)
	}
}

// records says what a part of a stream holds: "-", "3 records, 120 bytes" or "2: 40 records, 1187 bytes".
func records(h buffer.Holding, batches bool) string {
	switch {
	case h.Records == 0 && h.Batches == 0:
		return "-"
	case batches:
		return fmt.Sprintf("%d: %d records, %d bytes", h.Batches, h.Records, h.Bytes)
	}
	return fmt.Sprintf("%d records, %d bytes", h.Records, h.Bytes)
}

func oldestOf(hs ...buffer.Holding) int64 {
	var ms int64
	for _, h := range hs {
		if h.Oldest != 0 && (ms == 0 || h.Oldest < ms) {
			ms = h.Oldest
		}
	}
	return ms
}

func runRequeue(e *env, c *command, args []string) int {
	fs := flags(e, c)
	org := fs.String("org", "", "only this organisation's batches")
	pos, code, ok := parse(e, fs, args, "DIR")
	if !ok {
		return code
	}
	dir := pos[0]
	r, err := buffer.Requeue(dir, *org, e.now())
	var locked *buffer.LockedError
	switch {
	case errors.As(err, &locked):
		fmt.Fprintf(e.stderr, "%s: the plugin is running on %s (lock held by pid %s); stop it first\n", fs.Name(), dir, locked.Holder)
		return exitRefused
	case errors.Is(err, buffer.ErrNotStore):
		return usageError(e, fs, "%v", err)
	}
	if r != nil {
		for _, m := range r.Batches {
			fmt.Fprintf(e.stdout, "requeued %s/%s: %s, %d records\n", m.Org, m.Kind, m.Key, m.Records)
		}
		for _, left := range r.Left {
			fmt.Fprintf(e.stdout, "left in quarantine: %s\n", left)
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitRefused
	}
	if len(r.Batches) == 0 {
		fmt.Fprintf(e.stdout, "nothing to requeue in %s\n", filepath.Join(dir, "quarantine"))
		return exitOK
	}
	fmt.Fprintf(e.stdout, "%d batches put back into %s: the plugin uploads them at its next start, and quarantines them again only after Quarantine_After from now\n",
		len(r.Batches), filepath.Join(dir, "batches"))
	return exitOK
}
