package backend

import (
	"os/exec"
	"runtime"
	"syscall"
)

// StartChild starts cmd in its own process group (so that the terminal's Ctrl-C reaches only its parent, which
// stops it in order) with SIGTERM as its parent-death signal, so that it is not left running, holding ports and
// the store's lock, when its parent dies without stopping it (SIGKILL, or a SIGPIPE when its output is gone).
// It returns a channel closed once cmd has ended and been waited for.
//
// Linux sends the parent-death signal when the thread that started the child ends, not the process: cmd is
// started and waited for on a goroutine locked to its thread, so that the thread lives as long as the child.
func StartChild(cmd *exec.Cmd) (<-chan struct{}, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// Never unlocked: the thread ends with this goroutine, after the child has ended.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}
