package record

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Limits on hostile records: nesting (so that recursion cannot exhaust the stack), keys per map and bytes per
// string. The record as a whole is bounded by Max_Record_Size.
const (
	maxDepth       = 100
	maxKeys        = 10000
	maxStringBytes = 1 << 20
	// A non-string key is written as the string form of its JSON; quoting doubles the escapes at every level
	// of keys nested in keys, so their size is capped.
	maxKeyBytes = 4096
)

var errTooDeep = fmt.Errorf("nesting deeper than %d levels", maxDepth)

// transcoder writes one msgpack value as compact JSON: map keys in the order received, str and bin as
// strings (invalid UTF-8 replaced), exact integers, floats with NaN and Inf as null, EventTime as a number
// of seconds and any other extension as a base64 string.
type transcoder struct {
	d *msgpack.Decoder
}

func (t *transcoder) value(dst []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, errTooDeep
	}
	c, err := t.d.PeekCode()
	if err != nil {
		return dst, err
	}
	switch {
	case c == msgpcode.Nil:
		return append(dst, "null"...), t.d.Skip()
	case c == msgpcode.False || c == msgpcode.True:
		b, err := t.d.DecodeBool()
		return strconv.AppendBool(dst, b), err
	case msgpcode.IsFixedNum(c), c >= msgpcode.Int8 && c <= msgpcode.Int64:
		n, err := t.d.DecodeInt64()
		return strconv.AppendInt(dst, n, 10), err
	case c >= msgpcode.Uint8 && c <= msgpcode.Uint64:
		n, err := t.d.DecodeUint64()
		return strconv.AppendUint(dst, n, 10), err
	case c == msgpcode.Float:
		f, err := t.d.DecodeFloat32()
		return appendFloat(dst, float64(f), 32), err
	case c == msgpcode.Double:
		f, err := t.d.DecodeFloat64()
		return appendFloat(dst, f, 64), err
	case msgpcode.IsString(c) || msgpcode.IsBin(c):
		b, err := t.str()
		return appendString(dst, b), err
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		return t.array(dst, depth)
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		return t.object(dst, depth, nil)
	case msgpcode.IsExt(c):
		return t.ext(dst)
	}
	return dst, fmt.Errorf("invalid msgpack code 0x%02x", c)
}

func (t *transcoder) array(dst []byte, depth int) ([]byte, error) {
	n, err := t.d.DecodeArrayLen()
	if err != nil {
		return dst, err
	}
	dst = append(dst, '[')
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = t.value(dst, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

// object writes a map. For the record body (depth 0) watch is called with each string-keyed entry's key
// and, when the value is a str or bin, its bytes (else nil), so routing fields are read in the same pass.
func (t *transcoder) object(dst []byte, depth int, watch func(key, val []byte, isString bool)) ([]byte, error) {
	n, err := t.d.DecodeMapLen()
	if err != nil {
		return dst, err
	}
	if n > maxKeys {
		return dst, fmt.Errorf("a map has %d keys, over the limit of %d", n, maxKeys)
	}
	dst = append(dst, '{')
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		var key []byte
		if dst, key, err = t.key(dst, depth); err != nil {
			return dst, err
		}
		dst = append(dst, ':')
		if watch != nil && key != nil {
			c, err := t.d.PeekCode()
			if err != nil {
				return dst, err
			}
			if msgpcode.IsString(c) || msgpcode.IsBin(c) {
				b, err := t.str()
				if err != nil {
					return dst, err
				}
				watch(key, b, true)
				dst = appendString(dst, b)
				continue
			}
			watch(key, nil, false)
		}
		if dst, err = t.value(dst, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// key writes a map key as a JSON string. Keys that are not str or bin become the string form of their JSON
// (1 becomes "1"); the raw bytes of a str or bin key are returned for routing.
func (t *transcoder) key(dst []byte, depth int) ([]byte, []byte, error) {
	c, err := t.d.PeekCode()
	if err != nil {
		return dst, nil, err
	}
	if msgpcode.IsString(c) || msgpcode.IsBin(c) {
		b, err := t.str()
		return appendString(dst, b), b, err
	}
	text, err := t.value(nil, depth+1)
	if err != nil {
		return dst, nil, err
	}
	if len(text) > maxKeyBytes {
		return dst, nil, fmt.Errorf("a map key of %d bytes as JSON, over the limit of %d", len(text), maxKeyBytes)
	}
	return appendString(dst, text), nil, nil
}

// str reads a str or bin value within the string limit.
func (t *transcoder) str() ([]byte, error) {
	n, err := t.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n > maxStringBytes {
		return nil, fmt.Errorf("a string of %d bytes, over the limit of %d", n, maxStringBytes)
	}
	b := make([]byte, max(n, 0))
	return b, t.d.ReadFull(b)
}

func (t *transcoder) ext(dst []byte) ([]byte, error) {
	id, n, err := t.d.DecodeExtHeader()
	if err != nil {
		return dst, err
	}
	if n < 0 || n > 1<<30 {
		return dst, fmt.Errorf("extension length %d", n)
	}
	data := make([]byte, n)
	if err := t.d.ReadFull(data); err != nil {
		return dst, err
	}
	if id == 0 && n == 8 {
		sec, nsec := eventTime(data)
		dst = strconv.AppendUint(dst, uint64(sec), 10)
		if nsec != 0 {
			dst = fmt.Appendf(dst, ".%09d", nsec)
			dst = bytes.TrimRight(dst, "0")
		}
		return dst, nil
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, data)
	return append(dst, '"'), nil
}

func eventTime(b []byte) (sec, nsec uint32) {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
		uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])
}

// appendFloat formats like encoding/json: shortest representation, exponent only for very large or small
// magnitudes; NaN and infinities have no JSON form and become null.
func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hex = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD; control characters and the
// JavaScript line separators U+2028/U+2029 are escaped.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
