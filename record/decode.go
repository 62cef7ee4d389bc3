// Package record reads Fluent Bit chunks: it decodes each event, writes its record as one JSON object and
// routes it by organisation and kind, or says why it cannot be delivered.
package record

import (
	"fmt"
	"math"
	"strings"
	"sync"
)

// Event is one log event of a chunk, decoded and routed. The decoder reuses one Event, and the bytes behind
// Raw and JSON, for every event of a chunk: they are valid only during the call that receives them, and a
// caller that keeps them copies them. Org, Kind and Reject are ordinary strings and may be kept.
type Event struct {
	Raw    []byte // the event's msgpack bytes, as received (a slice of the chunk)
	JSON   []byte // the body as one JSON object; nil when it could not be transcoded
	Org    string
	Kind   string
	Reject string // why the event cannot be delivered; empty when it can
	Why    Reason // Reject's class
}

// Decoder turns Fluent Bit chunks into routed events. Its settings are fixed at creation and it is safe for
// concurrent use: each Decode takes scratch space of its own from a pool.
type Decoder struct {
	orgKey    []byte
	kindKey   []byte // nil: the kind is the tag's last dot-separated part
	maxRecord int
	scratch   sync.Pool // of *scratch
}

// scratch is what one Decode reuses from event to event.
type scratch struct {
	ev   Event
	t    transcoder
	json []byte
	orgs orgs
}

// NewDecoder routes by the record fields orgKey and kindKey (kindKey "" means: by tag) and refuses events
// larger than maxRecord bytes.
func NewDecoder(orgKey, kindKey string, maxRecord int) *Decoder {
	d := &Decoder{orgKey: []byte(orgKey), maxRecord: maxRecord}
	if kindKey != "" {
		d.kindKey = []byte(kindKey)
	}
	d.scratch.New = func() any { return &scratch{t: transcoder{orgKey: d.orgKey, kindKey: d.kindKey}} }
	return d
}

// Decode calls fn for every event of chunk in order, skipping group markers. A chunk is msgpack events
// concatenated: [[ts, metadata], body] (Fluent Bit >= 2.1) or [ts, body]. Malformed events are passed with a
// Reject reason; when the bytes themselves are broken, the rest of the chunk is passed as one rejected event.
// The Event passed to fn is valid only during that call (see Event).
func (dec *Decoder) Decode(chunk []byte, tag string, fn func(*Event)) {
	s := dec.scratch.Get().(*scratch)
	defer dec.scratch.Put(s)
	dec.decode(s, chunk, tag, fn)
}

func (dec *Decoder) decode(s *scratch, chunk []byte, tag string, fn func(*Event)) {
	var byTag kindFrom
	if dec.kindKey == nil {
		byTag = fromTag(tag)
	}
	r := reader{b: chunk}
	for r.off < len(chunk) {
		start := r.off
		if err := r.skip(); err != nil {
			s.ev = Event{Raw: chunk[start:], Why: Malformed, Reject: fmt.Sprintf("malformed msgpack at byte %d of the chunk (%v); the remaining %d bytes could not be read", start, err, len(chunk)-start)}
			fn(&s.ev)
			return
		}
		s.ev = Event{Raw: chunk[start:r.off:r.off]}
		if len(s.ev.Raw) > dec.maxRecord {
			s.ev.Reject, s.ev.Why = fmt.Sprintf("event of %d bytes, over Max_Record_Size (%d)", len(s.ev.Raw), dec.maxRecord), TooLarge
			fn(&s.ev)
			continue
		}
		if dec.event(s, byTag) {
			continue
		}
		if s.ev.Reject != "" && s.ev.Why == NotRejected {
			s.ev.Why = Malformed
		}
		fn(&s.ev)
	}
}

// event decodes s.ev.Raw into s.ev. It reports group markers, which are not passed on.
func (dec *Decoder) event(s *scratch, byTag kindFrom) (group bool) {
	ev := &s.ev
	r := reader{b: ev.Raw}
	var it item
	if err := r.read(&it); err != nil || it.typ != tArray || it.n != 2 {
		ev.Reject = "event is not a [header, body] array"
		return false
	}
	if err := r.read(&it); err != nil {
		ev.Reject = "event header: " + err.Error()
		return false
	}
	if it.typ == tArray {
		m := it.n
		if m < 1 {
			ev.Reject = "event header is an empty array"
			return false
		}
		if err := r.read(&it); err != nil {
			ev.Reject = "event timestamp: " + err.Error()
			return false
		}
		if group, ev.Reject = timestamp(&it); group || ev.Reject != "" {
			return group
		}
		for range m - 1 {
			if err := r.skip(); err != nil {
				ev.Reject = "event metadata: " + err.Error()
				return false
			}
		}
	} else if group, ev.Reject = timestamp(&it); group || ev.Reject != "" {
		return group
	}

	if err := r.read(&it); err != nil {
		ev.Reject = "event body: " + err.Error()
		return false
	}
	if it.typ != tMap {
		ev.Reject = fmt.Sprintf("record body is not a map but msgpack %s", it.typ)
		return false
	}
	t := &s.t
	t.reset(ev.Raw, r.off)
	js, err := t.body(s.json[:0], it.n)
	s.json = js
	if err != nil {
		ev.Reject = "record body: " + err.Error()
		return false
	}
	ev.JSON = js[:len(js):len(js)]
	ev.Org, ev.Kind, ev.Reject, ev.Why = dec.route(s, byTag)
	return false
}

// route reads the organisation and the kind of a transcoded record, or the reason it cannot be routed.
func (dec *Decoder) route(s *scratch, byTag kindFrom) (org, kind, reject string, why Reason) {
	t := &s.t
	switch {
	case !t.org.seen:
		return "", "", fmt.Sprintf("no %q field", dec.orgKey), NoOrgID
	case t.org.typ != tStr:
		return "", "", fmt.Sprintf("%q is not a string but msgpack %s", dec.orgKey, t.org.typ), BadOrgID
	case dec.kindKey == nil:
		kind, reject = byTag.kind, byTag.reject
	case !t.kind.seen:
		return "", "", fmt.Sprintf("no %q field", dec.kindKey), BadKind
	case t.kind.typ != tStr:
		return "", "", fmt.Sprintf("%q is not a string but msgpack %s", dec.kindKey, t.kind.typ), BadKind
	default:
		if kind = kindOf(t.kind.str); kind == "" {
			reject = unknownKind(t.kind.str, "record field")
		}
	}
	if org = s.orgs.intern(t.org.str); org == "" {
		return "", "", badOrg(t.org.str), BadOrgID
	}
	if reject != "" {
		return "", "", reject, BadKind
	}
	return org, kind, "", NotRejected
}

// timestamp reads an event time: EventTime (ext 0), integer or float seconds. Group start and end markers
// (seconds -1 and -2) are reported so that the caller skips them.
func timestamp(it *item) (group bool, reason string) {
	switch it.typ {
	case tExt:
		if it.ext != 0 || len(it.data) != 8 {
			return false, fmt.Sprintf("event timestamp is extension type %d of %d bytes, not an EventTime", it.ext, len(it.data))
		}
		sec, _ := eventTime(it.data)
		return sec == 0xFFFFFFFF || sec == 0xFFFFFFFE, ""
	case tInt:
		if it.i == -1 || it.i == -2 {
			return true, ""
		}
		if it.i < 0 {
			return false, fmt.Sprintf("event timestamp %d is negative", it.i)
		}
	case tUint:
	case tFloat32, tFloat64:
		if math.IsNaN(it.f) || math.IsInf(it.f, 0) || it.f < 0 {
			return false, "event timestamp is not a valid number of seconds"
		}
	default:
		return false, fmt.Sprintf("event timestamp has msgpack type 0x%02x, not a time", it.code)
	}
	return false, ""
}

// kindFrom is the kind a chunk's tag gives its records, or why it gives none.
type kindFrom struct{ kind, reject string }

func fromTag(tag string) kindFrom {
	k := tag[strings.LastIndexByte(tag, '.')+1:]
	if kind := kindOf([]byte(k)); kind != "" {
		return kindFrom{kind: kind}
	}
	return kindFrom{reject: unknownKind([]byte(k), "the last part of tag "+quote([]byte(tag)))}
}
