package record

import (
	"encoding/json"
	"errors"
	"fmt"
)

// EventRef names one event by the producer's own fields, kept as the raw JSON values the producer wrote: created_at
// may be a number or a string, id a string or a number. A field the record lacks is nil.
type EventRef struct {
	ID        json.RawMessage `json:"id,omitempty"`
	CreatedAt json.RawMessage `json:"created_at,omitempty"`
}

// MaxEventField is the longest id or created_at value EventRef keeps: a longer one is left out (nil), so that one
// hostile record cannot make every ledger line and digest that names it grow without bound.
const MaxEventField = 256

// RefOf reads the top-level "id" and "created_at" of one JSON object, such as a record as written by the
// transcoder, skipping every other value without decoding it: nested values cost one pass over their bytes.
// When a key appears twice, the first is kept (the transcoder rejects such records). Bytes that are not one
// JSON object give an error.
func RefOf(obj []byte) (EventRef, error) {
	var ev EventRef
	sc := scanner{b: obj}
	sc.space()
	if !sc.eat('{') {
		return ev, errors.New("event: not a JSON object")
	}
	sc.space()
	if sc.eat('}') {
		return ev, sc.end()
	}
	for {
		sc.space()
		keyStart := sc.i
		if err := sc.str(); err != nil {
			return EventRef{}, err
		}
		key := obj[keyStart:sc.i]
		sc.space()
		if !sc.eat(':') {
			return EventRef{}, fmt.Errorf("event: no ':' after the key at byte %d", keyStart)
		}
		sc.space()
		valStart := sc.i
		if err := sc.value(0); err != nil {
			return EventRef{}, err
		}
		val := obj[valStart:sc.i]
		switch keyName(key) {
		case "id":
			keep(&ev.ID, val)
		case "created_at":
			keep(&ev.CreatedAt, val)
		}
		sc.space()
		if sc.eat('}') {
			return ev, sc.end()
		}
		if !sc.eat(',') {
			return EventRef{}, fmt.Errorf("event: no ',' or '}' at byte %d", sc.i)
		}
	}
}

// keyName is a key's text; only a key with escapes is decoded, since the two keys sought have none.
func keyName(quoted []byte) string {
	for _, c := range quoted {
		if c == '\\' {
			var s string
			if json.Unmarshal(quoted, &s) != nil {
				return ""
			}
			return s
		}
	}
	return string(quoted[1 : len(quoted)-1])
}

func keep(dst *json.RawMessage, val []byte) {
	if *dst == nil && len(val) <= MaxEventField && json.Valid(val) {
		*dst = append(json.RawMessage(nil), val...)
	}
}

// scanner finds where JSON values end. It checks structure (quotes, brackets, separators), not every literal:
// RefOf validates the values it keeps.
type scanner struct {
	b []byte
	i int
}

// maxNesting bounds recursion on hostile input, as the transcoder does.
const maxNesting = maxDepth + 1

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) end() error {
	s.space()
	if s.i != len(s.b) {
		return fmt.Errorf("event: unexpected bytes after the object at byte %d", s.i)
	}
	return nil
}

// str moves past a string that starts at the current byte.
func (s *scanner) str() error {
	start := s.i
	if !s.eat('"') {
		return fmt.Errorf("event: no string at byte %d", start)
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
			continue
		case '"':
			s.i++
			return nil
		}
		s.i++
	}
	return fmt.Errorf("event: unterminated string at byte %d", start)
}

// value moves past one value.
func (s *scanner) value(depth int) error {
	if s.i >= len(s.b) {
		return errors.New("event: a value is missing at the end")
	}
	switch s.b[s.i] {
	case '"':
		return s.str()
	case '{', '[':
		if depth >= maxNesting {
			return fmt.Errorf("event: nested deeper than %d at byte %d", maxNesting, s.i)
		}
		return s.container(depth)
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			if s.i == start {
				return fmt.Errorf("event: a value is missing at byte %d", start)
			}
			return nil
		case '"', '{', '[', ':':
			return fmt.Errorf("event: unexpected %q at byte %d", s.b[s.i], s.i)
		}
		s.i++
	}
	return nil
}

// container moves past an object or array.
func (s *scanner) container(depth int) error {
	open := s.b[s.i]
	closer := byte(']')
	if open == '{' {
		closer = '}'
	}
	s.i++
	s.space()
	if s.eat(closer) {
		return nil
	}
	for {
		s.space()
		if open == '{' {
			if err := s.str(); err != nil {
				return err
			}
			s.space()
			if !s.eat(':') {
				return fmt.Errorf("event: no ':' at byte %d", s.i)
			}
			s.space()
		}
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.space()
		if s.eat(closer) {
			return nil
		}
		if !s.eat(',') {
			return fmt.Errorf("event: no ',' or %q at byte %d", closer, s.i)
		}
	}
}
