package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/record"
	"github.com/wiv/out_wivaudit/vfs"
)

// clock is a clock the test sets.
type clock struct{ t atomic.Pointer[time.Time] }

func at(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) now() time.Time  { return *c.t.Load() }
func (c *clock) set(t time.Time) { c.t.Store(&t) }

var t0 = time.UnixMilli(1769611845000)

func ledgerEntry(org string, n int) Entry {
	return Entry{Status: Delivered, Org: org, Kind: "org", Bucket: "bkt",
		Key: fmt.Sprintf("%s/org-audit-logs-%d.json.gz", org, 1769611845000+n), Bytes: 100 + int64(n),
		SHA256: strings.Repeat("ab", 32), Records: 3,
		First: record.EventRef{ID: json.RawMessage(`"e-1"`), CreatedAt: json.RawMessage(`1769611845`)},
		Last:  record.EventRef{ID: json.RawMessage(`7`), CreatedAt: json.RawMessage(`"2026-01-28T14:50:45Z"`)}}
}

func openLedger(t *testing.T, fsys vfs.FS, dir string, c *clock, opt Options) *Ledger {
	t.Helper()
	l, err := Open(fsys, dir, c.now, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func readAll(t *testing.T, dir string, f Filter) []Entry {
	t.Helper()
	var out []Entry
	for e, err := range Read(vfs.OS, dir, f) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func TestLedgerRecordsAndFilters(t *testing.T) {
	dir := t.TempDir()
	c := at(t0.In(time.FixedZone("X", 3600)))
	l := openLedger(t, vfs.OS, dir, c, Options{})
	if err := l.Record(ledgerEntry("Org-A", 1), ledgerEntry("org-b", 2)); err != nil {
		t.Fatal(err)
	}
	c.set(t0.Add(time.Hour))
	want := ledgerEntry("org-a", 3)
	want.VersionID = "v1"
	if err := l.Record(want); err != nil {
		t.Fatal(err)
	}

	all := readAll(t, dir, Filter{})
	if len(all) != 3 {
		t.Fatalf("read %d entries, want 3", len(all))
	}
	got := all[2]
	want.Time = t0.Add(time.Hour).UTC()
	if fmt.Sprint(got) != fmt.Sprint(want) || got.Time.Location() != time.UTC {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
	}
	line, _ := os.ReadFile(filepath.Join(dir, "0000000000000001.jsonl"))
	for _, s := range []string{`"time":"2026-01-28T14:50:45Z"`, `"first_event":{"id":"e-1","created_at":1769611845}`, `"last_event":{"id":7,"created_at":"2026-01-28T14:50:45Z"}`} {
		if !strings.Contains(string(line), s) {
			t.Errorf("the ledger line does not hold %s:\n%s", s, line)
		}
	}

	for _, tc := range []struct {
		f    Filter
		keys int
	}{
		{Filter{Org: "ORG-A"}, 2},
		{Filter{Org: "org-b"}, 1},
		{Filter{From: t0.Add(time.Hour)}, 1},
		{Filter{To: t0.Add(time.Hour)}, 2},
		{Filter{Org: "org-a", From: t0, To: t0.Add(time.Minute)}, 1},
		{Filter{Org: "org-c"}, 0},
	} {
		if n := len(readAll(t, dir, tc.f)); n != tc.keys {
			t.Errorf("%+v: %d entries, want %d", tc.f, n, tc.keys)
		}
	}
	n := 0
	for _, err := range l.Entries(Filter{Org: "org-a"}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("Entries read %d for org-a, want 2", n)
	}
}

func TestLedgerTornLine(t *testing.T) {
	dir := t.TempDir()
	c := at(t0)
	l := openLedger(t, vfs.OS, dir, c, Options{})
	if err := l.Record(ledgerEntry("a", 1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	seg := filepath.Join(dir, "0000000000000001.jsonl")
	f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"time":"2026-01-28T14:50:45Z","status":"deliv`)
	f.Close()
	if n := len(readAll(t, dir, Filter{})); n != 1 {
		t.Fatalf("read %d entries with a torn last line, want 1", n)
	}

	l = openLedger(t, vfs.OS, dir, c, Options{})
	if err := l.Record(ledgerEntry("a", 2)); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, dir, Filter{})
	if len(got) != 2 || got[1].Key != ledgerEntry("a", 2).Key {
		t.Fatalf("after reopening: %+v", got)
	}
	data, _ := os.ReadFile(seg)
	if strings.Contains(string(data), "deliv\n") || strings.Count(string(data), "\n") != 2 {
		t.Fatalf("the torn line was not cut off:\n%s", data)
	}
}

func TestLedgerDamagedLineIsReportedAndSkipped(t *testing.T) {
	dir := t.TempDir()
	c := at(t0)
	l := openLedger(t, vfs.OS, dir, c, Options{})
	l.Record(ledgerEntry("a", 1))
	f, _ := os.OpenFile(filepath.Join(dir, "0000000000000001.jsonl"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("not json\n")
	f.Close()
	l.Record(ledgerEntry("a", 2))
	var keys, errs int
	for _, err := range Read(vfs.OS, dir, Filter{}) {
		if err != nil {
			errs++
			if !strings.Contains(err.Error(), "line 2") {
				t.Errorf("error %v does not name line 2", err)
			}
			continue
		}
		keys++
	}
	if keys != 2 || errs != 1 {
		t.Fatalf("%d entries and %d errors, want 2 and 1", keys, errs)
	}
}

// fillLedger records entries from number from on, 16 per Record a second apart, until it has written at
// least n bytes. It returns the number after the last recorded.
func fillLedger(t *testing.T, l *Ledger, c *clock, from int, n int64) (next int, err error) {
	t.Helper()
	var written int64
	next = from
	for written < n {
		c.set(t0.Add(time.Duration(next) * time.Second))
		var batch []Entry
		for range 16 {
			e := ledgerEntry("a", next)
			data, _ := json.Marshal(e)
			written += int64(len(data) + 1)
			batch = append(batch, e)
			next++
		}
		if err = l.Record(batch...); err != nil {
			return next, err
		}
	}
	return next, nil
}

func TestLedgerLimit(t *testing.T) {
	const limit = 8 * minSeg
	dir := t.TempDir()
	c := at(t0)
	l := openLedger(t, vfs.OS, dir, c, Options{Limit: limit})
	n, err := fillLedger(t, l, c, 0, 3*limit)
	if err != nil {
		t.Fatal(err)
	}
	if u := l.Usage(); u > limit || u < limit-2*minSeg {
		t.Fatalf("the ledger weighs %d bytes, want at most the limit %d and near it", u, limit)
	}
	got := readAll(t, dir, Filter{})
	if got[len(got)-1].Key != ledgerEntry("a", n-1).Key {
		t.Fatal("the newest entry is gone")
	}
	if got[0].Key == ledgerEntry("a", 0).Key {
		t.Fatal("the oldest entry is still there")
	}
	for i := 1; i < len(got); i++ {
		if got[i].Bytes != got[i-1].Bytes+1 || got[i].Time.Before(got[i-1].Time) {
			t.Fatalf("entries %d and %d are not in order or one is missing in between", i-1, i)
		}
	}

	l.Close()
	l = openLedger(t, vfs.OS, dir, c, Options{Limit: limit})
	if u := l.Usage(); u > limit {
		t.Fatalf("reopened, the ledger weighs %d bytes", u)
	}
}

func TestLedgerKeepsUndigestedUpToTwiceTheLimit(t *testing.T) {
	const limit = 8 * minSeg
	dir := t.TempDir()
	c := at(t0)
	var mu sync.Mutex
	keepFrom := t0
	l := openLedger(t, vfs.OS, dir, c, Options{Limit: limit, KeepFrom: func() time.Time { mu.Lock(); defer mu.Unlock(); return keepFrom }})

	n, err := fillLedger(t, l, c, 0, 2*limit-2*minSeg)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, dir, Filter{}); len(got) != n {
		t.Fatalf("%d of %d undigested entries kept", len(got), n)
	}

	// A digest covers everything up to now: the ledger shrinks to its limit at the next Record.
	mu.Lock()
	keepFrom = c.now()
	mu.Unlock()
	c.set(c.now().Add(time.Second))
	if err := l.Record(ledgerEntry("a", n)); err != nil {
		t.Fatal(err)
	}
	if u := l.Usage(); u > limit {
		t.Fatalf("digested, the ledger weighs %d bytes, want at most %d", u, limit)
	}

	// Digests stall: past twice the limit, undigested segments go and Record says so.
	m, err := fillLedger(t, l, c, n+1, 3*limit)
	if !errors.Is(err, ErrOverflow) || !strings.Contains(err.Error(), "no digest lists yet") {
		t.Fatalf("after %d more entries: %v, want ErrOverflow", m-n-1, err)
	}
	if u := l.Usage(); u > 2*limit {
		t.Fatalf("the ledger weighs %d bytes, over twice the limit", u)
	}
}

func TestLedgerConcurrentRecordAndRead(t *testing.T) {
	dir := t.TempDir()
	c := at(t0)
	l := openLedger(t, vfs.OS, dir, c, Options{Limit: 8 * minSeg})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if err := l.Record(ledgerEntry(fmt.Sprint("w", w), i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			for _, err := range Read(vfs.OS, dir, Filter{}) {
				if err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	wg.Wait()
	<-done
	if n := len(readAll(t, dir, Filter{})); n != 800 {
		t.Fatalf("%d entries, want 800", n)
	}
}

// BenchmarkRecordParallel: upload workers recording one object each at once, on the disk of b.TempDir().
func BenchmarkRecordParallel(b *testing.B) {
	l, err := Open(vfs.OS, b.TempDir(), time.Now, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetParallelism(4) // 4 goroutines a CPU: more workers than cores, as Upload_Workers allows
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Record(ledgerEntry("a", int(n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
