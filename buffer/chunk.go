package buffer

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/wiv/out_wivaudit/wal"
)

// Chunk gathers one flush's records by stream, already encoded as log runs, so that Append writes them with
// one write. Reuse a Chunk with Reset: it keeps its buffers.
type Chunk struct {
	runs    []chunkRun
	n       int // runs in use
	index   map[Stream]int
	entries [][]byte // the runs' entries, as one append takes them
	last    int      // the run the previous record went to, checked first: chunks carry runs of one organisation
	size    int64
}

type chunkRun struct {
	st      Stream
	entry   []byte // the run's log entry
	records int
}

// NewChunk returns an empty chunk.
func NewChunk() *Chunk { return &Chunk{index: map[Stream]int{}, last: -1} }

// Reset empties the chunk for reuse.
func (c *Chunk) Reset() {
	clear(c.index)
	c.n, c.last, c.size = 0, -1, 0
}

// Add appends a copy of one record (a JSON object) to its stream's run.
func (c *Chunk) Add(st Stream, record []byte) {
	i := c.last
	if i < 0 || i >= c.n || c.runs[i].st != st {
		var ok bool
		if i, ok = c.index[st]; !ok {
			i = c.newRun(st)
		}
		c.last = i
	}
	r := &c.runs[i]
	before := len(r.entry)
	if r.records > 0 {
		r.entry = append(r.entry, Separator...)
	}
	r.entry = append(r.entry, record...)
	r.records++
	c.size += int64(len(r.entry) - before)
}

func (c *Chunk) newRun(st Stream) int {
	if c.n == len(c.runs) {
		c.runs = append(c.runs, chunkRun{})
	}
	i := c.n
	c.n++
	c.index[st] = i
	r := &c.runs[i]
	r.st, r.records = st, 0
	r.entry = appendStreamHead(r.entry[:0], runEntry, st)
	r.entry = append(r.entry, make([]byte, 8+4)...) // arrival and count, filled by encode
	c.size += int64(wal.HeaderLen + len(r.entry))
	return i
}

// body is the run's records, joined by Separator.
func (r *chunkRun) body() []byte {
	return r.entry[3+len(r.st.Kind)+len(r.st.Org)+8+4:]
}

// Size is what the chunk takes in the log.
func (c *Chunk) Size() int64 { return c.size }

// Records is how many records the chunk holds.
func (c *Chunk) Records() int {
	n := 0
	for _, r := range c.runs[:c.n] {
		n += r.records
	}
	return n
}

// encode fills in each run's arrival and count, and returns the runs' entries.
func (c *Chunk) encode(arrival int64) ([][]byte, error) {
	c.entries = c.entries[:0]
	for _, r := range c.runs[:c.n] {
		if !safeName(r.st.Org) || !safeName(r.st.Kind) || len(r.st.Kind) > maxKind {
			return nil, fmt.Errorf("buffer %s: unsafe stream name", r.st)
		}
		if len(r.entry) > wal.MaxRecord {
			return nil, fmt.Errorf("buffer %s: %d bytes of records in one chunk, more than %d", r.st, len(r.entry), wal.MaxRecord)
		}
		fixed := 3 + len(r.st.Kind) + len(r.st.Org)
		binary.LittleEndian.PutUint64(r.entry[fixed:], uint64(arrival))
		binary.LittleEndian.PutUint32(r.entry[fixed+8:], uint32(r.records))
		c.entries = append(c.entries, r.entry)
	}
	return c.entries, nil
}

// safeName keeps stream names usable as parts of a file name and within a length byte. Callers validate them
// more strictly. A kind is at most maxKind bytes, so that an organisation's 128 and the rest of a batch's
// file name (quarantine prefix and suffixes included) stay within the 255 bytes a file name may have.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= 128 &&
		!strings.ContainsAny(s, sep+"/\\\x00") && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 })
}

// sep separates the parts of batch file names.
const sep = "~"

// maxKind is the longest kind a stream may have.
const maxKind = 32
