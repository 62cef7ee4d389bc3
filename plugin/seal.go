package plugin

import (
	"context"
	"io"
	"iter"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
)

// sealer closes batches older than Upload_Timeout at each tick, and finishes what the store could not (delivered
// batches waiting for their "sealed" entries), and seals closed batches then and whenever a flush asks.
func (in *Instance) sealer(ctx context.Context, tick <-chan time.Time) {
	var st statusReport
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			in.store.Rotate(in.now().Add(-in.cfg.UploadTimeout))
			in.sealWithinRoom(true)
			in.spillStuck(in.now())
			// After the seal round, which carried the "sealed" entries of the batches delivered from the log.
			if err := in.store.Tidy(); err != nil {
				in.log.limitedf(LevelError, "tidy\x00"+rootCause(err), in.now(), "delivered batches wait in Store_Dir until their records can be marked as sealed in the log: %v", err)
			}
			st.maybe(in, in.now())
		case <-in.sealNow:
			in.sealWithinRoom(false)
		case <-in.queue.room:
			in.sealWithinRoom(false)
		}
	}
}

// A batch that lives in the log is spilled to a batch file once it waited spillAfter since its seal, or when
// it keeps the oldest of too many log segments (buffer.Store.Pinning): a stuck upload never keeps the log
// growing. Each sealer tick spills at most spillRound of them.
const (
	spillAfter = 5 * time.Minute
	spillRound = 256
)

// spillStuck spills the batches waiting in the log that have waited too long or keep the log too long.
func (in *Instance) spillStuck(now time.Time) {
	pinned := in.store.Pinned()
	its := in.queue.claim(spillRound, func(it *item) bool {
		p := it.inLogPending()
		return p != nil && (now.Sub(p.SealedAt()) >= spillAfter || pinned != 0 && p.FirstSegment() == pinned)
	})
	gone := map[*item]bool{}
	for _, it := range its {
		if g, err := in.spill(it.batchOf(in.store), now); err == nil && g {
			gone[it] = true
		}
	}
	in.queue.giveBack(its, gone)
}

// spill writes a batch in the log to a batch file, and says what went wrong: it stays in the log when the spill
// failed, and is gone when it held only damaged records.
func (in *Instance) spill(b *buffer.Batch, now time.Time) (gone bool, err error) {
	gone, err = in.store.Spill(b, in.naming, in.sealEncode)
	switch {
	case err != nil:
		in.log.limitedf(LevelError, "spill\x00"+rootCause(err), now, "%v; it stays in the log and will try again", err)
	case gone:
		in.log.logf(LevelError, "batch %s of %s held only damaged records: they are in the dead-letter file, nothing is left to upload", b.Key, b.Stream())
	}
	return gone, err
}

// sealRound is how many closed batches are sealed to files together, sharing one folder sync and one log
// append; sealInLogRound how many are sealed in the log together, sharing one append.
const (
	sealRound      = 64
	sealInLogRound = 1024
)

// sealWithinRoom seals the closed batches that go to files, and of those to be sealed in the log as many as
// the queue has room for (maxInLog); the others stay closed in the store, oldest first, until uploads make
// room. Unless every is set, it stops looking once the room is taken: with 30,000 batches closed, asking the
// destinations about each at every round that uploads make room for cost more than sealing. A batch that goes
// to a file and was closed since the last tick then waits for the next one (a second at most).
func (in *Instance) sealWithinRoom(every bool) {
	in.sealing.Lock() // the room is counted before the batches it is given to are queued
	defer in.sealing.Unlock()
	room := in.queue.roomInLog()
	closed := in.store.TakeClosed()
	var now, later []*buffer.Pending
	for i, p := range closed {
		if room <= 0 && !every {
			later = append(later, closed[i:]...)
			break
		}
		switch {
		case in.toFile(p):
		case room <= 0:
			later = append(later, p)
			continue
		default:
			room--
		}
		now = append(now, p)
	}
	in.store.PutBackFirst(later)
	in.seal(now, time.Time{})
}

// sealClosed seals every closed batch with its final key and queues it for upload. Past the deadline (if set)
// it stops: the batches left are durable in the log and sealed at the next start.
func (in *Instance) sealClosed(deadline time.Time) {
	in.seal(in.store.TakeClosed(), deadline)
}

// seal seals closed, oldest first, and queues them, until the deadline (if set).
func (in *Instance) seal(closed []*buffer.Pending, deadline time.Time) {
	var sealed []buffer.Sealed // of the round being queued
	// After a panic, what the store sealed is queued and what it was not given goes back to it. A round it was
	// sealing when the panic struck is left to the next start, which finds its records in the log or its
	// batches sealed: putting them back could seal them twice.
	defer func() {
		for _, r := range sealed {
			in.keep(r)
		}
		for _, p := range closed {
			in.store.PutBack(p)
		}
	}()
	for len(closed) > 0 {
		if !deadline.IsZero() && in.now().After(deadline) {
			in.log.logf(LevelInfo, "%d batches left unsealed at shutdown; they are sealed at the next start", len(closed))
			return
		}
		// A round takes sealRound batches that go to files, or up to sealInLogRound of which those that do not
		// are sealed in the log with one append: that costs no file of their own.
		var inLog, toFile []*buffer.Pending
		n := 0
		for ; n < len(closed) && n < sealInLogRound && len(toFile) < sealRound; n++ {
			if p := closed[n]; in.toFile(p) {
				toFile = append(toFile, p)
			} else {
				inLog = append(inLog, p)
			}
		}
		closed = closed[n:]
		in.sealInLog(inLog)
		sealed = in.store.Seal(toFile, in.naming, in.sealEncode)
		for len(sealed) > 0 {
			r := sealed[0]
			sealed = sealed[1:]
			in.keep(r)
			in.report(r)
		}
	}
}

// sealInLog seals batches in the log and queues them; when the log cannot record them, they go back to be
// sealed again.
func (in *Instance) sealInLog(ps []*buffer.Pending) {
	if len(ps) == 0 {
		return
	}
	if err := in.store.SealInLog(ps, in.naming); err != nil {
		for _, p := range ps {
			in.store.PutBack(p)
		}
		in.log.limitedf(LevelError, "seal\x00"+rootCause(err), in.now(), "%v; will try again", err)
		return
	}
	for _, p := range ps {
		in.queue.push(&item{sealed: p, due: in.now()})
	}
}

// toFile reports whether a closed batch is sealed to a batch file rather than in the log: a legacy log file,
// or a batch that would be held (it would only keep the log).
func (in *Instance) toFile(p *buffer.Pending) bool {
	if p.FromLegacyLog() {
		return true
	}
	_, held := in.dests.current(p.Org)
	return held != ""
}

// sealEncode is the objects' encoder, a panic in it turned into the batch's seal error: the store takes back
// what it wrote, and the batch is put back to be sealed again.
func (in *Instance) sealEncode(w io.Writer, fragments iter.Seq[[]byte]) (err error) {
	if p := in.contain(sealerLoop, func() { err = in.encode(w, fragments) }); p != nil {
		return p
	}
	return err
}

// naming gives a closed batch its destination and key, fixed at seal time.
func (in *Instance) naming(p *buffer.Pending) (string, func(int64) string) {
	dest, prefix := in.dests.seal(p.Org)
	return dest, func(ms int64) string { return objectKey(prefix, p.Org, p.Kind, ms) }
}

// keep queues a sealed batch, or puts back one that could not be sealed.
func (in *Instance) keep(r buffer.Sealed) {
	switch {
	case r.Err != nil:
		in.store.PutBack(r.Pending)
	case r.Batch != nil:
		in.queue.push(&item{batch: r.Batch, due: in.now()})
	}
}

// report says what sealing one batch found.
func (in *Instance) report(r buffer.Sealed) {
	p := r.Pending
	if r.Err != nil {
		in.log.limitedf(LevelError, "seal\x00"+rootCause(r.Err), in.now(), "%v; will try again", r.Err)
		return
	}
	if r.Report.TornTail > 0 {
		in.log.logf(LevelWarn, "%s: dropped the last %d bytes of its buffer, an append interrupted by a crash; it was never acknowledged, so Fluent Bit sends it again",
			p.Stream, r.Report.TornTail)
	}
	if r.Report.Unreleased != nil {
		in.log.limitedf(LevelError, "release\x00"+rootCause(r.Report.Unreleased), in.now(), "sealed %s but cannot mark its records as sealed in the log (%v); the log keeps them until a later round can", p.Stream, r.Report.Unreleased)
	}
}
