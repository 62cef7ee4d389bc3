package plugin

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what a flush tells Fluent Bit. The cgo edge maps it to FLB_OK and FLB_RETRY.
type Result int

// Flush results.
const (
	OK Result = iota
	Retry
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
// no message is meant to carry one. Its cost does not grow with the number of secrets: a line is cut into the
// words an External ID could be, and each is looked up in a set.
type logger struct {
	out    LogFunc
	prefix string
	fixed  []string // the [OUTPUT] section's own secrets

	secrets atomic.Pointer[secretSet]
	limits  limiter
}

// secretSet holds the secrets to redact, and the lengths they have, so that most words need no lookup.
type secretSet struct {
	values  map[string]bool
	lengths map[int]bool
}

func newLogger(out LogFunc, prefix string, secrets ...string) *logger {
	l := &logger{out: out, prefix: prefix, limits: limiter{interval: reportEvery, last: map[string]*limit{}}}
	for _, s := range secrets {
		if s != "" {
			l.fixed = append(l.fixed, s)
		}
	}
	l.setSecrets(nil)
	return l
}

// setSecrets replaces the secrets to redact (the [OUTPUT] section's are always kept).
func (l *logger) setSecrets(secrets []string) {
	set := &secretSet{values: map[string]bool{}, lengths: map[int]bool{}}
	for _, s := range append(secrets, l.fixed...) {
		if s != "" {
			set.values[s], set.lengths[len(s)] = true, true
		}
	}
	l.secrets.Store(set)
}

func (l *logger) logf(level Level, format string, args ...any) {
	l.out(level, l.prefix+l.redact(fmt.Sprintf(format, args...)))
}

// limitedf logs a line that repeats, at most once per reportEvery for each key (a cause and a destination),
// saying how many like it were held back since the last one.
func (l *logger) limitedf(level Level, key string, now time.Time, format string, args ...any) {
	ok, held := l.limits.allow(key, now)
	if !ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if held > 0 {
		msg += fmt.Sprintf(" (%d more like it since the last line)", held)
	}
	l.logf(level, "%s", msg)
}

// redact replaces every secret found in msg. The words looked up are the runs of characters an External ID
// may hold, and within them the spans between separators ("=", ":", "/", ...), since a secret may sit next to
// one (ext=SECRET, role/SECRET) or contain some itself.
func (l *logger) redact(msg string) string {
	set := l.secrets.Load()
	if len(set.values) == 0 {
		return msg
	}
	var found []string
	for i := 0; i < len(msg); {
		if !idChar(msg[i]) {
			i++
			continue
		}
		j := i
		for j < len(msg) && idChar(msg[j]) {
			j++
		}
		found = set.within(msg[i:j], found)
		i = j
	}
	for _, s := range found {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	return msg
}

// within appends the secrets that are spans of word between separators (or its ends).
func (set *secretSet) within(word string, found []string) []string {
	starts := []int{0}
	for k := 0; k < len(word); k++ {
		if separator(word[k]) {
			starts = append(starts, k+1)
		}
	}
	ends := append(starts[1:len(starts):len(starts)], len(word)+1)
	for _, a := range starts {
		for _, b := range ends {
			if b-1 > a && set.lengths[b-1-a] && set.values[word[a:b-1]] {
				found = append(found, word[a:b-1])
			}
		}
	}
	return found
}

// idChar reports whether c may be part of an External ID (STS: letters, digits and +=,.@:/-).
func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || separator(c)
}

func separator(c byte) bool { return strings.IndexByte("+=,.@:/", c) >= 0 }

// rootCause is the innermost error's text ("no space left on device"): the cause a repeating line is keyed by,
// whichever stream or file it struck.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// reportEvery is how often a repeating line is logged per cause and destination.
const reportEvery = 30 * time.Second

// limiter lets one line per key through per interval, and counts the ones it held back.
type limiter struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[string]*limit
}

type limit struct {
	at   time.Time
	held int
}

// allow reports whether to log now for key, and how many lines were held back since the last one.
func (l *limiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.last[key]
	if e == nil {
		if len(l.last) >= maxLimitKeys {
			l.forget(now)
		}
		l.last[key] = &limit{at: now}
		return true, 0
	}
	if now.Sub(e.at) < l.interval {
		e.held++
		return false, 0
	}
	held := e.held
	e.at, e.held = now, 0
	return true, held
}

// maxLimitKeys bounds the keys a limiter remembers: past it, keys quiet for an interval are forgotten.
const maxLimitKeys = 4096

func (l *limiter) forget(now time.Time) {
	for k, e := range l.last {
		if now.Sub(e.at) >= l.interval {
			delete(l.last, k)
		}
	}
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
