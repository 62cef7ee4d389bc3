package plugin

import "time"

// clock is where the plugin's time comes from: the system's in production (realClock), a fake one in the
// unit tests, which move it themselves and so never wait on real time.
type clock interface {
	Now() time.Time
	// At returns a channel that receives once the clock reaches t, and a function that stops it.
	At(t time.Time) (<-chan time.Time, func())
	// Every returns a channel that receives every d, dropping the ticks its reader is not ready for, and a
	// function that stops it.
	Every(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) At(t time.Time) (<-chan time.Time, func()) {
	timer := time.NewTimer(time.Until(t))
	return timer.C, func() { timer.Stop() }
}

func (realClock) Every(d time.Duration) (<-chan time.Time, func()) {
	ticker := time.NewTicker(d)
	return ticker.C, ticker.Stop
}
