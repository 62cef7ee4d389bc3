package plugin

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/wiv/out_wivaudit/vfs"
)

// TestSpillOfDamagedBatchRacesWithDestinations: an uploader spills a batch in the log whose run is damaged, and
// Spill sets its Records and JSONBytes to what the batch file holds, while the batch is in flight; the
// destinations report (the metrics endpoint) reads them through queue.each at the same time. The race
// detector saw it in about one run of three (it needs a read between the pop and the spill). The report now
// reads the counts as the batch was queued.
func TestSpillOfDamagedBatchRacesWithDestinations(t *testing.T) {
	cfg := testConfig(t)
	mem := memDisk(t, cfg)
	clk, fake := newFakeClock(), &fakeS3{}
	in := startWith(t, cfg, "test", &testInstance{clock: clk, s3: fake, sink: &logSink{}}, deps{send: fake, clock: clk, fs: mem})
	in.stopSealer()
	<-in.sealerDone
	in.Flush(event("org-a", "intact"), "audit.org")
	in.Flush(event("org-a", "flipped"), "audit.org")
	es, _ := mem.ReadDir(filepath.Join(cfg.StoreDir, "wal"))
	for _, e := range es {
		p := filepath.Join(cfg.StoreDir, "wal", e.Name())
		data, _ := vfs.ReadFile(mem, p)
		if i := bytes.Index(data, []byte("flipped")); i >= 0 {
			f, _ := mem.OpenFile(p, os.O_WRONLY, 0)
			f.WriteAt([]byte("F"), int64(i))
			f.Close()
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				in.destinations()
			}
		}
	}()
	in.store.Rotate(clk.Now())
	in.sealClosed(clk.Now().Add(cfg.UploadTimeout))
	in.waitDelivered(t, 1)
	close(stop)
	<-done
}
