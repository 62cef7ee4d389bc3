package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/plugin"
	"github.com/wiv/out_wivaudit/test/hostrun"
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
	for _, point := range []string{buffer.CrashAfterWrite, buffer.CrashMidSeal, buffer.CrashAfterBatchEntry,
		buffer.CrashAfterDelivery, buffer.CrashAfterObject, buffer.CrashAfterManifest, buffer.CrashDuringRecovery} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t)
			events, cs := smallInput(t, 300)
			settings := map[string]string{"Upload_Timeout": "1s", "Total_File_Size": "2K"}
			if point == buffer.CrashAfterDelivery {
				// One upload at a time: another's object stored in S3 before the ledger line (TestLedgerListsWhatTheBucketHolds)
				// would be met again as a 412 and delivered twice, the at-least-once case.
				settings["Upload_Workers"] = "1"
			}
			conf := e.config("crash.conf", settings)
			crashConf := conf
			if point == buffer.CrashAfterObject || point == buffer.CrashAfterManifest {
				// Only a batch that could not be delivered from the log is written to a batch file: S3 is not
				// there for the run that crashes.
				settings["Endpoint"] = "http://127.0.0.1:1"
				crashConf = e.config("spill.conf", settings)
			}
			var again []chunk
			if point == buffer.CrashDuringRecovery {
				// A first crash leaves a batch to recover and records to seal; the second start dies recovering them.
				again = e.crashRun(t, conf, cs, buffer.CrashAfterBatchEntry, "first.chunks")
				e.crashRun(t, conf, nil, point, "empty.chunks")
			} else {
				again = e.crashRun(t, crashConf, cs, point, "first.chunks")
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

// TestShutdownWithManyStreams: 990 streams are buffered (Upload_Timeout 1h) when the host stops. The plugin's
// exit ends within Shutdown_Timeout (+2 s to finish the seal round and uploads under way): what it could not
// seal or upload stays in the log, and the next start delivers every event. (Under 1,000 objects: moto's
// version listing fails past its first page.) An upload cut off by the deadline after S3 stored it is sent
// again under the next millisecond: the only duplicates allowed, one per 412 the restart meets.
func TestShutdownWithManyStreams(t *testing.T) {
	e := newEnv(t)
	orgList := make([]string, 330)
	for i := range orgList {
		orgList[i] = fmt.Sprintf("many-%04d", i)
	}
	rng := rand.New(rand.NewPCG(23, 24))
	events := genEventsFor(t, len(orgList)*len(kinds), rng, "ev-", orgList)
	cs := chunkEvents(events, rng, 200)
	const shutdown = time.Second
	conf := e.config("stop.conf", map[string]string{"Upload_Timeout": "1h", "Total_File_Size": "50M",
		"Shutdown_Timeout": shutdown.String(), "Upload_Workers": "16"})
	p := e.start(conf, e.input("input.chunks", cs), false)
	if err := p.WaitFor(2*time.Minute, func(r *hostrun.Result) bool { return r.Count("flush ") == len(cs) }); err != nil {
		t.Fatal(err)
	}
	stop := time.Now()
	p.Signal(syscall.SIGTERM)
	r := p.Wait(time.Minute)
	took := time.Since(stop)
	if r.ExitCode != 0 || r.Summary("ok") != len(cs) {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	// The host's own shutdown adds little: every flush was done when it was told to stop.
	if took > shutdown+2*time.Second+time.Second {
		t.Errorf("the host took %s to exit, Shutdown_Timeout is %s", took.Round(time.Millisecond), shutdown)
	}
	delivered := len(e.deliveredIDs())
	again := e.config("again.conf", map[string]string{"Upload_Timeout": "1s", "Shutdown_Timeout": "3m", "Upload_Workers": "16"})
	r = e.runToEnd(again, e.input("empty.chunks", nil))
	if r.ExitCode != 0 {
		t.Fatalf("restart: exit %d", r.ExitCode)
	}
	if dups, rekeyed := e.checkAll(events), strings.Count(r.Stderr, "already exists in S3"); dups > rekeyed {
		t.Errorf("%d events delivered twice, more than the %d batches whose upload was cut off at shutdown", dups, rekeyed)
	}
	t.Logf("exit %s after SIGTERM with %d streams buffered (Shutdown_Timeout %s); %d of %d events delivered before it, the rest by the next start",
		took.Round(time.Millisecond), len(orgList)*len(kinds), shutdown, delivered, len(events))
}
