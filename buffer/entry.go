package buffer

import (
	"encoding/binary"
	"errors"

	"github.com/wiv/out_wivaudit/wal"
)

// The log holds two kinds of entry, each one frame:
//
//	run:    'R' | len(kind) | kind | len(org) | org | arrival ms (int64) | records (uint32) | records joined by ",\n"
//	sealed: 'S' | len(kind) | kind | len(org) | org | key ms (int64) | first run (segment, offset) | last run (segment, offset)
//	batch:  'B' | len(kind) | kind | len(org) | org | key ms (int64) | first run | last run | records (uint32) |
//	        first arrival ms (int64) | last arrival ms (int64) | sealed at ms (int64) | len(destination) (uint16) |
//	        len(key) (uint16) | destination | key
//
// Each is one record of the log (package wal). A run is a flush's records of one stream. A sealed entry says
// that a stream's runs from first to last (log positions, inclusive) are done with: in a committed batch file,
// or delivered. A batch entry says that they are a batch that lives in the log, under that key millisecond and
// for that destination, until a sealed entry of the same range says it is delivered or spilled to a file.
// Recovery gathers neither again.
const (
	runEntry    = 'R'
	sealedEntry = 'S'
	batchEntry  = 'B'
	// Separator is what joins the records of a run, and the runs of a batch, as they go into an object.
	Separator = ",\n"
)

var errEntry = errors.New("unreadable log entry")

func appendStreamHead(dst []byte, typ byte, st Stream) []byte {
	dst = append(dst, typ, byte(len(st.Kind)))
	dst = append(dst, st.Kind...)
	dst = append(dst, byte(len(st.Org)))
	return append(dst, st.Org...)
}

func appendSealed(dst []byte, st Stream, keyMs int64, first, last wal.Pos) []byte {
	dst = appendStreamHead(dst, sealedEntry, st)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(keyMs))
	for _, p := range []wal.Pos{first, last} {
		dst = binary.LittleEndian.AppendUint64(dst, p.Seg)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(p.Off))
	}
	return dst
}

func appendBatch(dst []byte, st Stream, keyMs int64, first, last wal.Pos, records int, firstAt, lastAt, sealedAt int64, dest, key string) []byte {
	dst = appendSealed(dst, st, keyMs, first, last)
	dst[0] = batchEntry
	dst = binary.LittleEndian.AppendUint32(dst, uint32(records))
	for _, ms := range []int64{firstAt, lastAt, sealedAt} {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(ms))
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(dest)))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	return append(append(dst, dest...), key...)
}

// entry is a decoded log entry. Records aliases the frame.
type entry struct {
	typ         byte
	st          Stream
	ms          int64 // a run's arrival, a sealed or batch entry's key millisecond
	records     int
	body        []byte  // a run's records, joined by Separator
	first, last wal.Pos // a sealed or batch entry's range
	// a batch entry's arrivals of its first and last records, when it was sealed (unix ms), its destination and key
	firstAt, lastAt, sealedAt int64
	dest, key                 string
}

const batchFixed = 32 + 4 + 24 + 4 // a batch entry's bytes after the key millisecond, its destination and key excluded

// parseEntry decodes a frame's payload. Stream names are copied; the body aliases payload.
func parseEntry(p []byte) (entry, error) {
	var e entry
	if len(p) < 2 {
		return e, errEntry
	}
	e.typ = p[0]
	n := int(p[1])
	p = p[2:]
	if len(p) < n+1 {
		return e, errEntry
	}
	kind := p[:n]
	p = p[n:]
	n = int(p[0])
	p = p[1:]
	if len(p) < n+8 {
		return e, errEntry
	}
	e.st = Stream{Org: string(p[:n]), Kind: string(kind)}
	p = p[n:]
	e.ms = int64(binary.LittleEndian.Uint64(p))
	p = p[8:]
	switch e.typ {
	case runEntry:
		if len(p) < 4 {
			return e, errEntry
		}
		e.records = int(binary.LittleEndian.Uint32(p))
		e.body = p[4:]
	case sealedEntry:
		if len(p) != 32 {
			return e, errEntry
		}
		e.first, e.last = rangeOf(p)
	case batchEntry:
		if len(p) < batchFixed {
			return e, errEntry
		}
		destLen, keyLen := int(binary.LittleEndian.Uint16(p[batchFixed-4:])), int(binary.LittleEndian.Uint16(p[batchFixed-2:]))
		if len(p) != batchFixed+destLen+keyLen || keyLen == 0 {
			return e, errEntry
		}
		e.first, e.last = rangeOf(p)
		e.records = int(binary.LittleEndian.Uint32(p[32:]))
		e.firstAt = int64(binary.LittleEndian.Uint64(p[36:]))
		e.lastAt = int64(binary.LittleEndian.Uint64(p[44:]))
		e.sealedAt = int64(binary.LittleEndian.Uint64(p[52:]))
		e.dest = string(p[batchFixed : batchFixed+destLen])
		e.key = string(p[batchFixed+destLen:])
	default:
		return e, errEntry
	}
	if !safeName(e.st.Org) || !safeName(e.st.Kind) {
		return e, errEntry
	}
	return e, nil
}

func rangeOf(p []byte) (first, last wal.Pos) {
	first = wal.Pos{Seg: binary.LittleEndian.Uint64(p), Off: int64(binary.LittleEndian.Uint64(p[8:]))}
	last = wal.Pos{Seg: binary.LittleEndian.Uint64(p[16:]), Off: int64(binary.LittleEndian.Uint64(p[24:]))}
	return first, last
}

// jsonBytes is what a run's records weigh without the separators between them.
func jsonBytes(body []byte, records int) int64 {
	return int64(len(body) - len(Separator)*max(0, records-1))
}
