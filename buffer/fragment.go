package buffer

import "bytes"

// FragmentEnds is the first and last record of a fragment as Seal's encoder receives it (records joined by
// Separator; a record never holds a raw newline), for record.RefOf. Since a newline is only ever a separator's
// last byte, it looks for newlines, which is several times faster than looking for the separator.
func FragmentEnds(fragment []byte) (first, last []byte) {
	nl := Separator[len(Separator)-1]
	first, last = fragment, fragment
	if i := bytes.IndexByte(fragment, nl); i >= 0 {
		first = fragment[:i+1-len(Separator)]
	}
	if i := bytes.LastIndexByte(fragment, nl); i >= 0 {
		last = fragment[i+1:]
	}
	return first, last
}
