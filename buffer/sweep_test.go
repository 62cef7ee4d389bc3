package buffer

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
)

// sweepRun is what one run of the sweep workload saw.
type sweepRun struct {
	acked     []string // records whose append succeeded
	delivered []string // records of batches read for upload before their removal
}

// sweepWorkload appends, seals, uploads (reads) and removes batches of two streams over two rounds, appends
// more, restarts the store and does one more round, going on past whatever fails as the plugin does: a failed append is not
// acknowledged, a batch that cannot be sealed is put back, one that cannot be read or removed stays. It
// returns the store still open, if any.
func sweepWorkload(o Options, run *sweepRun) *Store {
	s, _, err := Open("/store", o)
	if err != nil {
		return nil
	}
	appends := func(r int) {
		for i := range 3 {
			recs := []string{fmt.Sprintf("a/org:a%d.%d", r, i), fmt.Sprintf("b/api:b%d.%d", r, i)}
			if tryCommit(s, recs...) == nil {
				for _, rec := range recs {
					_, payload := parseRec(rec)
					run.acked = append(run.acked, payload)
				}
			}
		}
	}
	round := func(r int) {
		appends(r)
		s.Rotate(time.Time{})
		for _, sealed := range s.Seal(s.TakeClosed(), naming, joinLines) {
			if sealed.Err != nil {
				s.PutBack(sealed.Pending)
				continue
			}
			if sealed.Batch == nil {
				continue
			}
			f, err := sealed.Batch.OpenObject()
			if err != nil {
				continue
			}
			var body strings.Builder
			buf := make([]byte, 4096)
			for {
				n, err := f.Read(buf)
				body.Write(buf[:n])
				if err != nil {
					break
				}
			}
			f.Close()
			if int64(body.Len()) != sealed.Batch.ObjectBytes {
				continue
			}
			run.delivered = append(run.delivered, strings.Fields(body.String())...)
			s.Remove(sealed.Batch)
		}
	}
	round(0)
	round(1)
	appends(2)
	s.Close()
	if s, _, err = Open("/store", o); err != nil {
		return nil
	}
	round(3)
	return s
}

// TestEveryFaultPointKeepsAcknowledgedRecords runs the workload once clean to count its file operations T,
// then for every N in 1..T and every fault: operation N failing once (EIO; a write torn), every operation
// from N on failing (EIO, ENOSPC), and the power cut at N (the writes not synced then lost, a torn tail kept).
// The fault then goes, the store is opened again (from what the power cut left) and everything not delivered
// is sealed: every acknowledged record is delivered or there, and Open succeeds.
func TestEveryFaultPointKeepsAcknowledgedRecords(t *testing.T) {
	clean := vfs.NewFaults(vfs.NewMemFS())
	o := opts(60, &clock{t: t0})
	o.SegmentSize = 120
	o.FS = clean
	var run sweepRun
	if s := sweepWorkload(o, &run); s != nil {
		s.Close()
	}
	total := clean.Ops()
	if len(run.acked) != 24 || len(run.delivered) != 24 {
		t.Fatalf("the clean run acknowledged %d records and delivered %d, want 24 and 24", len(run.acked), len(run.delivered))
	}
	faults := []struct {
		name   string
		inject func(f *vfs.Faults, n int64)
	}{
		{"EIO once", func(f *vfs.Faults, n int64) { f.FailAt(n, vfs.EIO) }},
		{"torn write", func(f *vfs.Faults, n int64) { f.FailAt(n, vfs.ShortWrite) }},
		{"EIO from", func(f *vfs.Faults, n int64) { f.FailFrom(n, vfs.EIO) }},
		{"ENOSPC from", func(f *vfs.Faults, n int64) { f.FailFrom(n, vfs.ENOSPC) }},
		{"power cut", func(f *vfs.Faults, n int64) { f.PowerCut(n) }},
	}
	cases, duplicates := 0, 0
	for n := int64(1); n <= total; n++ {
		for _, fault := range faults {
			m := vfs.NewMemFS()
			f := vfs.NewFaults(m)
			fault.inject(f, n)
			o.FS = f
			var run sweepRun
			if s := sweepWorkload(o, &run); s != nil {
				s.Close()
			}
			f.Repair()
			if f.Cut() {
				o.FS = m.Crash(vfs.CrashOptions{TornTail: true})
			}
			s, rec, err := Open("/store", o)
			if err != nil {
				t.Errorf("%s at %d: Open after it: %v", fault.name, n, err)
				continue
			}
			there := everything(t, s, rec)
			s.Close()
			for _, r := range run.acked {
				if !slices.Contains(run.delivered, r) && !slices.Contains(there, r) {
					t.Errorf("%s at %d: acknowledged record %s lost", fault.name, n, r)
				}
			}
			all := append(run.delivered, there...)
			slices.Sort(all)
			duplicates += len(all) - len(slices.Compact(all))
			cases++
		}
	}
	t.Logf("%d operations, %d cases, %d records delivered twice in all", total, cases, duplicates)
}
