package plugin

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Result is what a flush tells Fluent Bit. The cgo edge maps it to FLB_OK, FLB_RETRY and FLB_ERROR.
type Result int

// Flush results.
const (
	OK Result = iota
	Retry
	Error
)

// Level is a Fluent Bit log level.
type Level int

// Fluent Bit's log levels (flb_log.h).
const (
	LevelError Level = 1
	LevelWarn  Level = 2
	LevelInfo  Level = 3
	LevelDebug Level = 4
)

// LogFunc prints one log line at a level. The cgo edge sends it to Fluent Bit's logger.
type LogFunc func(level Level, msg string)

// logger prefixes lines with the instance name and removes secrets from them: a last line of defence, since
// no message is meant to carry one.
type logger struct {
	out    LogFunc
	prefix string

	mu      sync.RWMutex
	secrets map[string]bool
}

func newLogger(out LogFunc, prefix string, secrets ...string) *logger {
	l := &logger{out: out, prefix: prefix, secrets: map[string]bool{}}
	for _, s := range secrets {
		l.addSecret(s)
	}
	return l
}

func (l *logger) addSecret(s string) {
	if s == "" {
		return
	}
	l.mu.Lock()
	l.secrets[s] = true
	l.mu.Unlock()
}

func (l *logger) logf(level Level, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.RLock()
	for s := range l.secrets {
		if strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	l.mu.RUnlock()
	l.out(level, l.prefix+msg)
}

// every lets one report through per interval and counts the ones it held back.
type every struct {
	interval time.Duration
	mu       sync.Mutex
	last     time.Time
	held     int
}

// allow reports whether to log now, and how many reports were held back since the last one.
func (e *every) allow(now time.Time) (bool, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.last.IsZero() && now.Sub(e.last) < e.interval {
		e.held++
		return false, 0
	}
	held := e.held
	e.last, e.held = now, 0
	return true, held
}
