package plugin

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Test hooks, read from the environment by TestHooksFromEnv, which the cgo edge calls at Init: the one place
// that reads them. Never set them in production.
const (
	// FrozenKeyClockEnv, set to a unix millisecond, pins the clock choosing key milliseconds, so that tests can
	// force two processes onto the same keys.
	FrozenKeyClockEnv = "WIVAUDIT_TEST_FROZEN_KEY_MS"
	// CrashAtEnv, set to one of the store's crash points (buffer.Crash*), kills the process with SIGKILL the
	// first time it reaches that point, so that tests can prove recovery from it.
	CrashAtEnv = "WIVAUDIT_TEST_CRASH_AT"
)

// CrashAfterUpload is the crash point between S3's 200 for a batch and its entry in the delivery ledger.
const CrashAfterUpload = "after-upload"

// TestHooks are the test-only behaviours the environment asks for; the zero value has none.
type TestHooks struct {
	keyClock func() time.Time
	crash    func(point string)
}

// TestHooksFromEnv reads the test hooks from the environment.
func TestHooksFromEnv() (TestHooks, error) {
	var h TestHooks
	if v := os.Getenv(FrozenKeyClockEnv); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return h, fmt.Errorf("%s: %q is not a unix millisecond", FrozenKeyClockEnv, v)
		}
		h.keyClock = func() time.Time { return time.UnixMilli(ms) }
	}
	if at := os.Getenv(CrashAtEnv); at != "" {
		h.crash = func(point string) {
			if point == at {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	return h, nil
}
