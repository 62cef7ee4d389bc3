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

// logger prefixes lines with the instance name and removes secrets from them.
type logger struct {
	out     LogFunc
	prefix  string
	secrets []string
}

func (l *logger) logf(level Level, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, s := range l.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
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
