package plugin

import (
	"context"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
)

// sealer closes batches older than Upload_Timeout at each tick, and seals closed batches then and whenever a
// flush asks.
func (in *Instance) sealer(ctx context.Context, tick <-chan time.Time, stop func()) {
	defer close(in.sealerDone)
	defer stop()
	var st statusReport
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			in.store.Rotate(in.now().Add(-in.cfg.UploadTimeout))
			st.maybe(in, in.now())
		case <-in.sealNow:
		}
		in.sealClosed(time.Time{})
	}
}

// sealRound is how many closed batches are sealed together, sharing one folder sync and one log append.
const sealRound = 64

// sealClosed seals closed batches with their final keys and queues them for upload. Past the deadline (if
// set) it stops: the batches left are durable in the log and sealed at the next start.
func (in *Instance) sealClosed(deadline time.Time) {
	closed := in.store.TakeClosed()
	for len(closed) > 0 {
		if !deadline.IsZero() && in.now().After(deadline) {
			for _, rest := range closed {
				in.store.PutBack(rest)
			}
			in.log.logf(LevelInfo, "%d batches left unsealed at shutdown; they are sealed at the next start", len(closed))
			return
		}
		round := closed[:min(len(closed), sealRound)]
		closed = closed[len(round):]
		for _, r := range in.store.Seal(round, in.naming, in.encode) {
			in.sealed(r)
		}
	}
}

// naming gives a closed batch its destination and key, fixed at seal time.
func (in *Instance) naming(p *buffer.Pending) (string, func(int64) string) {
	dest, prefix := in.dests.seal(p.Org)
	return dest, func(ms int64) string { return objectKey(prefix, p.Org, p.Kind, ms) }
}

// sealed reports what sealing one batch found and queues the batch.
func (in *Instance) sealed(r buffer.Sealed) {
	p := r.Pending
	if r.Err != nil {
		in.log.limitedf(LevelError, "seal\x00"+rootCause(r.Err), in.now(), "%v; will try again", r.Err)
		in.store.PutBack(p)
		return
	}
	if r.Report.TornTail > 0 {
		in.log.logf(LevelWarn, "%s: dropped the last %d bytes of its buffer, an append interrupted by a crash; it was never acknowledged, so Fluent Bit sends it again",
			p.Stream, r.Report.TornTail)
	}
	if len(r.Report.Damaged) > 0 {
		in.deadLetterDamaged("the buffer of "+p.Stream.String(), r.Report.Damaged)
	}
	if r.Report.Unreleased != nil {
		in.log.limitedf(LevelError, "release\x00"+rootCause(r.Report.Unreleased), in.now(), "sealed %s but cannot mark its records as sealed in the log (%v); the log keeps them until the next start", p.Stream, r.Report.Unreleased)
	}
	if r.Batch != nil {
		in.queue.push(&item{batch: r.Batch, due: in.now()})
	}
}
