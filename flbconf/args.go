package flbconf

import "strings"

// shortWithArg are the short options of Fluent Bit's command line that take an argument (the getopt_long
// string in src/fluent-bit.c: "b:c:dDf:C:i:m:M:o:R:r:F:p:e:t:T:l:vw:qVhJL:HP:s:SWYZ").
const shortWithArg = "bcfCimMoRrFpetTlwLPs"

// longOptions are Fluent Bit's long options, each with whether it takes an argument.
var longOptions = map[string]bool{
	"storage_path": true, "config": true, "daemon": false, "dry-run": false, "flush": true, "http": false,
	"supervisor": false, "log_file": true, "port": true, "custom": true, "input": true, "processor": true,
	"filter": true, "output": true, "match": true, "parser": true, "prop": true, "plugin": true, "tag": true,
	"sp-task": true, "version": false, "verbose": false, "workdir": true, "quiet": false, "help": false,
	"help-json": false, "coro_stack_size": true, "sosreport": false, "http_server": false, "http_listen": true,
	"http_port": true, "enable-hot-reload": false, "enable-fips": false, "windows_maxstdio": true,
	"enable-chunk-trace": false, "trace": true, "trace-input": true, "trace-output": true,
	"trace-output-property": true, "disable-thread-safety-on-hot-reload": false,
}

// ConfigPath returns the configuration file named on Fluent Bit's command line (args without the program
// name), read as Fluent Bit's getopt_long reads it: -c FILE, -cFILE, --config FILE, --config=FILE or an
// unambiguous abbreviation of --config; the last one wins. ok is false when there is none. A relative path
// is relative to the folder Fluent Bit runs in, which --workdir sets before the file is read.
func ConfigPath(args []string) (path string, ok bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return path, ok
		case strings.HasPrefix(a, "--"):
			name, value, inline := strings.Cut(a[2:], "=")
			long, withArg, known := longOption(name)
			if !known || !withArg {
				continue
			}
			if !inline {
				if i+1 >= len(args) {
					return path, ok
				}
				i++
				value = args[i]
			}
			if long == "config" {
				path, ok = value, true
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				if !strings.ContainsRune(shortWithArg, rune(a[j])) {
					continue
				}
				value := a[j+1:]
				if value == "" {
					if i+1 >= len(args) {
						return path, ok
					}
					i++
					value = args[i]
				}
				if a[j] == 'c' {
					path, ok = value, true
				}
				break
			}
		}
	}
	return path, ok
}

// longOption finds a long option by its name or, as getopt_long does, by a prefix of exactly one option's
// name (or of several that all take an argument or all take none).
func longOption(name string) (long string, withArg, known bool) {
	if withArg, known := longOptions[name]; known {
		return name, withArg, true
	}
	if name == "" {
		return "", false, false
	}
	var matches []string
	for n := range longOptions {
		if strings.HasPrefix(n, name) {
			matches = append(matches, n)
		}
	}
	switch {
	case len(matches) == 1:
		return matches[0], longOptions[matches[0]], true
	case len(matches) == 0:
		return "", false, false
	}
	for _, m := range matches[1:] {
		if longOptions[m] != longOptions[matches[0]] {
			return "", false, false
		}
	}
	// Several options take an argument: getopt_long refuses the abbreviation, and Fluent Bit would not
	// have started. None of them is --config either way.
	return "", longOptions[matches[0]], true
}
