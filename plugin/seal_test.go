package plugin

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/vfs"
)

// TestDamagedRunIsKeptWhenTheDeadLetterWriteFails: a run of the log damaged on disk is left out of its batch
// and its bytes go to the dead-letter file (when the batch, found damaged as its object is composed from the
// log, is spilled to a batch file). When that write fails, the batch is not spilled and the log keeps the
// bytes; the next attempt keeps them. Before, the seal let the log go of the run whatever the write did: the
// bytes were lost.
func TestDamagedRunIsKeptWhenTheDeadLetterWriteFails(t *testing.T) {
	cfg := testConfig(t)
	fsys := vfs.NewFaults(vfs.OS)
	clk, fake := newFakeClock(), &fakeS3{}
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: fsys})
	if in.Flush(event("org-a", "damaged-1"), "audit.org") != OK {
		t.Fatal("the flush was refused")
	}
	segs, _ := filepath.Glob(filepath.Join(cfg.StoreDir, "wal", "*.seg"))
	var frame []byte
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, []byte("damaged-1")); i >= 0 {
			data[i] = 'D'
			if err := os.WriteFile(seg, data, 0o600); err != nil {
				t.Fatal(err)
			}
			frame = data
		}
	}
	if frame == nil {
		t.Fatal("the record is in no segment")
	}
	fsys.Only(func(op vfs.Op) bool {
		return op.Kind == vfs.OpWrite && strings.HasSuffix(op.Path, buffer.DeadLetterFile)
	})
	fsys.FailFrom(fsys.Ops()+1, vfs.EIO)
	in.sealDue()
	in.waitLog(t, regexp.MustCompile("will try again|cannot write")) // the attempt that could not write them
	fsys.Repair()
	in.clock.Advance(backoffCap) // the batch's next attempt spills it again
	in.waitLogged(t, "moved to "+in.store.DeadLetterPath())
	data, err := os.ReadFile(in.store.DeadLetterPath())
	if err != nil {
		t.Fatal(err)
	}
	var line deadLetterLine
	if err := json.Unmarshal(data, &line); err != nil || !bytes.Contains(line.Buffer, []byte("Damaged-1")) {
		t.Errorf("dead-letter file %q (%v); want the damaged run's bytes", data, err)
	}
}
