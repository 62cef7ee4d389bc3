package wal

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// A frame is magic | length (uint32 LE) | CRC-32C of length and record (uint32 LE) | record. The checksum
// finds torn and damaged writes after a crash; the magic lets a reader find the next good frame.
var magic = []byte{0xF7, 'W', 'V', '1'}

const (
	// HeaderLen is what a frame adds to its record.
	HeaderLen = 12
	// MaxRecord is the longest record a frame holds.
	MaxRecord = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendFrame adds record's frame to dst.
func AppendFrame(dst, record []byte) []byte {
	start := len(dst)
	dst = append(dst, magic...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(record)))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = append(dst, record...)
	binary.LittleEndian.PutUint32(dst[start+8:], checksum(dst[start+4:start+8], record))
	return dst
}

func checksum(length, record []byte) uint32 {
	return crc32.Update(crc32.Checksum(length, castagnoli), castagnoli, record)
}

// frameAt returns the record of a valid frame starting at data[0], or ok=false.
func frameAt(data []byte) (record []byte, ok bool) {
	if len(data) < HeaderLen || !bytes.Equal(data[:4], magic) {
		return nil, false
	}
	n := binary.LittleEndian.Uint32(data[4:])
	if n > MaxRecord || uint64(len(data)-HeaderLen) < uint64(n) {
		return nil, false
	}
	// Capped, so that an append by the caller copies instead of writing into the data read.
	record = data[HeaderLen : HeaderLen+int(n) : HeaderLen+int(n)]
	return record, checksum(data[4:8], record) == binary.LittleEndian.Uint32(data[8:])
}

// ScanFrames calls good with each intact record of data in order, with its frame's offset, and bad with each
// damaged region that is followed by an intact frame. It returns the length of the damaged tail after the
// last intact frame: an append cut short by a crash, which was never acknowledged. (The store's log files of
// the layout before this log framed their records the same way.)
func ScanFrames(data []byte, good func(off int, record []byte), bad func(region []byte)) (tail int) {
	off := 0
	for off < len(data) {
		if r, ok := frameAt(data[off:]); ok {
			good(off, r)
			off += HeaderLen + len(r)
			continue
		}
		next := resync(data, off+1)
		if next < 0 {
			return len(data) - off
		}
		bad(data[off:next])
		off = next
	}
	return 0
}

func resync(data []byte, from int) int {
	for from < len(data) {
		i := bytes.Index(data[from:], magic)
		if i < 0 {
			return -1
		}
		if _, ok := frameAt(data[from+i:]); ok {
			return from + i
		}
		from += i + 1
	}
	return -1
}
