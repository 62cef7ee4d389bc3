package buffer

// Unsealed is what one stream holds that is not sealed yet: batches closed and waiting to be sealed, and its
// open batch.
type Unsealed struct {
	Batches int
	Records int64
	Bytes   int64 // the records' JSON bytes (unknown, 0, for a log file of the layout before the write-ahead log)
	Oldest  int64 // arrival of its oldest record, unix ms
}

// UnsealedStreams returns what every stream with records not yet sealed holds. It reads the index only: its
// cost follows the streams with data, not the records.
func (s *Store) UnsealedStreams() map[Stream]Unsealed {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[Stream]Unsealed, len(s.streams))
	add := func(st Stream, records, bytes, first int64) {
		u, ok := out[st]
		if !ok || first < u.Oldest {
			u.Oldest = first
		}
		u.Batches++
		u.Records += records
		u.Bytes += bytes
		out[st] = u
	}
	for _, p := range s.closed {
		var bytes int64
		for _, r := range p.runs {
			bytes += int64(r.json)
		}
		add(p.Stream, int64(p.Records), bytes, p.firstAt)
	}
	for st, ss := range s.streams {
		if len(ss.runs) == 0 {
			continue
		}
		var records int64
		for _, r := range ss.runs {
			records += int64(r.records)
		}
		add(st, records, ss.json, ss.firstAt)
	}
	return out
}

// Present reports whether the store's folder is still there: not removed while in use (a flush creates it
// again, see ErrRecreated).
func (s *Store) Present() bool {
	f := s.lockFile()
	if f == nil {
		return false // closed
	}
	n, err := links(f)
	return err == nil && n > 0
}
