package backend

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Watched is a process, not necessarily a child of this one, watched through a pidfd: its pid cannot be reused
// while the pidfd is open, and the pidfd becomes readable when it ends.
type Watched struct {
	Pid int
	fd  int
}

// Watch opens a pidfd on pid.
func Watch(pid int) (*Watched, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return &Watched{Pid: pid, fd: fd}, nil
}

// Ended waits until the process ends, at most timeout, and reports whether it did.
func (w *Watched) Ended(timeout time.Duration) (bool, error) {
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}, int(timeout.Milliseconds()))
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll the pidfd of %d: %w", w.Pid, err)
		}
		return n > 0, nil
	}
}

// Kill sends SIGKILL to the process (to its pid only, even if reused: not possible while watched).
func (w *Watched) Kill() error { return unix.PidfdSendSignal(w.fd, unix.SIGKILL, nil, 0) }

// Close closes the pidfd.
func (w *Watched) Close() error { return unix.Close(w.fd) }
