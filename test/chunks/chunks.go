// Package chunks builds Fluent Bit chunks for the test host: events in the V2 ([[ts, {}], body]) and legacy
// ([ts, body]) layouts, records converted from JSON with their key order kept, and the host's input framing.
package chunks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// EventTime is Fluent Bit's timestamp: msgpack fixext8 of type 0, seconds and nanoseconds big-endian.
func EventTime(t time.Time) []byte {
	b := []byte{0xd7, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[2:], uint32(t.Unix()))
	binary.BigEndian.PutUint32(b[6:], uint32(t.Nanosecond()))
	return b
}

// V2 is one event as Fluent Bit >= 2.1 encodes it: [[ts, {}], body].
func V2(ts, body []byte) []byte {
	out := []byte{0x92, 0x92}
	out = append(out, ts...)
	out = append(out, 0x80)
	return append(out, body...)
}

// Legacy is one event in the older layout: [ts, body].
func Legacy(ts, body []byte) []byte {
	out := append([]byte{0x92}, ts...)
	return append(out, body...)
}

// GroupStart and GroupEnd are the markers Fluent Bit (v3.1+) puts around OpenTelemetry groups.
func GroupStart() []byte {
	return V2([]byte{0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, []byte{0x80})
}

// GroupEnd closes a group.
func GroupEnd() []byte {
	return V2([]byte{0xd7, 0x00, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0}, []byte{0x80})
}

// AuditChunk is n audit events shaped like the delivery guide's, in the V2 layout with an EventTime, spread
// over orgs organisations (org-0000, org-0001, ...) in turn: the reference chunk of the benchmarks.
func AuditChunk(n, orgs int) []byte {
	ts := EventTime(time.Unix(1769611845, 0))
	var chunk []byte
	for i := range n {
		body, err := FromJSON(fmt.Appendf(nil, `{"id":"57c850b7-46ba-4b53-a421-%012d","org_id":"org-%04d","org_name":"Your Organization","event_type":"UserRoleChanged","event_data":{"from":"viewer","to":"admin","changes":[1,"two",3.5,null]},"created_at":%d,"caused_by_id":"c3a1","caused_by_type":"ApiKey","caused_by_source_ip":"54.89.215.109","relevant_user_email":null}`,
			i, i%orgs, 1769611845+i))
		if err != nil {
			panic(err) // the template is valid JSON
		}
		chunk = append(chunk, V2(ts, body)...)
	}
	return chunk
}

// FromJSON converts one JSON value to msgpack, keeping object key order. Integers stay integers (uint64 too).
func FromJSON(js []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	v, err := ordered(d)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := encode(enc, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type pair struct {
	k string
	v any
}

type object []pair

func ordered(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var o object
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return nil, err
				}
				v, err := ordered(d)
				if err != nil {
					return nil, err
				}
				o = append(o, pair{k.(string), v})
			}
			_, err := d.Token()
			return o, err
		case '[':
			a := []any{}
			for d.More() {
				v, err := ordered(d)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := d.Token()
			return a, err
		}
	}
	return tok, nil
}

func encode(enc *msgpack.Encoder, v any) error {
	switch t := v.(type) {
	case object:
		if err := enc.EncodeMapLen(len(t)); err != nil {
			return err
		}
		for _, p := range t {
			if err := enc.EncodeString(p.k); err != nil {
				return err
			}
			if err := encode(enc, p.v); err != nil {
				return err
			}
		}
		return nil
	case []any:
		if err := enc.EncodeArrayLen(len(t)); err != nil {
			return err
		}
		for _, e := range t {
			if err := encode(enc, e); err != nil {
				return err
			}
		}
		return nil
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return enc.EncodeInt(i)
		}
		if u, err := strconv.ParseUint(string(t), 10, 64); err == nil {
			return enc.EncodeUint(u)
		}
		f, err := t.Float64()
		if err != nil {
			return err
		}
		return enc.EncodeFloat64(f)
	case string:
		return enc.EncodeString(t)
	case bool:
		return enc.EncodeBool(t)
	case nil:
		return enc.EncodeNil()
	}
	return fmt.Errorf("unexpected JSON value %T", v)
}

// Canonical re-serialises JSON compactly with key order kept, so that two texts of the same value compare
// equal whatever their spacing or string escapes.
func Canonical(js []byte) (string, error) {
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	v, err := ordered(d)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	canon(&b, v)
	return b.String(), nil
}

func canon(b *bytes.Buffer, v any) {
	switch t := v.(type) {
	case object:
		b.WriteByte('{')
		for i, p := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(p.k)
			b.Write(k)
			b.WriteByte(':')
			canon(b, p.v)
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			canon(b, e)
		}
		b.WriteByte(']')
	default:
		s, _ := json.Marshal(t)
		b.Write(s)
	}
}

// WriteFrame writes one chunk in the host's input framing: u32be tag length, tag, u32be chunk length, chunk.
func WriteFrame(w io.Writer, tag string, chunk []byte) error {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(tag)))
	if _, err := w.Write(append(h[:], tag...)); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(h[:], uint32(len(chunk)))
	if _, err := w.Write(append(h[:], chunk...)); err != nil {
		return err
	}
	return nil
}
