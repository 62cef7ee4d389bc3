package plugin

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/test/chunks"
)

// nullSender takes every upload and keeps nothing: what delivery costs besides S3's client.
type nullSender struct{}

func (nullSender) Put(context.Context, conf.Destination, *buffer.Batch, []byte, string) (string, error) {
	return "", nil
}
func (nullSender) PutDigest(context.Context, conf.Destination, string, []byte, string, string) error {
	return nil
}
func (nullSender) MayReassume(conf.Destination, time.Time) bool { return false }
func (nullSender) Reassume(conf.Destination, time.Time) bool    { return false }

// BenchmarkDeliverSmallObjects is the plugin's own work per delivered object, S3's client aside: each op
// flushes a chunk of 3,000 events over 1,000 organisations, seals the 1,000 batches and delivers them (compose
// from the log, ledger line, release). It reports the process's CPU per object, user and system apart.
func BenchmarkDeliverSmallObjects(b *testing.B) {
	const orgs = 1000
	chunk := chunks.AuditChunk(3*orgs, orgs)
	cfg := testConfig(&testing.T{})
	cfg.StoreDir = b.TempDir()
	cfg.TotalFileSize = 1 << 30
	cfg.UploadTimeout = time.Hour
	in, err := start(cfg, "bench", func(Level, string) {}, deps{send: nullSender{}, clock: realClock{}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	var user, sys time.Duration
	objects := 0
	for b.Loop() {
		if in.Flush(chunk, "audit.user") != OK {
			b.Fatal("flush failed")
		}
		u0, s0 := processCPU()
		in.store.Rotate(time.Time{})
		in.sealClosed(time.Time{})
		if !in.queue.drain(time.After(time.Minute)) {
			b.Fatal("not delivered within a minute")
		}
		u1, s1 := processCPU()
		user, sys = user+u1-u0, sys+s1-s0
		objects += orgs
	}
	b.ReportMetric(float64(user.Microseconds())/float64(objects), "user-us/object")
	b.ReportMetric(float64(sys.Microseconds())/float64(objects), "sys-us/object")
}

// processCPU is the process's user and system CPU time (getrusage RUSAGE_SELF).
func processCPU() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
