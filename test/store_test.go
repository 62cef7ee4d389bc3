package test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/plugin"
)

// crashRun runs the host until the plugin kills itself at a crash point of its store, and returns which of
// the chunks were acknowledged.
func (e *env) crashRun(t *testing.T, conf string, cs []chunk, point, name string) []chunk {
	t.Helper()
	p := e.startEnv(conf, e.input(name, cs), true, plugin.CrashAtEnv+"="+point)
	r := p.Wait(2 * time.Minute)
	if r.ExitCode != 128+9 {
		t.Fatalf("the host did not die at %s (exit %d):\n%s", point, r.ExitCode, tail(r.Stderr, 10))
	}
	ok := acked(r)
	var again []chunk
	for i, c := range cs {
		if !ok[i] {
			again = append(again, c)
		}
	}
	t.Logf("killed at %s after %d of %d chunks were acknowledged", point, len(ok), len(cs))
	return again
}

// TestCrashPointsThroughThePlugin kills the plugin at each crash point of its store, restarts it on the same
// Store_Dir re-sending what was not acknowledged (as Fluent Bit does), and checks that Init never fails and
// every event is delivered, an acknowledged one exactly once. A chunk written but not yet acknowledged when the
// process died (another worker's flush) is recovered from the log and sent again by Fluent Bit: those events
// may arrive twice, the documented at-least-once case.
func TestCrashPointsThroughThePlugin(t *testing.T) {
	for _, point := range []string{buffer.CrashAfterWrite, buffer.CrashMidSeal, buffer.CrashAfterObject,
		buffer.CrashAfterManifest, buffer.CrashDuringRecovery} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t)
			events, cs := smallInput(t, 300)
			conf := e.config("crash.conf", map[string]string{"Upload_Timeout": "1s", "Total_File_Size": "2K"})
			var again []chunk
			if point == buffer.CrashDuringRecovery {
				// A first crash leaves a batch to recover and records to seal; the second start dies recovering them.
				again = e.crashRun(t, conf, cs, buffer.CrashAfterManifest, "first.chunks")
				e.crashRun(t, conf, nil, point, "empty.chunks")
			} else {
				again = e.crashRun(t, conf, cs, point, "first.chunks")
			}
			resent := map[string]bool{}
			for _, ev := range events {
				for _, c := range again {
					if bytes.Contains(c.data, []byte(ev.id)) {
						resent[ev.id] = true
					}
				}
			}
			r := e.runToEnd(conf, e.input("again.chunks", again))
			if r.ExitCode != 0 || r.Summary("ok") != len(again) {
				t.Fatalf("restart: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
			}
			e.checkAll(events)
			twice := 0
			for id, n := range e.deliveredIDs() {
				switch {
				case n > 1 && !resent[id]:
					t.Errorf("acknowledged event %s delivered %d times after a crash at %s", id, n, point)
				case n > 2:
					t.Errorf("re-sent event %s delivered %d times after a crash at %s", id, n, point)
				case n == 2:
					twice++
				}
			}
			t.Logf("%d events re-sent after the crash, %d of them delivered twice (written before the crash, not acknowledged)", len(resent), twice)
		})
	}
}

// TestLegacyStoreDirIsDelivered starts the plugin on a Store_Dir written by the layout before the write-ahead
// log (a fixture made by that version: a sealed batch, closed and open per-stream logs, a stream's last key
// millisecond) and finds every record of it in the bucket, once, under the fixture's organisations.
func TestLegacyStoreDirIsDelivered(t *testing.T) {
	e := newEnv(t)
	store := filepath.Join(e.dir, "store")
	if err := os.CopyFS(store, os.DirFS("../buffer/testdata/legacy-v1")); err != nil {
		t.Fatal(err)
	}
	conf := e.config("upgrade.conf", nil)
	r := e.runToEnd(conf, e.input("empty.chunks", nil))
	if r.ExitCode != 0 {
		t.Fatalf("host: exit %d", r.ExitCode)
	}
	var ids []string
	for key, recs := range e.delivered() {
		for _, raw := range recs {
			var rec struct{ ID, Org string }
			json.Unmarshal(raw, &rec)
			if !strings.HasPrefix(key, strings.Join(strings.Split(rec.ID, "-")[:2], "-")+"/") {
				t.Errorf("record %s is under %s", rec.ID, key)
			}
			ids = append(ids, rec.ID)
		}
	}
	slices.Sort(ids)
	want := []string{"org-a-org-0", "org-a-org-1", "org-a-org-2", "org-a-user-0", "org-a-user-1", "org-a-user-2",
		"org-b-api-0", "org-b-api-1", "org-b-api-2", "org-b-api-3", "org-c-user-0"}
	if !slices.Equal(ids, want) {
		t.Errorf("delivered %v, want %v", ids, want)
	}
	for _, gone := range []string{"logs", "state"} {
		if _, err := os.Stat(filepath.Join(store, gone)); err == nil {
			t.Errorf("the legacy folder %s is left", gone)
		}
	}
}
