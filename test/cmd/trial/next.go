package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// tryNext is one thing to try while the trial runs: what it shows, and the shell command, as printed.
type tryNext struct {
	what, command string
	follows       bool // runs until interrupted: not run by -once
}

// nextSteps are the commands the trial prints, each working as printed from the directory the trial runs in.
func nextSteps(t *trial) []tryNext {
	metrics := "http://" + t.metricsListen
	steps := []tryNext{
		{what: "each organisation's destination and its state", command: "curl -fsS " + metrics + "/destinations"},
		{what: "the Prometheus metrics", command: "curl -fsS " + metrics + "/metrics"},
		{what: "health (200 while every output takes records)", command: "curl -fsS " + metrics + "/healthz"},
		{what: "what Store_Dir holds per organisation and kind", command: shq(executable(t.cmd)) + " store inspect " + shq(display(t.storeDir))},
		{what: "the delivery ledger: every object delivered, where, with its SHA-256", command: shq(executable(t.cmd)) + " store ledger " + shq(display(t.storeDir))},
	}
	for _, c := range t.customers {
		verify := []string{shq(executable(t.cmd)), "verify", "--bucket", c.dest.Bucket}
		if c.KeyPrefix != "" {
			verify = append(verify, "--prefix", shq(c.KeyPrefix))
		}
		verify = append(verify, "--org", c.ID, "--public-key", shq(display(t.publicKey)), "--endpoint", t.moto.URL, "--allow-plain-http")
		steps = append(steps, tryNext{
			what:    c.Name + " verifies its delivery with its own read-only credentials and the digests' public key",
			command: strings.Join(append(c.reader, verify...), " "),
		})
	}
	steps = append(steps,
		tryNext{what: "send the sample events again (POST /<tag>, as Fluent Bit's http input takes them)",
			command: fmt.Sprintf("for kind in org user api; do curl -fsS -H 'Content-Type: application/json' --data-binary @%s http://127.0.0.1:%d/audit.$kind; done",
				shq(display(t.events))+"/audit.$kind.jsonl", t.intakePort)},
		tryNext{what: fmt.Sprintf("the plugin's log: its start, any warning or error as it happens, and every %s a status line "+
			"(records accepted, rejected, delivered; failed uploads; what waits), unless nothing happened", seconds(statusInterval)), command: "tail -f " + shq(display(t.logPath)), follows: true},
	)
	return steps
}

func printSteps(steps []tryNext) {
	for _, s := range steps {
		fmt.Printf("\n  # %s\n  %s\n", s.what, s.command)
	}
}

// runSteps is -once: each printed command runs as printed and must exit 0; the events the last one sent again
// must then arrive.
func runSteps(ctx context.Context, steps []tryNext, views []*bucketView, plugin *pluginProc, ids map[string][]string) error {
	step("-once: running each command")
	for _, s := range steps {
		if s.follows {
			fmt.Printf("\n(not run: %s follows until Ctrl-C)\n", s.command)
			continue
		}
		if err := runStep(ctx, s); err != nil {
			return err
		}
	}
	if err := waitDelivered(ctx, views, plugin, ids, 2); err != nil {
		return err
	}
	fmt.Println("\nthe events sent again are delivered too")
	return nil
}

// shownLines is how much of a command's output -once shows (/metrics has hundreds of lines).
const shownLines = 30

// runStep runs a printed command as a shell would, with its output indented, and fails unless it exits 0.
func runStep(ctx context.Context, s tryNext) error {
	fmt.Printf("\n$ %s\n", s.command)
	cmd := exec.CommandContext(ctx, "sh", "-c", s.command)
	out, err := cmd.CombinedOutput()
	lines := slices.Collect(strings.Lines(string(out)))
	for i, line := range lines {
		if i == shownLines && len(lines) > shownLines+5 {
			fmt.Printf("    ... %d lines more\n", len(lines)-shownLines)
			break
		}
		fmt.Print("    ", strings.TrimSuffix(line, "\n"), "\n")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.command, err)
	}
	fmt.Println("    (exit 0)")
	return nil
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// shq quotes a word for the shell when it needs it.
func shq(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// display is path relative to the working directory when it is below it, as the printed commands use it.
func display(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	wd, err := os.Getwd()
	if err != nil {
		return abs
	}
	if rel, err := filepath.Rel(wd, abs); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return abs
}

// executable is display(path) with a slash in it, so that the shell runs that file rather than one on PATH.
func executable(path string) string {
	if d := display(path); strings.Contains(d, "/") {
		return d
	}
	return "./" + display(path)
}
