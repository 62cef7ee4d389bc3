package buffer

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// A frame is magic | length (uint32 LE) | CRC-32C of length and payload (uint32 LE) | payload. The checksum
// finds torn and damaged writes after a crash; the magic lets a reader find the next good frame.
var magic = []byte{0xF7, 'W', 'V', '1'}

const (
	headerLen   = 12
	maxFrameLen = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// putHeader fills the headerLen bytes at the start of frame for the payload that follows them.
func putHeader(frame []byte) {
	payload := frame[headerLen:]
	copy(frame, magic)
	binary.LittleEndian.PutUint32(frame[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[8:], crc32.Update(crc32.Checksum(frame[4:8], castagnoli), castagnoli, payload))
}

// frameAt returns the payload of a valid frame starting at data[0], or ok=false.
func frameAt(data []byte) (payload []byte, ok bool) {
	if len(data) < headerLen || !bytes.Equal(data[:4], magic) {
		return nil, false
	}
	n := binary.LittleEndian.Uint32(data[4:])
	if n > maxFrameLen || uint64(len(data)-headerLen) < uint64(n) {
		return nil, false
	}
	// Capped, so that an append by the caller copies instead of writing into a read-only mapping.
	payload = data[headerLen : headerLen+int(n) : headerLen+int(n)]
	crc := crc32.Update(crc32.Checksum(data[4:8], castagnoli), castagnoli, payload)
	return payload, crc == binary.LittleEndian.Uint32(data[8:])
}

// scanFrames calls good with each intact payload in order and bad with each damaged region that is followed by
// an intact frame. It returns the length of the damaged tail after the last intact frame: an append cut short
// by a crash, which was never acknowledged.
func scanFrames(data []byte, good, bad func([]byte)) (tail int) {
	off := 0
	for off < len(data) {
		if p, ok := frameAt(data[off:]); ok {
			good(p)
			off += headerLen + len(p)
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
