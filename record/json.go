package record

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Limits on hostile records: nesting (so that recursion cannot exhaust the stack), keys per map and bytes per
// string. The record as a whole is bounded by Max_Record_Size.
const (
	maxDepth       = 100
	maxKeys        = 10000
	maxStringBytes = 1 << 20
)

// encodedKey is the top-level field the transcoder adds to a record in which it wrote bin or extension values
// as base64 strings. It maps the JSON Pointer (RFC 6901) of each such value to its msgpack type: "bin", or
// "ext:N" for an extension of type N. A record that has this key itself is rejected.
const encodedKey = "_wivaudit_base64"

// The transcoder writes one record body (a msgpack map) as one compact JSON object, changing nothing that JSON
// can represent and saying what it had to represent differently:
//
//   - map keys in the order received; a key that is not a str, or that appears twice in the same map, rejects
//     the record (a JSON reader would keep one of the two, or merge a non-string key with a real one);
//   - str as a JSON string, escaped like encoding/json without HTML escaping; invalid UTF-8 rejects the record
//     (replacing it would alter the value, and could make two different keys equal);
//   - integers exactly; floats as the shortest decimal that reads back as the same float32 or float64; NaN and
//     infinities, which JSON has no form for, reject the record;
//   - an EventTime (extension type 0 of 8 bytes, Fluent Bit's timestamp) as its number of seconds, with the
//     nanoseconds as up to 9 decimals;
//   - bin and every other extension as a base64 string (standard alphabet, padded), named in encodedKey.
//
// A rejection names the JSON Pointer of the value or map at fault. The transcoder reads the chunk in place
// and reuses its buffers from one record to the next: it allocates only when a buffer grows or a record is
// rejected.
type transcoder struct {
	r     reader
	it    item
	path  []step   // where the value being written is
	keys  [][]byte // the keys of the maps being written, outermost first
	marks []byte   // encodedKey's entries, as JSON
	ptr   []byte   // scratch for a JSON Pointer

	// The routing fields, read from the top-level map as it is written.
	orgKey, kindKey []byte
	org, kind       field
}

// step is one level of the path: a map key, or an array index when key is nil.
type step struct {
	key   []byte
	index int
}

// field is a routing field's value as found in the record: its type, and its bytes when it is a str.
type field struct {
	seen bool
	typ  typ
	str  []byte
}

// reset prepares the transcoder for the body at off in raw.
func (t *transcoder) reset(raw []byte, off int) {
	t.r = reader{b: raw, off: off}
	t.path, t.keys, t.marks = t.path[:0], t.keys[:0], t.marks[:0]
	t.org, t.kind = field{}, field{}
}

// body writes the record body, a map of n entries whose header has been read, as a JSON object.
func (t *transcoder) body(dst []byte, n int) ([]byte, error) {
	dst, err := t.object(dst, n, 0)
	if err != nil || len(t.marks) == 0 {
		return dst, err
	}
	// The object ends with '}'; the note goes in before it.
	dst = dst[:len(dst)-1]
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, `"`+encodedKey+`":{`...)
	dst = append(dst, t.marks...)
	return append(dst, '}', '}'), nil
}

// value writes the next value as JSON.
func (t *transcoder) value(dst []byte, depth int) ([]byte, error) {
	it := &t.it
	if err := t.r.read(it); err != nil {
		return dst, err
	}
	switch it.typ {
	case tNil:
		return append(dst, "null"...), nil
	case tBool:
		return strconv.AppendBool(dst, it.i == 1), nil
	case tInt:
		return strconv.AppendInt(dst, it.i, 10), nil
	case tUint:
		return strconv.AppendUint(dst, it.u, 10), nil
	case tFloat32, tFloat64:
		if math.IsNaN(it.f) || math.IsInf(it.f, 0) {
			return dst, fmt.Errorf("%s at %s: JSON has no NaN or infinity", strconv.FormatFloat(it.f, 'g', -1, 64), t.where())
		}
		bits := 64
		if it.typ == tFloat32 {
			bits = 32
		}
		return appendFloat(dst, it.f, bits), nil
	case tStr:
		if len(it.data) > maxStringBytes {
			return dst, fmt.Errorf("a string of %d bytes at %s, over the limit of %d", len(it.data), t.where(), maxStringBytes)
		}
		out, ok := appendString(dst, it.data)
		if !ok {
			return dst, fmt.Errorf("invalid UTF-8 in the string at %s", t.where())
		}
		return out, nil
	case tBin:
		return t.base64(dst, "bin")
	case tExt:
		if it.ext == 0 && len(it.data) == 8 {
			return t.eventTime(dst)
		}
		return t.base64(dst, "ext:"+strconv.Itoa(int(it.ext)))
	case tArray:
		return t.array(dst, it.n, depth)
	}
	return t.object(dst, it.n, depth)
}

func (t *transcoder) array(dst []byte, n, depth int) ([]byte, error) {
	if depth >= maxDepth {
		return dst, fmt.Errorf("nesting deeper than %d levels at %s", maxDepth, t.where())
	}
	dst = append(dst, '[')
	t.path = append(t.path, step{})
	at := len(t.path) - 1
	var err error
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		t.path[at] = step{index: i}
		if dst, err = t.value(dst, depth+1); err != nil {
			return dst, err
		}
	}
	t.path = t.path[:at]
	return append(dst, ']'), nil
}

// object writes a map of n entries. At depth 0 (the record body) it also reads the routing fields.
func (t *transcoder) object(dst []byte, n, depth int) ([]byte, error) {
	if depth >= maxDepth {
		return dst, fmt.Errorf("nesting deeper than %d levels at %s", maxDepth, t.where())
	}
	if n > maxKeys {
		return dst, fmt.Errorf("an object of %d keys at %s, over the limit of %d", n, t.where(), maxKeys)
	}
	dst = append(dst, '{')
	first := len(t.keys)
	at := len(t.path)
	var err error
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		t.path = t.path[:at]
		if err := t.r.read(&t.it); err != nil {
			return dst, err
		}
		key := t.it.data
		if t.it.typ != tStr {
			return dst, fmt.Errorf("a key of type %s in the object at %s: keys must be strings", t.it.typ, t.where())
		}
		if len(key) > maxStringBytes {
			return dst, fmt.Errorf("a key of %d bytes in the object at %s, over the limit of %d", len(key), t.where(), maxStringBytes)
		}
		var ok bool
		if dst, ok = appendString(dst, key); !ok {
			return dst, fmt.Errorf("invalid UTF-8 in the key %s of the object at %s", quote(key), t.where())
		}
		if depth == 0 && string(key) == encodedKey {
			return dst, fmt.Errorf("the record has a top-level key %q, which is reserved for the plugin's list of values written as base64", encodedKey)
		}
		t.keys = append(t.keys, key)
		dst = append(dst, ':')
		t.path = append(t.path, step{key: key})
		start := t.r.off
		if dst, err = t.value(dst, depth+1); err != nil {
			return dst, err
		}
		if depth == 0 && bytes.Equal(key, t.orgKey) {
			t.org = t.fieldAt(start)
		}
		if depth == 0 && t.kindKey != nil && bytes.Equal(key, t.kindKey) {
			t.kind = t.fieldAt(start)
		}
	}
	t.path = t.path[:at]
	if dup := duplicate(t.keys[first:]); dup != nil {
		return dst, fmt.Errorf("the key %s appears more than once in the object at %s", quote(dup), t.where())
	}
	t.keys = t.keys[:first]
	return append(dst, '}'), nil
}

// fieldAt reads the routing field whose value starts at off.
func (t *transcoder) fieldAt(off int) field {
	r := reader{b: t.r.b, off: off}
	var it item
	r.read(&it) // read once already, without error
	return field{seen: true, typ: it.typ, str: it.data}
}

// duplicate returns a key that appears more than once, or nil. Small maps are compared pairwise; larger ones
// are sorted (the slice is the transcoder's scratch, its order does not matter).
func duplicate(keys [][]byte) []byte {
	if len(keys) <= 16 {
		for i := 1; i < len(keys); i++ {
			for _, k := range keys[:i] {
				if bytes.Equal(k, keys[i]) {
					return k
				}
			}
		}
		return nil
	}
	slices.SortFunc(keys, bytes.Compare)
	for i := 1; i < len(keys); i++ {
		if bytes.Equal(keys[i-1], keys[i]) {
			return keys[i]
		}
	}
	return nil
}

// base64 writes the current bin or extension's data as a base64 string and names it in encodedKey.
func (t *transcoder) base64(dst []byte, kind string) ([]byte, error) {
	if len(t.it.data) > maxStringBytes {
		return dst, fmt.Errorf("%s of %d bytes at %s, over the limit of %d", kind, len(t.it.data), t.where(), maxStringBytes)
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, t.it.data)
	dst = append(dst, '"')
	if len(t.marks) > 0 {
		t.marks = append(t.marks, ',')
	}
	t.ptr = t.pointer(t.ptr[:0])
	t.marks, _ = appendString(t.marks, t.ptr) // keys are valid UTF-8 by now
	t.marks = append(t.marks, ':', '"')
	t.marks = append(t.marks, kind...)
	t.marks = append(t.marks, '"')
	return dst, nil
}

// eventTime writes the current EventTime extension as seconds, with nanoseconds as decimals.
func (t *transcoder) eventTime(dst []byte) ([]byte, error) {
	sec, nsec := eventTime(t.it.data)
	if nsec > 999_999_999 {
		return dst, fmt.Errorf("the EventTime at %s has %d nanoseconds, over 999999999", t.where(), nsec)
	}
	dst = strconv.AppendUint(dst, uint64(sec), 10)
	if nsec == 0 {
		return dst, nil
	}
	dst = append(dst, '.')
	for div := uint32(100_000_000); div > 0 && nsec > 0; div /= 10 {
		dst = append(dst, byte('0'+nsec/div))
		nsec %= div
	}
	return dst, nil
}

func eventTime(b []byte) (sec, nsec uint32) {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
		uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])
}

// pointer appends the JSON Pointer of the current path: "/" before each key or index, "~" and "/" in keys
// written "~0" and "~1".
func (t *transcoder) pointer(dst []byte) []byte {
	for _, s := range t.path {
		dst = append(dst, '/')
		if s.key == nil {
			dst = strconv.AppendInt(dst, int64(s.index), 10)
			continue
		}
		for _, c := range s.key {
			switch c {
			case '~':
				dst = append(dst, '~', '0')
			case '/':
				dst = append(dst, '~', '1')
			default:
				dst = append(dst, c)
			}
		}
	}
	return dst
}

// where names the current path in a reason.
func (t *transcoder) where() string {
	if len(t.path) == 0 {
		return "the top level"
	}
	return quote(t.pointer(nil))
}

// appendFloat formats like encoding/json: shortest representation, exponent only for very large or small
// magnitudes. f is finite.
func appendFloat(dst []byte, f float64, bits int) []byte {
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

// plain marks the ASCII bytes a JSON string holds as they are: printable, not '"' or '\\'.
var plain = func() (p [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		p[b] = b != '"' && b != '\\'
	}
	return p
}()

// appendString writes s as a JSON string: control characters and the JavaScript line separators U+2028 and
// U+2029 escaped, nothing else. It reports false when s is not valid UTF-8.
func appendString(dst, s []byte) ([]byte, bool) {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if plain[b] {
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
			return dst, false
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), true
}
