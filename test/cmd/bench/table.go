package main

import (
	"fmt"
	"io"
	"strings"
)

// row is one line of the table; empty fields print as blanks.
type row struct {
	name                    string
	cpu                     *cpu // CPU-seconds per 1M events
	perObject               *cpu // CPU-ms per object, in the user and sys columns
	rss                     float64
	objects                 int64
	ratio                   string
	p50, p99                float64
	floors                  string
	nsPerOp, mbPerS, allocs string
}

var columns = []string{"measurement", "user", "sys", "CPU-s/1M ev", "peak RSS MiB", "objects", "ratio",
	"FlushCtx p50 ms", "p99 ms", "x floors", "ns/op", "MB/s", "allocs/op"}

type table struct{ rows [][]string }

func (t *table) add(r row) {
	cells := []string{r.name, "", "", "", "", "", r.ratio, "", "", r.floors, r.nsPerOp, r.mbPerS, r.allocs}
	if r.cpu != nil {
		cells[1], cells[2], cells[3] = fmt.Sprintf("%.2f", r.cpu.user), fmt.Sprintf("%.2f", r.cpu.sys), fmt.Sprintf("%.2f", r.cpu.total())
	}
	if r.perObject != nil {
		cells[1], cells[2] = fmt.Sprintf("%.3f ms", r.perObject.user), fmt.Sprintf("%.3f ms", r.perObject.sys)
	}
	if r.rss > 0 {
		cells[4] = fmt.Sprintf("%.0f", r.rss)
	}
	if r.objects > 0 {
		cells[5] = fmt.Sprint(r.objects)
	}
	if r.p50 > 0 || r.p99 > 0 {
		cells[7], cells[8] = fmt.Sprintf("%.2f", r.p50), fmt.Sprintf("%.2f", r.p99)
	}
	t.rows = append(t.rows, cells)
}

// print writes the table as Markdown with aligned columns: numbers right, names left.
func (t *table) print(w io.Writer) {
	width := make([]int, len(columns))
	for i, c := range columns {
		width[i] = len(c)
	}
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i == 0 {
				fmt.Fprintf(&b, "| %-*s ", width[i], c)
			} else {
				fmt.Fprintf(&b, "| %*s ", width[i], c)
			}
		}
		fmt.Fprintln(w, b.String()+"|")
	}
	line(columns)
	sep := make([]string, len(columns))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
		if i > 0 {
			sep[i] = sep[i][1:] + ":"
		}
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
}
