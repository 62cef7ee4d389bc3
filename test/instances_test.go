package test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestTwoInstances: two [OUTPUT] sections of the plugin side by side, each with its own context, store,
// routing and log level.
func TestTwoInstances(t *testing.T) {
	e := newEnv(t)
	events, cs := smallInput(t, 300)
	conf := e.configN("two.conf",
		map[string]string{"Match": "audit.org", "Workers": "", "Store_Dir": filepath.Join(e.dir, "store-a")},
		map[string]string{"Match": "audit.*", "Workers": "3", "Store_Dir": filepath.Join(e.dir, "store-b"),
			"Key_Prefix": "copy/", "Log_Level": "warn"})
	r := e.runToEnd(conf, e.input("input.chunks", cs))
	if r.ExitCode != 0 || r.Summary("error") != 0 || r.Summary("dropped") != 0 {
		t.Fatalf("host: exit %d, %v", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	orgEvents := 0
	for _, ev := range events {
		if ev.kind == "org" {
			orgEvents++
		}
	}
	plain, copied := map[string]bool{}, map[string]bool{}
	for key, recs := range e.delivered() {
		for _, raw := range recs {
			var h struct {
				ID   string `json:"id"`
				Kind string `json:"audit_kind"`
			}
			json.Unmarshal(raw, &h)
			if strings.HasPrefix(key, "copy/") {
				copied[h.ID] = true
			} else {
				plain[h.ID] = true
				if h.Kind != "org" {
					t.Errorf("instance 0 matches audit.org only, but delivered %s (%s)", h.ID, h.Kind)
				}
			}
		}
	}
	if len(plain) != orgEvents || len(copied) != len(events) {
		t.Errorf("instance 0 delivered %d (want %d), instance 1 delivered %d (want %d)", len(plain), orgEvents, len(copied), len(events))
	}
	if !strings.Contains(r.Stderr, "[ info] [output:wivaudit:wivaudit.0] delivering to") {
		t.Errorf("instance 0 (log_level info) did not log its start")
	}
	if strings.Contains(r.Stderr, "[ info] [output:wivaudit:wivaudit.1]") {
		t.Errorf("instance 1 (log_level warn) logged at info")
	}
}

// TestSharedStoreDirRefused: a second output pointed at the same Store_Dir fails Init and says why.
func TestSharedStoreDirRefused(t *testing.T) {
	e := newEnv(t)
	r := e.runToEnd(e.configN("shared.conf", map[string]string{}, map[string]string{}), "")
	if r.ExitCode == 0 || r.Count("init-failed wivaudit.1") != 1 {
		t.Fatalf("the second instance started: exit %d, %v", r.ExitCode, r.Stdout)
	}
	if !strings.Contains(r.Stderr, "is in use by another wivaudit instance (pid ") {
		t.Errorf("no reason given:\n%s", r.Stderr)
	}
}
