package plugin

import (
	"context"
	"sync"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
)

type item struct {
	batch    *buffer.Batch
	due      time.Time
	attempts int
}

// queue holds sealed batches until they are due for an upload attempt.
type queue struct {
	now      func() time.Time
	mu       sync.Mutex
	items    []*item
	inflight int
	wake     chan struct{}
	changed  chan struct{}
}

func newQueue(now func() time.Time) *queue {
	return &queue{now: now, wake: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (q *queue) push(it *item) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	signal(q.wake)
}

// pop waits for the earliest due item. It returns false when ctx ends.
func (q *queue) pop(ctx context.Context) (*item, bool) {
	for {
		q.mu.Lock()
		now := q.now()
		best := -1
		for i, it := range q.items {
			if best < 0 || it.due.Before(q.items[best].due) {
				best = i
			}
		}
		var wait time.Duration = -1
		if best >= 0 {
			if it := q.items[best]; !it.due.After(now) {
				q.items = append(q.items[:best], q.items[best+1:]...)
				q.inflight++
				more := len(q.items) > 0
				q.mu.Unlock()
				if more {
					signal(q.wake) // let another worker look at the rest
				}
				return it, true
			}
			wait = q.items[best].due.Sub(now)
		}
		q.mu.Unlock()
		var timer <-chan time.Time
		if wait >= 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-q.wake:
		case <-timer:
		}
	}
}

// done ends an attempt; a failed item is pushed again by the caller before done.
func (q *queue) done() {
	q.mu.Lock()
	q.inflight--
	q.mu.Unlock()
	signal(q.changed)
}

// expedite makes every waiting item due now: one last try before shutdown.
func (q *queue) expedite() {
	q.mu.Lock()
	now := q.now()
	for _, it := range q.items {
		it.due = now
	}
	q.mu.Unlock()
	signal(q.wake)
}

func (q *queue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) == 0 && q.inflight == 0
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) + q.inflight
}

// drain waits until nothing is queued or in flight, or until the deadline channel fires.
func (q *queue) drain(deadline <-chan time.Time) bool {
	for !q.idle() {
		select {
		case <-q.changed:
		case <-deadline:
			return false
		}
	}
	return true
}
