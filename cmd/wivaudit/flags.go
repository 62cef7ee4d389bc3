package main

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/conf"
)

// flags returns c's flag set: its errors and -h go to stderr.
func flags(e *env, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("wivaudit "+c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: wivaudit %s %s\n  %s\n", c.name, c.args, c.summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse reads flags placed anywhere among args and returns the positional arguments, which must number
// want. ok=false means the caller exits with code: 0 after -h, 2 after a usage error (already printed).
func parse(e *env, fs *flag.FlagSet, args []string, want ...string) (positional []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return nil, exitOK, false
		} else if err != nil {
			return nil, exitUsage, false
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case len(want) == 0 && len(positional) > 0:
		return nil, usageError(e, fs, "takes no arguments, got %q; give values with flags", strings.Join(positional, " ")), false
	case len(positional) != len(want):
		return nil, usageError(e, fs, "expected %s, got %d arguments", strings.Join(want, " "), len(positional)), false
	}
	return positional, exitOK, true
}

// usageError prints what is wrong with the arguments and the usage, and returns exitUsage.
func usageError(e *env, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// problems lists the errors an error joins (conf reports every problem at once), or the error itself.
func problems(err error) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return joined.Unwrap()
	}
	return []error{err}
}

// settingName is a setting's name in a message, with the on or off after it: "Allow_Plain_HTTP on".
var settingName = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]*(?:_[A-Z][A-Za-z0-9]*)*\b(?: (?:on|off)\b)?`)

// switches are the settings that are switched on or off.
var switches = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range conf.Keys() {
		m[k.Name] = k.Type == conf.TypeSwitch
	}
	return m
}()

// inFlags says a message about settings (a settings problem, or what to check after a failed call) in the
// command's own terms: each setting a flag gives becomes the flag, and a switch's "on" or "off" the flag's
// value ("set Allow_Plain_HTTP on" becomes "set --allow-plain-http").
func inFlags(msg string, flagBySetting map[string]string) string {
	return settingName.ReplaceAllStringFunc(msg, func(m string) string {
		key, word, _ := strings.Cut(m, " ")
		flag := flagBySetting[key]
		switch {
		case flag == "":
			return m
		case switches[key] && word == "on":
			return flag
		case switches[key] && word == "off":
			return flag + "=false"
		case word != "":
			return flag + " " + word
		}
		return flag
	})
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// timeFlag is a time flag's name, its value and where it goes once parsed.
type timeFlag struct {
	flag, value string
	into        *time.Time
}

// parseTimes reads RFC 3339 time flags that are set; ok=false means the caller exits with code (the usage
// error is printed).
func parseTimes(e *env, fs *flag.FlagSet, flags ...timeFlag) (code int, ok bool) {
	for _, t := range flags {
		if t.value == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.value)
		if err != nil {
			return usageError(e, fs, "%s: %q is not an RFC 3339 time such as 2026-11-29T00:00:00Z", t.flag, t.value), false
		}
		*t.into = v
	}
	return exitOK, true
}
