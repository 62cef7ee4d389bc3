// Package keycheck finds the keys of an output's section that the plugin does not read. Fluent Bit hands a Go
// plugin only the values of the keys it asks for, so a misspelt key is otherwise silent; the section is read
// from the configuration file Fluent Bit was started with, when it can be found there for certain.
package keycheck

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/flbconf"
)

// Report is what the check found about one instance's section.
type Report struct {
	// Info is one line saying which section was checked, or why none was.
	Info string
	// Warnings name each unknown key with where it is written and the nearest key the plugin reads, and each
	// key written twice.
	Warnings []string
	hints    []string // for Explain: unknown keys whose nearest known key is not written
}

// Check reads the configuration file on Fluent Bit's command line, finds the section of instance index (the
// index-th output named plugin that Fluent Bit initialises, from 0) whose values are those src gives, and
// checks its keys.
func Check(plugin string, index int, src conf.Source) Report {
	cmdline, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		return notChecked("Fluent Bit's command line cannot be read: %v", err)
	}
	args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	return check(args[1:], flbconf.OS, plugin, index, src)
}

func check(args []string, files flbconf.Files, plugin string, index int, src conf.Source) Report {
	path, ok := flbconf.ConfigPath(args)
	if !ok {
		return notChecked("Fluent Bit was started without a configuration file (-c)")
	}
	sections, err := flbconf.Outputs(files, path)
	if err != nil {
		return notChecked("reading %s: %v", path, err)
	}
	s, why := pick(sections, plugin, index, src)
	if why != "" {
		return notChecked("%s", why)
	}
	return checkSection(s)
}

func notChecked(format string, args ...any) Report {
	return Report{Info: "keys not checked: " + fmt.Sprintf(format, args...)}
}

// Explain adds to an error of conf.Parse the unknown keys whose nearest known key is not written: the
// misspelling is then the likely cause ("Bucket: not set" when Destinations_File is misspelt).
func (r Report) Explain(err error) error {
	if err == nil || len(r.hints) == 0 {
		return err
	}
	return fmt.Errorf("%w; %s", err, strings.Join(r.hints, "; "))
}

// pick finds the instance's section: among the outputs named plugin, those in which every key conf reads is
// written with the value src gives, or not written when src gives none; of several, the index-th output if it
// is one of them. Values with ${VAR} are not compared: Fluent Bit expands them from variables this package
// does not know (@SET, env:, the environment at start). why says why none was picked.
func pick(sections []flbconf.Section, plugin string, index int, src conf.Source) (s flbconf.Section, why string) {
	var named, agree []flbconf.Section
	for _, s := range sections {
		if strings.EqualFold(s.Name(), plugin) {
			named = append(named, s)
			if agrees(s, src) {
				agree = append(agree, s)
			}
		}
	}
	switch {
	case len(named) == 0:
		return s, fmt.Sprintf("the configuration file has no output named %s (was this one given on the command line?)", plugin)
	case len(agree) == 1:
		return agree[0], ""
	case len(agree) == 0:
		return s, fmt.Sprintf("no output named %s in the configuration file has this instance's values (was the file changed after Fluent Bit read it?)", plugin)
	case index < len(named) && agrees(named[index], src):
		return named[index], ""
	}
	return s, fmt.Sprintf("%d outputs named %s in the configuration file have this instance's values, and which one is this is unclear", len(agree), plugin)
}

func agrees(s flbconf.Section, src conf.Source) bool {
	for _, k := range conf.Keys() {
		written := ""
		if p, ok := s.Get(k.Name); ok {
			written = p.Value
		}
		if !strings.Contains(written, "${") && written != strings.TrimSpace(src.Get(k.Name)) {
			return false
		}
	}
	return true
}

// checkSection warns of each key of s that is neither the plugin's nor Fluent Bit's, and of each key of the
// plugin written twice.
func checkSection(s flbconf.Section) Report {
	r := Report{Info: fmt.Sprintf("keys checked against the section at %s:%d", s.File, s.Line)}
	var names []string
	for _, k := range conf.Keys() {
		names = append(names, k.Name)
	}
	first := map[string]flbconf.Prop{}
	for _, p := range s.Props {
		key := strings.ToLower(p.Key)
		if fluentBitKey(key) {
			continue
		}
		if known := slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, key) }); known >= 0 {
			if prev, twice := first[key]; twice {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s is written again at %s; that value is ignored: the first, at %s, is in effect",
					names[known], p.Where(), prev.Where()))
			} else {
				first[key] = p
			}
			continue
		}
		near, ok := nearest(p.Key, names)
		if !ok {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s (%s) is not a key of this output and is ignored (docs/configuration.md lists every key)", p.Key, p.Where()))
			continue
		}
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s (%s) is not a key of this output and is ignored; did you mean %s?", p.Key, p.Where(), near))
		if _, written := s.Get(near); !written {
			r.hints = append(r.hints, fmt.Sprintf("the section has %s (%s): did you mean %s?", p.Key, p.Where(), near))
		}
	}
	return r
}

// fluentBitKey reports whether Fluent Bit itself takes a key of an output (lower case): these never reach
// the plugin (flb_output_set_property and configure_plugins_type, Fluent Bit 2.0 to 5.1), or belong to
// Fluent Bit's namespaces (tls., net., oauth2, http_server).
func fluentBitKey(key string) bool {
	switch key {
	case "name", "routes", "match", "match_regex", "alias", "log_level", "log_suppress_interval", "host", "port",
		"ipv6", "retry_limit", "workers", "storage.total_limit_size", "tls":
		return true
	}
	for _, prefix := range []string{"tls.", "net.", "oauth2", "http_server", "_debug.http."} {
		if strings.HasPrefix(key, prefix) {
			return true
		}
	}
	return false
}

// nearest returns the name key is most likely a misspelling or a variant of, if any: the closest in edit
// distance (ignoring case; a swap of two neighbouring letters counts as one edit) within 2 edits, or a
// quarter of key's length for longer keys; else the name with the most words that key has in a row
// (bucket_name and S3_Bucket: Bucket; sts_endpoint_url: STS_Endpoint). The first of a tie wins.
func nearest(key string, names []string) (string, bool) {
	limit := max(2, len(key)/4)
	best, bestDist := "", limit+1
	for _, n := range names {
		if d := distance(strings.ToLower(key), strings.ToLower(n)); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return best, true
	}
	have, most := words(key), 0
	for _, n := range names {
		if w := words(n); len(w) > most && containsRun(have, w) {
			best, most = n, len(w)
		}
	}
	return best, best != ""
}

// words splits a key into its lower-case words.
func words(key string) []string {
	return strings.FieldsFunc(strings.ToLower(key), func(r rune) bool { return r == '_' || r == '-' || r == '.' })
}

// containsRun reports whether run appears in list, in a row.
func containsRun(list, run []string) bool {
	for i := 0; i+len(run) <= len(list); i++ {
		if slices.Equal(list[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

// distance is the optimal string alignment distance of a and b, by bytes: insertions, deletions,
// substitutions and swaps of two neighbours.
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
