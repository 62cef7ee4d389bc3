package buffer

import (
	"errors"
	"fmt"
	"sync"
)

// usage accounts for the disk the store holds under its limit and the quarantine's own limit. One
// mutex makes every check-and-add atomic.
type usage struct {
	mu              sync.Mutex
	used, reserved  int64 // log segments and batch objects; room claimed by appends under way
	limit           int64 // 0: none
	quarantined     int64
	quarantineLimit int64
}

func (u *usage) add(n int64) {
	u.mu.Lock()
	u.used += n
	u.mu.Unlock()
}

// ErrFull means the store is at its limit: an append was refused, and nothing of it written.
var ErrFull = errors.New("the store is at its size limit")

// FullError is ErrFull with the numbers.
type FullError struct {
	Used, Limit, Need int64
}

func (e *FullError) Error() string {
	return fmt.Sprintf("%v: %d of %d bytes used, %d more needed", ErrFull, e.Used, e.Limit, e.Need)
}

func (e *FullError) Unwrap() error { return ErrFull }

// reserve claims room for n bytes under the limit, all or nothing, so that concurrent appends cannot together
// overshoot it. commitReserved turns the claim into use.
func (s *Store) reserve(n int64) error {
	u := &s.use
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.limit > 0 && u.used+u.reserved+n > u.limit {
		return &FullError{Used: u.used, Limit: u.limit, Need: n}
	}
	u.reserved += n
	return nil
}

// commitReserved turns a claim of reserved bytes into written bytes (none when the append failed) in one
// step, so that the chunk is never counted twice.
func (u *usage) commitReserved(reserved, written int64) {
	u.mu.Lock()
	u.reserved -= reserved
	u.used += written
	u.mu.Unlock()
}

// Usage returns the bytes held in the log and batches, and the limit (0: none).
func (s *Store) Usage() (used, limit int64) {
	s.use.mu.Lock()
	defer s.use.mu.Unlock()
	return s.use.used, s.use.limit
}

// toQuarantine moves n bytes from the upload path to the quarantine if they fit under its limit.
func (u *usage) toQuarantine(n int64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.quarantined+n > u.quarantineLimit {
		return fmt.Errorf("%w (%d of %d bytes used)", ErrQuarantineFull, u.quarantined, u.quarantineLimit)
	}
	u.quarantined += n
	u.used -= n
	return nil
}

// fromQuarantine undoes toQuarantine when the move failed.
func (u *usage) fromQuarantine(n int64) {
	u.mu.Lock()
	u.quarantined -= n
	u.used += n
	u.mu.Unlock()
}
