package plugin

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
)

// A panic in a goroutine of the plugin's own kills Fluent Bit and every chunk it holds in memory: the guard of
// the cgo edge covers only the calls Fluent Bit makes. So every background loop runs under supervise, and the
// code that Prometheus or the store call back runs under contain.

// loop is a background loop, as wivaudit_panics_total labels its panics.
type loop int

const (
	sealerLoop loop = iota
	uploaderLoop
	reloaderLoop
	digestsLoop
	metricsLoop
	loops // the number of loops
)

var (
	loopLabels = [loops]string{"sealer", "uploader", "reloader", "digests", "metrics"}
	loopNames  = [loops]string{"the sealer", "an uploader", "the destinations reloader", "the digest loop", "the metrics collector"}
)

// Restarts after a panic back off: restartBase, doubled for each panic in a row, at most restartCap. A loop that
// ran for restartCap before it panicked starts a new row.
const (
	restartBase = time.Second
	restartCap  = time.Minute
)

// restartAfter says how long a loop that panicked after running for ran waits before it starts again, and how
// many panics in a row that makes, inARow before it.
func restartAfter(inARow int, ran time.Duration) (wait time.Duration, row int) {
	if ran >= restartCap {
		inARow = 0
	}
	row = inARow + 1
	wait = restartCap
	if row <= 6 {
		wait = min(restartCap, restartBase<<(row-1))
	}
	return wait, row
}

// loopPanic is a panic contained: where, what it was, and the stack it was raised on, on one line.
type loopPanic struct {
	loop  loop
	value any
	stack string
}

func (p *loopPanic) Error() string {
	return fmt.Sprintf("%s panicked: %v; stack: %s", loopNames[p.loop], p.value, p.stack)
}

// contain runs f and returns the panic that ended it, if one did, counted in wivaudit_panics_total.
func (in *Instance) contain(l loop, f func()) (p *loopPanic) {
	defer func() {
		if r := recover(); r != nil {
			in.panics[l].Add(1)
			p = &loopPanic{loop: l, value: r, stack: strings.Join(strings.Fields(string(debug.Stack())), " ")}
		}
	}()
	f()
	return nil
}

// logPanic logs a panic contained and what follows it, at most once per reportEvery for each loop.
func (in *Instance) logPanic(p *loopPanic, sequel string) {
	in.log.limitedf(LevelError, "panic\x00"+loopLabels[p.loop], in.now(), "%v; %s", p, sequel)
}

// supervise runs run until it returns, or until ctx ends; each time it panics, it starts again after
// restartAfter.
func (in *Instance) supervise(ctx context.Context, l loop, run func()) {
	row := 0
	for {
		started := in.now()
		p := in.contain(l, run)
		if p == nil {
			return
		}
		var wait time.Duration
		wait, row = restartAfter(row, in.now().Sub(started))
		at := in.now().Add(wait)
		in.logPanic(p, fmt.Sprintf("starting it again in %s", wait))
		fire, stop := in.clock.At(at)
		select {
		case <-ctx.Done():
		case <-fire:
		}
		stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// background runs run under supervise in a goroutine of its own, then done.
func (in *Instance) background(ctx context.Context, l loop, run func(), done func()) {
	go func() {
		defer done()
		in.supervise(ctx, l, run)
	}()
}
