package plugin

import (
	"container/heap"
	"context"
	"sort"
	"sync"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
)

type item struct {
	// batch is nil while the batch waits in the log: sealed holds it then, and the uploader makes its batch
	// when it takes it (Store.BatchOf), so that a batch waiting costs no more memory than its runs.
	batch  *buffer.Batch
	sealed *buffer.Pending
	// st, opened, records and json are the batch's as it was queued: an attempt in flight may change the
	// counts (a spill that leaves damage out), and makes its batch; the queue reads these.
	st       buffer.Stream
	opened   int64
	records  int
	json     int64
	due      time.Time
	attempts int   // failed attempts in this process, for the backoff
	sent     *sent // S3 stored the batch, and its ledger line is still to be recorded; nil before
	inLog    bool  // the batch lived in the log when it was queued: counted in queue.inLog
}

// batchOf is the item's batch, made from the log's when it waited there (Store.BatchOf).
func (it *item) batchOf(s *buffer.Store) *buffer.Batch {
	if it.batch == nil {
		it.batch, it.sealed = s.BatchOf(it.sealed), nil
	}
	return it.batch
}

// inLogPending is the closed batch in the log the item holds, nil when its batch is a file.
func (it *item) inLogPending() *buffer.Pending {
	if it.batch != nil {
		return it.batch.InLogPending()
	}
	return it.sealed
}

// lane holds one stream's batches, oldest first. At most one of them is in flight, so a stream's objects
// appear in order.
type lane struct {
	st     buffer.Stream
	items  []*item
	busy   *item     // the batch in flight, if any
	served time.Time // when its last attempt ended
	index  int       // position in the ready heap, -1 when not in it
	// expedited: expedite ran while the batch was in flight, so it is due at once if it stays queued
	expedited bool
}

// key orders ready lanes: the head's due time, but not before the lane's last turn ended, so that streams
// take turns and a large backlog of one stream does not starve the others.
func (l *lane) key() time.Time {
	if l.served.After(l.items[0].due) {
		return l.served
	}
	return l.items[0].due
}

type ready []*lane

func (r ready) Len() int { return len(r) }

// Less orders lanes by key; on a tie, the lane that waited longer first, then by stream: the order never
// depends on when the batches were queued.
func (r ready) Less(i, j int) bool {
	ki, kj := r[i].key(), r[j].key()
	switch {
	case !ki.Equal(kj):
		return ki.Before(kj)
	case !r[i].served.Equal(r[j].served):
		return r[i].served.Before(r[j].served)
	case r[i].st.Org != r[j].st.Org:
		return r[i].st.Org < r[j].st.Org
	}
	return r[i].st.Kind < r[j].st.Kind
}
func (r ready) Swap(i, j int) {
	r[i], r[j] = r[j], r[i]
	r[i].index, r[j].index = i, j
}
func (r *ready) Push(x any) {
	l := x.(*lane)
	l.index = len(*r)
	*r = append(*r, l)
}
func (r *ready) Pop() any {
	old := *r
	l := old[len(old)-1]
	old[len(old)-1] = nil // the backing array would keep the lane, and through it its last batch, alive
	*r = old[:len(old)-1]
	l.index = -1
	return l
}

// queue holds sealed batches until they are due for an upload attempt.
type queue struct {
	clock   clock
	mu      sync.Mutex
	lanes   map[buffer.Stream]*lane
	ready   ready
	count   int // batches queued or in flight
	inLog   int // of them, those that lived in the log when queued
	wake    chan struct{}
	changed chan struct{}
	// room is signalled when the batches living in the log fall to half of maxInLog: the sealer seals more
	room chan struct{}
}

func newQueue(clk clock) *queue {
	return &queue{clock: clk, lanes: map[buffer.Stream]*lane{}, wake: make(chan struct{}, 1), changed: make(chan struct{}, 1),
		room: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push adds a new batch.
func (q *queue) push(it *item) {
	q.mu.Lock()
	q.count++
	q.insert(it)
	q.mu.Unlock()
	signal(q.changed)
	signal(q.wake)
}

// insert puts it in its lane by age and makes the lane ready unless it is busy. The caller holds mu.
func (q *queue) insert(it *item) {
	was := it.inLog
	if it.batch != nil {
		it.st, it.opened, it.records, it.json = it.batch.Stream(), it.batch.Opened, it.batch.Records, it.batch.JSONBytes
		it.inLog = it.batch.InLog()
	} else {
		it.st, it.opened, it.records, it.json = it.sealed.Stream, it.sealed.Opened, it.sealed.Records, it.sealed.JSONBytes()
		it.inLog = true
	}
	switch {
	case it.inLog && !was:
		q.inLog++
	case was && !it.inLog:
		q.leftLog()
	}
	st := it.st
	l := q.lanes[st]
	if l == nil {
		l = &lane{st: st, index: -1}
		q.lanes[st] = l
	}
	i := sort.Search(len(l.items), func(i int) bool { return l.items[i].opened > it.opened })
	l.items = append(l.items, nil)
	copy(l.items[i+1:], l.items[i:])
	l.items[i] = it
	if l.busy != nil {
		return
	}
	if l.index < 0 {
		heap.Push(&q.ready, l)
	} else {
		heap.Fix(&q.ready, l.index)
	}
}

// pop waits for the next due batch of a stream with nothing in flight. It returns false once ctx has ended,
// even when batches are due. Before it waits, it calls idle (unless nil), and looks again when idle reports
// that it did something.
func (q *queue) pop(ctx context.Context, idle func() bool) (*item, bool) {
	for {
		if ctx.Err() != nil {
			return nil, false
		}
		q.mu.Lock()
		var due time.Time // when the next batch is due; zero when none waits
		if len(q.ready) > 0 {
			l := q.ready[0]
			if due = l.key(); !due.After(q.clock.Now()) {
				heap.Pop(&q.ready)
				it := l.items[0]
				l.items[0] = nil
				l.items = l.items[1:]
				l.busy = it
				more := len(q.ready) > 0
				q.mu.Unlock()
				if more {
					signal(q.wake) // let another worker look at the rest
				}
				return it, true
			}
		}
		q.mu.Unlock()
		if idle != nil && idle() {
			continue
		}
		var fire <-chan time.Time
		stop := func() {}
		if !due.IsZero() {
			fire, stop = q.clock.At(due)
		}
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-fire:
		}
		stop()
		if ctx.Err() != nil {
			return nil, false
		}
	}
}

// done ends an attempt. With again the batch stays queued (at it.due); otherwise it has left the queue.
func (q *queue) done(it *item, again bool) {
	q.mu.Lock()
	l := q.lanes[it.st]
	l.busy = nil
	l.served = q.clock.Now()
	if again {
		if l.expedited {
			it.due = l.served
		}
		q.insert(it)
	} else {
		q.left(it)
		if len(l.items) > 0 {
			heap.Push(&q.ready, l)
		} else {
			delete(q.lanes, l.st)
		}
	}
	l.expedited = false
	q.mu.Unlock()
	signal(q.changed)
	signal(q.wake)
}

// expedite makes every waiting batch due now, those in flight as soon as they return: one last try before
// shutdown, or a look at once after the destinations changed.
func (q *queue) expedite() {
	q.mu.Lock()
	now := q.clock.Now()
	for _, l := range q.lanes {
		l.served = time.Time{}
		l.expedited = l.busy != nil
		for _, it := range l.items {
			it.due = now
		}
	}
	heap.Init(&q.ready)
	q.mu.Unlock()
	signal(q.wake)
}

// oldest returns when the oldest batch queued or in flight was opened, or ok=false when there is none.
func (q *queue) oldest() (ms int64, ok bool) {
	older := func(it *item) {
		if !ok || it.opened < ms {
			ms, ok = it.opened, true
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range q.lanes {
		if l.busy != nil && l.busy != claimed {
			older(l.busy)
		}
		if len(l.items) > 0 {
			older(l.items[0])
		}
	}
	return ms, ok
}

// maxInLog bounds the batches living in the log that are queued or in flight: the sealer leaves the rest
// closed in the store until uploads make room (Instance.sealWithinRoom). A batch queued costs about 500 bytes
// besides its runs (its item, lane, key, and its Batch once taken): 30,000 streams closing together would keep
// 15 MB more live, and the collector would run every few uploads under the memory limit.
const maxInLog = 2 * sealInLogRound

// left counts a batch that left the queue; the caller holds mu.
func (q *queue) left(it *item) {
	q.count--
	if it.inLog {
		q.leftLog()
	}
}

// leftLog counts a batch living in the log that left the queue, or the log; the caller holds mu.
func (q *queue) leftLog() {
	q.inLog--
	if q.inLog == maxInLog/2 {
		signal(q.room)
	}
}

// roomInLog is how many more batches living in the log may be queued.
func (q *queue) roomInLog() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return maxInLog - q.inLog
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}

// drain waits until nothing is queued or in flight, or until the deadline channel fires.
func (q *queue) drain(deadline <-chan time.Time) bool {
	for q.len() > 0 {
		select {
		case <-q.changed:
		case <-deadline:
			return false
		}
	}
	return true
}

// each calls fn, with the queue locked, for every batch queued or in flight: its stream, Opened, records and
// their bytes as it was queued.
func (q *queue) each(fn func(st buffer.Stream, opened int64, records int, json int64)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range q.lanes {
		if l.busy != nil && l.busy != claimed {
			fn(l.busy.st, l.busy.opened, l.busy.records, l.busy.json)
		}
		for _, it := range l.items {
			fn(it.st, it.opened, it.records, it.json)
		}
	}
}

// claim takes up to n waiting batches that pick accepts out of the queue, for work on them outside it (a
// spill), and marks their lanes busy meanwhile, so that no later batch of their streams overtakes them.
// giveBack returns them.
func (q *queue) claim(n int, pick func(*item) bool) []*item {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*item
	for _, l := range q.lanes {
		if l.busy != nil || len(out) >= n {
			continue
		}
		var rest []*item
		for _, it := range l.items {
			if len(out) < n && pick(it) {
				out = append(out, it)
			} else {
				rest = append(rest, it)
			}
		}
		if len(rest) == len(l.items) {
			continue
		}
		l.items, l.busy = rest, claimed
		if l.index >= 0 {
			heap.Remove(&q.ready, l.index)
		}
	}
	return out
}

// claimed marks a lane whose batches claim took out; they are out of sight of each and oldest meanwhile.
var claimed = &item{}

// giveBack returns the batches claim took, but those gone (no longer to upload), and frees their lanes.
func (q *queue) giveBack(items []*item, gone map[*item]bool) {
	q.mu.Lock()
	for _, it := range items {
		if l := q.lanes[it.st]; l != nil && l.busy == claimed {
			l.busy = nil
		}
	}
	for _, it := range items {
		if gone[it] {
			q.left(it)
			continue
		}
		q.insert(it)
	}
	for _, it := range items {
		l := q.lanes[it.st]
		switch {
		case l == nil || l.busy != nil:
		case len(l.items) == 0:
			delete(q.lanes, l.st)
		case l.index < 0: // only gone batches of it came back: its others wait again
			heap.Push(&q.ready, l)
		}
	}
	q.mu.Unlock()
	signal(q.changed)
	signal(q.wake)
}
