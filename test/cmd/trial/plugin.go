package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/sample"
)

// runPlugin starts Fluent Bit, or the host with the trial's event intake, and waits until both take requests.
func runPlugin(ctx context.Context, o options, t *trial, conf string, env []string) (*pluginProc, error) {
	argv := []string{o.host, "-p", o.plugin, "-c", conf, "-i", "-"}
	in := "the test host (FLUENT_BIT=/path/to/fluent-bit runs it in Fluent Bit)"
	if o.fluentBit != "" {
		argv = []string{o.fluentBit, "-e", o.plugin, "-c", conf}
		in = "Fluent Bit " + o.fluentBit
	}
	step("Running the plugin in " + in)
	plugin, err := startPlugin(argv, env, t.logPath, o.fluentBit == "")
	if err != nil {
		return nil, err
	}
	if o.fluentBit == "" {
		if plugin.intake, err = serveIntake(t.intakePort, plugin); err != nil {
			plugin.stop(time.Minute)
			return nil, err
		}
	}
	fmt.Printf("%s (log: %s)\n", strings.Join(displayArgv(argv), " "), display(t.logPath))
	if err := waitReady(ctx, t, plugin); err != nil {
		plugin.stop(time.Minute)
		return nil, err
	}
	return plugin, nil
}

// pluginProc is the running Fluent Bit (or test host) with the plugin, in its own process group so that the
// terminal's Ctrl-C reaches the trial only, which stops the plugin first and moto last; it gets SIGTERM if the
// trial dies first (backend.StartChild).
type pluginProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // the host's input (nil in Fluent Bit)
	intake *http.Server   // the host's event intake (nil in Fluent Bit)
	mu     sync.Mutex     // one chunk at a time on stdin
	exited <-chan struct{}
	log    *os.File
}

func startPlugin(argv, env []string, logPath string, withStdin bool) (*pluginProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &pluginProc{cmd: exec.Command(argv[0], argv[1:]...), log: logf}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if withStdin {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			logf.Close()
			return nil, err
		}
	}
	if p.exited, err = backend.StartChild(p.cmd); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: %w", argv[0], err)
	}
	return p, nil
}

// stop asks the plugin's process to stop as Fluent Bit does on SIGTERM (flush, upload what it can within its
// Shutdown_Timeout) and waits for it; it is killed after timeout. It returns the exit code.
func (p *pluginProc) stop(timeout time.Duration) int {
	if p.intake != nil {
		p.intake.Close()
	}
	if p.stdin != nil {
		p.mu.Lock()
		p.stdin.Close()
		p.mu.Unlock()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	p.log.Close()
	return p.cmd.ProcessState.ExitCode()
}

// waitReady waits until the plugin serves /healthz and the event intake takes connections.
func waitReady(ctx context.Context, t *trial, plugin *pluginProc) error {
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + t.metricsListen + "/healthz")
		if err == nil {
			resp.Body.Close()
			var c net.Conn
			if c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", t.intakePort)); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the plugin is not up after a minute (%v): see %s", err, display(t.logPath))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-plugin.exited:
			return fmt.Errorf("the plugin's process ended (exit %d): see %s", plugin.cmd.ProcessState.ExitCode(), display(t.logPath))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serveIntake serves Fluent Bit's http input for the test host: POST /<tag> with JSON objects becomes one chunk
// with that tag on the host's input, answered 201 as Fluent Bit does.
func serveIntake(port int, p *pluginProc) (*http.Server, error) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, fmt.Errorf("the trial's event intake: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{tag}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		frames, _, err := sample.Frames(r.PathValue("tag"), body, 1<<20, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		_, err = p.stdin.Write(frames)
		p.mu.Unlock()
		if err != nil {
			http.Error(w, "the host does not take input: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "trial: event intake:", err)
		}
	}()
	return srv, nil
}

func displayArgv(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = shq(a)
		if strings.Contains(a, "/") {
			out[i] = shq(display(a))
		}
	}
	return out
}
