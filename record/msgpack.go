package record

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
)

// The msgpack reader works on the chunk in place: a string, a bin or an extension's data is a slice of the
// chunk, never a copy, and nothing is allocated. msgpack's own Decoder copies every string it reads into a
// new slice, which was most of the cost of a record. The codes are constants here (msgpcode's are
// variables), so that the switch below compiles to a jump table.

// msgpack codes, from the specification.
const (
	posFixintHigh = 0x7f
	fixmapHigh    = 0x8f
	fixarrayHigh  = 0x9f
	fixstrHigh    = 0xbf
	codeNil       = 0xc0
	codeFalse     = 0xc2
	codeTrue      = 0xc3
	codeBin8      = 0xc4
	codeBin16     = 0xc5
	codeBin32     = 0xc6
	codeExt8      = 0xc7
	codeExt16     = 0xc8
	codeExt32     = 0xc9
	codeFloat32   = 0xca
	codeFloat64   = 0xcb
	codeUint8     = 0xcc
	codeUint16    = 0xcd
	codeUint32    = 0xce
	codeUint64    = 0xcf
	codeInt8      = 0xd0
	codeInt16     = 0xd1
	codeInt32     = 0xd2
	codeInt64     = 0xd3
	codeFixext1   = 0xd4
	codeFixext2   = 0xd5
	codeFixext4   = 0xd6
	codeFixext8   = 0xd7
	codeFixext16  = 0xd8
	codeStr8      = 0xd9
	codeStr16     = 0xda
	codeStr32     = 0xdb
	codeArray16   = 0xdc
	codeArray32   = 0xdd
	codeMap16     = 0xde
	codeMap32     = 0xdf
	negFixintLow  = 0xe0
)

// typ is the JSON-relevant type of a msgpack value.
type typ uint8

const (
	tNil typ = iota
	tBool
	tInt
	tUint
	tFloat32
	tFloat64
	tStr
	tBin
	tArray
	tMap
	tExt
)

var typeNames = [...]string{tNil: "nil", tBool: "boolean", tInt: "integer", tUint: "integer", tFloat32: "float",
	tFloat64: "float", tStr: "string", tBin: "bin", tArray: "array", tMap: "map", tExt: "extension"}

func (t typ) String() string { return typeNames[t] }

// item is one msgpack value as read: a scalar, the header of an array or a map, or a str, bin or ext with its
// bytes.
type item struct {
	typ  typ
	code byte    // the first byte, as received
	n    int     // elements of an array, entries of a map
	i    int64   // tInt; tBool: 1 for true
	u    uint64  // tUint
	f    float64 // tFloat32, tFloat64
	data []byte  // tStr, tBin, tExt: a slice of the input
	ext  int8    // tExt: the extension type
}

type reader struct {
	b   []byte
	off int
}

var errUnusedCode = errors.New("msgpack code 0xc1, which is never used")

// take returns the next n bytes and moves past them.
func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, io.ErrUnexpectedEOF
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b, nil
}

// length reads a big-endian length of size bytes (1, 2 or 4).
func (r *reader) length(size int) (int, error) {
	b, err := r.take(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return int(b[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(b)), nil
	}
	return int(binary.BigEndian.Uint32(b)), nil
}

// bytesOf reads a str, bin or ext payload whose length is stored in size bytes.
func (r *reader) bytesOf(size int) ([]byte, error) {
	n, err := r.length(size)
	if err != nil {
		return nil, err
	}
	return r.take(n)
}

// read reads the next value (for an array or a map, only its header) into it.
func (r *reader) read(it *item) error {
	if r.off >= len(r.b) {
		return io.ErrUnexpectedEOF
	}
	c := r.b[r.off]
	r.off++
	it.code = c
	var err error
	switch {
	case c <= posFixintHigh:
		it.typ, it.i = tInt, int64(c)
		return nil
	case c >= negFixintLow:
		it.typ, it.i = tInt, int64(int8(c))
		return nil
	case c <= fixmapHigh:
		it.typ, it.n = tMap, int(c&0x0f)
		return nil
	case c <= fixarrayHigh:
		it.typ, it.n = tArray, int(c&0x0f)
		return nil
	case c <= fixstrHigh:
		it.typ = tStr
		it.data, err = r.take(int(c & 0x1f))
		return err
	}
	switch c {
	case codeNil:
		it.typ = tNil
	case codeFalse, codeTrue:
		it.typ, it.i = tBool, int64(c&1)
	case codeBin8, codeBin16, codeBin32:
		it.typ = tBin
		it.data, err = r.bytesOf(1 << (c - codeBin8))
	case codeStr8, codeStr16, codeStr32:
		it.typ = tStr
		it.data, err = r.bytesOf(1 << (c - codeStr8))
	case codeArray16, codeArray32:
		it.typ = tArray
		it.n, err = r.length(2 << (c - codeArray16))
	case codeMap16, codeMap32:
		it.typ = tMap
		it.n, err = r.length(2 << (c - codeMap16))
	case codeExt8, codeExt16, codeExt32:
		var n int
		if n, err = r.length(1 << (c - codeExt8)); err == nil {
			err = r.ext(it, n)
		}
	case codeFixext1, codeFixext2, codeFixext4, codeFixext8, codeFixext16:
		err = r.ext(it, 1<<(c-codeFixext1))
	case codeFloat32:
		var b []byte
		if b, err = r.take(4); err == nil {
			it.typ, it.f = tFloat32, float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
		}
	case codeFloat64:
		var b []byte
		if b, err = r.take(8); err == nil {
			it.typ, it.f = tFloat64, math.Float64frombits(binary.BigEndian.Uint64(b))
		}
	case codeUint8, codeUint16, codeUint32, codeUint64:
		var b []byte
		if b, err = r.take(1 << (c - codeUint8)); err == nil {
			it.typ, it.u = tUint, bigEndian(b)
		}
	case codeInt8, codeInt16, codeInt32, codeInt64:
		var b []byte
		if b, err = r.take(1 << (c - codeInt8)); err == nil {
			shift := 64 - 8*len(b)
			it.typ, it.i = tInt, int64(bigEndian(b)<<shift)>>shift
		}
	default:
		return errUnusedCode
	}
	return err
}

// ext reads an extension's type and its n bytes of data.
func (r *reader) ext(it *item, n int) error {
	t, err := r.take(1)
	if err != nil {
		return err
	}
	it.typ, it.ext = tExt, int8(t[0])
	it.data, err = r.take(n)
	return err
}

func bigEndian(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// skip moves past one whole value, however deeply nested, without recursion: it counts the values still to be
// read. Every value takes at least one byte, so a count beyond the bytes left is a truncated input.
func (r *reader) skip() error {
	var it item
	for pending := 1; pending > 0; pending-- {
		if err := r.read(&it); err != nil {
			return err
		}
		switch it.typ {
		case tArray:
			pending += it.n
		case tMap:
			pending += 2 * it.n
		}
		if pending-1 > len(r.b)-r.off {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}
