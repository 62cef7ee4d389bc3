package plugin

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
	"weak"

	"github.com/wiv/out_wivaudit/buffer"
)

func batch(org string, opened int64) *buffer.Batch {
	return &buffer.Batch{Manifest: buffer.Manifest{Org: org, Kind: "org", Opened: opened, Key: org + "-" + time.UnixMilli(opened).Format("05.000")}}
}

func TestQueueOrderPerStreamAndFairness(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	q := newQueue(clk)
	ctx := context.Background()
	// Stream a has a backlog pushed out of order; b has one batch, due a little later.
	for _, ms := range []int64{3, 1, 2} {
		q.push(&item{batch: batch("a", ms), due: t0})
	}
	q.push(&item{batch: batch("b", 10), due: t0.Add(time.Millisecond)})
	clk.Advance(10 * time.Millisecond)

	pop := func() *item {
		it, ok := q.pop(ctx, nil)
		if !ok {
			t.Fatal("pop ended")
		}
		return it
	}
	a1 := pop()
	if a1.batch.Org != "a" || a1.batch.Opened != 1 {
		t.Fatalf("first pop %+v, want a's oldest", a1.batch.Manifest)
	}
	if b := pop(); b.batch.Org != "b" {
		t.Fatalf("second pop %+v: while a has a batch in flight, only b may go", b.batch.Manifest)
	} else {
		q.done(b, false)
	}
	a1.due = clk.Now()
	q.done(a1, true) // failed: it stays first in its lane
	if it := pop(); it != a1 {
		t.Fatalf("after a retry the same batch must go first, got %+v", it.batch.Manifest)
	}
	q.done(a1, false)
	q.push(&item{batch: batch("c", 20), due: clk.Now()})
	clk.Advance(time.Millisecond)
	// a was served just now; c, new, goes before a's backlog.
	if it := pop(); it.batch.Org != "c" {
		t.Fatalf("new data of another stream waited behind a backlog: got %+v", it.batch.Manifest)
	} else {
		q.done(it, false)
	}
	for _, want := range []int64{2, 3} {
		it := pop()
		if it.batch.Opened != want {
			t.Fatalf("got a's batch %d, want %d", it.batch.Opened, want)
		}
		q.done(it, false)
	}
	if q.len() != 0 {
		t.Errorf("%d left", q.len())
	}
	if !q.drain(nil) {
		t.Error("drain of an empty queue")
	}
}

func TestQueuePopEndsWithContext(t *testing.T) {
	clk := newFakeClock()
	q := newQueue(clk)
	q.push(&item{batch: batch("a", 1), due: clk.Now().Add(time.Hour)})
	q.push(&item{batch: batch("b", 1), due: clk.Now()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Workers stop at shutdown even with batches due; otherwise every attempt fails at once and they spin.
	if it, ok := q.pop(ctx, nil); ok {
		t.Errorf("pop after the end returned %+v", it.batch.Manifest)
	}
}

func TestQueueOldestCountsTheBatchInFlight(t *testing.T) {
	clk := newFakeClock()
	now := clk.Now()
	q := newQueue(clk)
	if _, ok := q.oldest(); ok {
		t.Fatal("an empty queue has an oldest batch")
	}
	q.push(&item{batch: batch("a", 5), due: now})
	q.push(&item{batch: batch("b", 3), due: now.Add(-time.Millisecond)})
	q.push(&item{batch: batch("a", 7), due: now})
	want := func(step string, ms int64) {
		t.Helper()
		if got, ok := q.oldest(); !ok || got != ms {
			t.Errorf("%s: oldest %d (%v), want %d", step, got, ok, ms)
		}
	}
	want("queued", 3)
	ctx := context.Background()
	b, _ := q.pop(ctx, nil)
	if b.batch.Org != "b" {
		t.Fatalf("popped %+v", b.batch.Manifest)
	}
	want("b in flight", 3)
	q.done(b, false)
	want("b delivered", 5)
	for range 2 {
		it, _ := q.pop(ctx, nil)
		q.done(it, false)
	}
	if ms, ok := q.oldest(); ok {
		t.Errorf("all delivered, yet oldest %d", ms)
	}
}

// TestQueueOrderOfTies: batches due at the same time go in the order of their streams, whether the worker took
// the first one before the others were queued or after (the fault matrix numbers file operations by it).
func TestQueueOrderOfTies(t *testing.T) {
	orgs := []string{"d", "b", "a", "c", "e"}
	order := func(popFirstEarly bool) []string {
		clk := newFakeClock()
		q := newQueue(clk)
		ctx := context.Background()
		var got []string
		for i, org := range orgs {
			q.push(&item{batch: batch(org, 1), due: clk.Now()})
			if i == 0 && popFirstEarly {
				it, _ := q.pop(ctx, nil)
				got = append(got, it.batch.Org)
				q.done(it, false)
			}
		}
		for q.len() > 0 {
			it, _ := q.pop(ctx, nil)
			got = append(got, it.batch.Org)
			q.done(it, false)
		}
		return got
	}
	if all, early := order(false), order(true); !slices.Equal(all, []string{"a", "b", "c", "d", "e"}) || !slices.Equal(early[1:], []string{"a", "b", "c", "e"}) {
		t.Errorf("popped %v when all were queued first, %v when the first was taken at once", all, early)
	}
}

// A spill that finds a claimed batch held only damage gives nothing back for it: the lane's other batches
// must still be ready for upload, or they wait forever (and shutdown's drain with them).
func TestGiveBackOfAGoneBatchLeavesItsLaneReady(t *testing.T) {
	clk := newFakeClock()
	q := newQueue(clk)
	old, young := &item{batch: batch("a", 1), due: clk.Now()}, &item{batch: batch("a", 2), due: clk.Now()}
	q.push(old)
	q.push(young)
	its := q.claim(10, func(it *item) bool { return it == old })
	if len(its) != 1 || its[0] != old {
		t.Fatalf("claimed %v", its)
	}
	q.giveBack(its, map[*item]bool{old: true})
	if q.len() != 1 {
		t.Fatalf("%d counted, want 1", q.len())
	}
	if len(q.ready) != 1 || q.ready[0].items[0] != young {
		t.Fatalf("the lane's other batch is not ready for upload: %d lanes ready", len(q.ready))
	}
}

// TestQueueLetsGoOfBatchesThatLeft: once a batch has left the queue, nothing of the queue keeps it alive. A
// lane's slice of batches kept the last it popped, and the ready heap's backing array the lanes it popped: in
// make bench, 30,000 delivered batches stayed live with their sums and events, and the collector ran every
// megabyte.
func TestQueueLetsGoOfBatchesThatLeft(t *testing.T) {
	clk := newFakeClock()
	q := newQueue(clk)
	var first, second []weak.Pointer[buffer.Batch]
	func() {
		for i := range 50 {
			org := fmt.Sprintf("org-%d", i)
			a, b := batch(org, 1), batch(org, 2)
			first, second = append(first, weak.Make(a)), append(second, weak.Make(b))
			q.push(&item{batch: a, due: clk.Now()})
			q.push(&item{batch: b, due: clk.Now()})
		}
	}()
	deliver := func(n int) {
		for range n {
			it, ok := q.pop(context.Background(), nil)
			if !ok {
				t.Fatal("nothing to pop")
			}
			q.done(it, false)
		}
	}
	alive := func(ws []weak.Pointer[buffer.Batch]) (n int) {
		runtime.GC()
		for _, w := range ws {
			if w.Value() != nil {
				n++
			}
		}
		return n
	}
	deliver(50) // the first batch of each stream: each lane keeps its second
	if n := alive(first); n != 0 {
		t.Errorf("%d of 50 batches that left are still alive, their streams' next batches queued", n)
	}
	if n := alive(second); n != 50 {
		t.Fatalf("%d of 50 queued batches alive", n)
	}
	deliver(50)
	if n := alive(second); n != 0 {
		t.Errorf("%d of 50 batches that left are still alive, the queue empty", n)
	}
}
