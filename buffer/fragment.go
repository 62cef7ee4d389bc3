package buffer

import "bytes"

// FragmentEnds is the first and last record of a fragment as Seal's encoder receives it (records joined by
// Separator; a record never holds a raw newline), for record.RefOf.
func FragmentEnds(fragment []byte) (first, last []byte) {
	first, last = fragment, fragment
	if i := bytes.Index(fragment, []byte(Separator)); i >= 0 {
		first = fragment[:i]
	}
	if i := bytes.LastIndex(fragment, []byte(Separator)); i >= 0 {
		last = fragment[i+len(Separator):]
	}
	return first, last
}
