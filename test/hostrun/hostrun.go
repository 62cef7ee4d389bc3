// Package hostrun runs the Fluent Bit stand-in (test/host/flbhost.c) with the plugin as a separate process,
// the only way to load a c-shared Go library without two Go runtimes in one process.
package hostrun

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host names the built host and plugin.
type Host struct {
	Bin, Plugin string
	// LogFile, when set, collects the stderr of every run, so that a suite can check all its logs at the end.
	LogFile string
	// ABI, when set, is the Fluent Bit version whose registration struct the host uses: "4" (the default, a
	// 32-byte def) or "5.1.1" (48 bytes, with config_map).
	ABI string
}

// Proc is a running host.
type Proc struct {
	// Stdin feeds the host's input when it was started with input "-".
	Stdin   io.WriteCloser
	cmd     *exec.Cmd
	stderr  bytes.Buffer
	mu      sync.Mutex
	lines   []string
	update  chan struct{}
	done    chan struct{}
	logFile string
}

// Start runs the host with a config file and an input file ("" for none). With exitWhenDone the host stops
// as on SIGTERM once every chunk has been flushed.
func (h Host) Start(config, input string, env []string, exitWhenDone bool) (*Proc, error) {
	args := []string{"-p", h.Plugin, "-c", config}
	if input != "" {
		args = append(args, "-i", input)
	}
	if exitWhenDone {
		args = append(args, "-x")
	}
	if h.ABI != "" {
		args = append(args, "-a", h.ABI)
	}
	p := &Proc{cmd: exec.Command(h.Bin, args...), update: make(chan struct{}, 1), done: make(chan struct{}), logFile: h.LogFile}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr, update: p.update}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if input == "-" {
		if p.Stdin, err = p.cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.update <- struct{}{}:
			default:
			}
		}
		close(p.done)
	}()
	return p, nil
}

// lockedWriter collects stderr and tells WaitFor that there is something new to look at.
type lockedWriter struct {
	mu     *sync.Mutex
	w      *bytes.Buffer
	update chan struct{}
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	n, err := l.w.Write(b)
	l.mu.Unlock()
	select {
	case l.update <- struct{}{}:
	default:
	}
	return n, err
}

// Result is how a host run ended.
type Result struct {
	ExitCode int
	Stdout   []string
	Stderr   string
	// UserCPU and SysCPU are the CPU time of the host process (getrusage of the child), set by Wait.
	UserCPU, SysCPU time.Duration
}

// Count returns how many stdout lines start with prefix.
func (r *Result) Count(prefix string) int {
	n := 0
	for _, l := range r.Stdout {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// Summary returns the value of one field of the host's final summary line, or -1.
func (r *Result) Summary(field string) int {
	for _, l := range r.Stdout {
		if rest, ok := strings.CutPrefix(l, "summary "); ok {
			for _, kv := range strings.Fields(rest) {
				if k, v, _ := strings.Cut(kv, "="); k == field {
					var n int
					fmt.Sscan(v, &n)
					return n
				}
			}
		}
	}
	return -1
}

// Snapshot returns what the host printed so far.
func (p *Proc) Snapshot() *Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &Result{ExitCode: -1, Stdout: append([]string(nil), p.lines...), Stderr: p.stderr.String()}
}

// WaitFor waits until cond holds on what the host printed, or the host ends, or the timeout passes.
func (p *Proc) WaitFor(timeout time.Duration, cond func(*Result) bool) error {
	deadline := time.After(timeout)
	for {
		if cond(p.Snapshot()) {
			return nil
		}
		select {
		case <-p.update:
		case <-p.done:
			if cond(p.Snapshot()) {
				return nil
			}
			return fmt.Errorf("host ended before the condition held")
		case <-deadline:
			return fmt.Errorf("timed out after %s", timeout)
		}
	}
}

// Signal sends sig to the host.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the host to end, killing it after timeout.
func (p *Proc) Wait(timeout time.Duration) *Result {
	exited := make(chan struct{})
	go func() {
		<-p.done
		p.cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-exited
	}
	r := p.Snapshot()
	if p.logFile != "" {
		if f, err := os.OpenFile(p.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			f.WriteString(r.Stderr)
			f.Close()
		}
	}
	r.ExitCode = p.cmd.ProcessState.ExitCode()
	r.UserCPU, r.SysCPU = p.cmd.ProcessState.UserTime(), p.cmd.ProcessState.SystemTime()
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.ExitCode = 128 + int(ws.Signal())
	}
	return r
}
