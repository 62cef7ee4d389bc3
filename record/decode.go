// Package record reads Fluent Bit chunks: it decodes each event, writes its record as one JSON object and
// routes it by organisation and kind, or says why it cannot be delivered.
package record

import (
	"bytes"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Event is one log event of a chunk, decoded and routed.
type Event struct {
	Raw    []byte // the event's msgpack bytes, as received
	JSON   []byte // the body as one JSON object; nil when it could not be transcoded
	Org    string
	Kind   string
	Reject string // why the event cannot be delivered; empty when it can
}

// Decoder turns Fluent Bit chunks into routed events. It is immutable after creation and safe for
// concurrent use.
type Decoder struct {
	orgKey    []byte
	kindKey   []byte // nil: the kind is the tag's last dot-separated part
	maxRecord int
}

// NewDecoder routes by the record fields orgKey and kindKey (kindKey "" means: by tag) and refuses events
// larger than maxRecord bytes.
func NewDecoder(orgKey, kindKey string, maxRecord int) *Decoder {
	d := &Decoder{orgKey: []byte(orgKey), maxRecord: maxRecord}
	if kindKey != "" {
		d.kindKey = []byte(kindKey)
	}
	return d
}

// Decode calls fn for every event of chunk in order, skipping group markers. A chunk is msgpack events
// concatenated: [[ts, metadata], body] (Fluent Bit >= 2.1) or [ts, body]. Malformed events are passed with a
// Reject reason; when the bytes themselves are broken, the rest of the chunk is passed as one rejected event.
func (dec *Decoder) Decode(chunk []byte, tag string, fn func(*Event)) {
	r := bytes.NewReader(chunk)
	md := msgpack.NewDecoder(r)
	var one bytes.Reader
	t := transcoder{d: msgpack.NewDecoder(&one)}
	var buf []byte
	for r.Len() > 0 {
		start := len(chunk) - r.Len()
		if err := md.Skip(); err != nil {
			fn(&Event{Raw: chunk[start:], Reject: fmt.Sprintf("malformed msgpack at byte %d of the chunk (%v); the remaining %d bytes could not be read", start, err, len(chunk)-start)})
			return
		}
		raw := chunk[start : len(chunk)-r.Len()]
		ev := &Event{Raw: raw}
		if len(raw) > dec.maxRecord {
			ev.Reject = fmt.Sprintf("event of %d bytes, over Max_Record_Size (%d)", len(raw), dec.maxRecord)
			fn(ev)
			continue
		}
		var group bool
		n := len(buf)
		one.Reset(raw)
		t.d.Reset(&one)
		buf, group = dec.event(&t, buf, ev, tag)
		if group {
			continue
		}
		if ev.JSON == nil && len(buf) > n {
			ev.JSON = buf[n:len(buf):len(buf)]
		}
		fn(ev)
	}
}

// event decodes one event (t reads ev.Raw) into ev, appending its JSON body to buf. It reports group markers.
func (dec *Decoder) event(t *transcoder, buf []byte, ev *Event, tag string) ([]byte, bool) {
	d := t.d
	n, err := d.DecodeArrayLen()
	if err != nil || n != 2 {
		ev.Reject = "event is not a [header, body] array"
		return buf, false
	}
	c, err := d.PeekCode()
	if err != nil {
		ev.Reject = "event header: " + err.Error()
		return buf, false
	}
	if isArray(c) {
		m, err := d.DecodeArrayLen()
		if err != nil || m < 1 {
			ev.Reject = "event header is an empty array"
			return buf, false
		}
		group, reason := timestamp(d)
		if reason != "" || group {
			ev.Reject = reason
			return buf, group
		}
		for i := 1; i < m; i++ {
			if err := d.Skip(); err != nil {
				ev.Reject = "event metadata: " + err.Error()
				return buf, false
			}
		}
	} else if group, reason := timestamp(d); reason != "" || group {
		ev.Reject = reason
		return buf, group
	}

	c, err = d.PeekCode()
	if err != nil {
		ev.Reject = "event body: " + err.Error()
		return buf, false
	}
	start := len(buf)
	if !isMap(c) {
		ev.Reject = "record body is not a map"
		if buf, err = t.value(buf, 1); err != nil {
			buf = buf[:start]
		}
		return buf, false
	}
	var org, kind []byte
	var orgSeen, kindSeen int
	var orgNotString, kindNotString bool
	buf, err = t.object(buf, 0, func(key, val []byte, isString bool) {
		if bytes.Equal(key, dec.orgKey) {
			orgSeen++
			org, orgNotString = val, !isString
		}
		if dec.kindKey != nil && bytes.Equal(key, dec.kindKey) {
			kindSeen++
			kind, kindNotString = val, !isString
		}
	})
	if err != nil {
		ev.Reject = "record body: " + err.Error()
		return buf[:start], false
	}
	ev.JSON = buf[start:len(buf):len(buf)]

	switch {
	case orgSeen == 0:
		ev.Reject = fmt.Sprintf("no %q field", dec.orgKey)
	case orgSeen > 1:
		ev.Reject = fmt.Sprintf("%q appears %d times", dec.orgKey, orgSeen)
	case orgNotString:
		ev.Reject = fmt.Sprintf("%q is not a string", dec.orgKey)
	case dec.kindKey != nil && kindSeen == 0:
		ev.Reject = fmt.Sprintf("no %q field", dec.kindKey)
	case dec.kindKey != nil && kindSeen > 1:
		ev.Reject = fmt.Sprintf("%q appears %d times", dec.kindKey, kindSeen)
	case dec.kindKey != nil && kindNotString:
		ev.Reject = fmt.Sprintf("%q is not a string", dec.kindKey)
	default:
		if dec.kindKey == nil {
			kind = []byte(tagKind(tag))
		}
		ev.Org, ev.Kind, ev.Reject = route(org, kind, tag, dec.kindKey == nil)
	}
	return buf, false
}

// timestamp reads an event time: EventTime (ext 0), integer or float seconds. Group start and end markers
// (seconds -1 and -2) are reported so that the caller skips them.
func timestamp(d *msgpack.Decoder) (group bool, reason string) {
	c, err := d.PeekCode()
	if err != nil {
		return false, "event timestamp: " + err.Error()
	}
	switch {
	case msgpcode.IsExt(c):
		id, n, err := d.DecodeExtHeader()
		if err != nil || id != 0 || n != 8 {
			return false, fmt.Sprintf("event timestamp is extension type %d of %d bytes, not an EventTime", id, n)
		}
		var b [8]byte
		if err := d.ReadFull(b[:]); err != nil {
			return false, "event timestamp: " + err.Error()
		}
		sec, _ := eventTime(b[:])
		return sec == 0xFFFFFFFF || sec == 0xFFFFFFFE, ""
	case msgpcode.IsFixedNum(c), c >= msgpcode.Int8 && c <= msgpcode.Int64:
		n, err := d.DecodeInt64()
		if err != nil {
			return false, "event timestamp: " + err.Error()
		}
		if n == -1 || n == -2 {
			return true, ""
		}
		if n < 0 {
			return false, fmt.Sprintf("event timestamp %d is negative", n)
		}
	case c >= msgpcode.Uint8 && c <= msgpcode.Uint64:
		if _, err := d.DecodeUint64(); err != nil {
			return false, "event timestamp: " + err.Error()
		}
	case c == msgpcode.Float || c == msgpcode.Double:
		f, err := d.DecodeFloat64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return false, "event timestamp is not a valid number of seconds"
		}
	default:
		return false, fmt.Sprintf("event timestamp has msgpack type 0x%02x, not a time", c)
	}
	return false, ""
}

func isArray(c byte) bool {
	return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}

func isMap(c byte) bool {
	return msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
}
