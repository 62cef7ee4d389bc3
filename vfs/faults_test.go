package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"testing"
)

// faultStep is one counted operation of faultWorkload.
type faultStep struct {
	kind OpKind
	path string
	do   func(f *Faults, h File) error
}

// openFile opens a file for the test, closed when it ends.
func openFile(t *testing.T, fsys FS, name string, flag int) File {
	t.Helper()
	f, err := fsys.OpenFile(name, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func closeOpened(f File, err error) error {
	if err != nil {
		return err
	}
	return f.Close()
}

// faultWorkload has one step of each way to reach each kind of operation; the steps touch distinct names,
// so that one failing does not make another fail.
var faultWorkload = []faultStep{
	{OpCreate, "/c", func(f *Faults, _ File) error {
		return closeOpened(f.OpenFile("/c", os.O_RDWR|os.O_CREATE, 0o644))
	}},
	{OpOpen, "/s", func(f *Faults, _ File) error { return closeOpened(f.OpenFile("/s", os.O_RDONLY, 0)) }},
	{OpWrite, "/w", func(_ *Faults, h File) error {
		_, err := h.Write([]byte("abcd"))
		return err
	}},
	{OpWrite, "/w", func(_ *Faults, h File) error {
		_, err := h.WriteAt([]byte("WXYZ"), 2)
		return err
	}},
	{OpRead, "/w", func(_ *Faults, h File) error {
		_, err := h.ReadAt(make([]byte, 1), 0)
		return err
	}},
	{OpRead, "/w", func(_ *Faults, h File) error {
		if _, err := h.Seek(0, 0); err != nil {
			return err
		}
		_, err := h.Read(make([]byte, 1))
		return err
	}},
	{OpStat, "/w", func(_ *Faults, h File) error {
		_, err := h.Stat()
		return err
	}},
	{OpTruncate, "/w", func(_ *Faults, h File) error { return h.Truncate(5) }},
	{OpSync, "/w", func(_ *Faults, h File) error { return h.Sync() }},
	{OpDatasync, "/w", func(_ *Faults, h File) error { return h.Datasync() }},
	{OpSyncDir, "/d", func(f *Faults, _ File) error { return f.SyncDir("/d") }},
	{OpRename, "/r1", func(f *Faults, _ File) error { return f.Rename("/r1", "/r2") }},
	{OpLink, "/l1", func(f *Faults, _ File) error { return f.Link("/l1", "/l2") }},
	{OpRemove, "/rm", func(f *Faults, _ File) error { return f.Remove("/rm") }},
	{OpRemoveAll, "/ra", func(f *Faults, _ File) error { return f.RemoveAll("/ra") }},
	{OpMkdir, "/m", func(f *Faults, _ File) error { return f.Mkdir("/m", 0o755) }},
	{OpMkdir, "/m2/x", func(f *Faults, _ File) error { return f.MkdirAll("/m2/x", 0o755) }},
	{OpReadDir, "/d", func(f *Faults, _ File) error {
		_, err := f.ReadDir("/d")
		return err
	}},
	{OpStat, "/s", func(f *Faults, _ File) error {
		_, err := f.Stat("/s")
		return err
	}},
	{OpStat, "/s", func(f *Faults, _ File) error {
		_, err := f.Lstat("/s")
		return err
	}},
	{OpLock, "/lock", func(f *Faults, _ File) error { return closeOpened(f.Lock("/lock")) }},
}

// setupWorkload returns a MemFS ready for faultWorkload, a Faults over it and the handle of /w it opened
// through the Faults (operation 1).
func setupWorkload(t *testing.T) (*MemFS, *Faults, File) {
	t.Helper()
	m := NewMemFS()
	play(t, m, "mkdir /d; mkdir /ra; write /ra/x x; write /s s; write /r1 r; write /l1 l; write /rm rm; write /w w")
	f := NewFaults(m)
	return m, f, openFile(t, f, "/w", os.O_RDWR)
}

// runWorkload runs faultWorkload but its step skip (-1: none) and returns each step's error.
func runWorkload(f *Faults, h File, skip int) []error {
	errs := make([]error, len(faultWorkload))
	for i, step := range faultWorkload {
		if i != skip {
			errs[i] = step.do(f, h)
		}
	}
	return errs
}

func TestFaultsNumbersEveryOperation(t *testing.T) {
	_, f, h := setupWorkload(t)
	var ops []Op
	f.Hook(func(op Op) error {
		ops = append(ops, op)
		return nil
	})
	for i, err := range runWorkload(f, h, -1) {
		if err != nil {
			t.Errorf("step %d (%s): %v", i, faultWorkload[i].kind, err)
		}
	}
	if len(ops) != len(faultWorkload) {
		t.Fatalf("%d operations seen, want %d: %v", len(ops), len(faultWorkload), ops)
	}
	for i, op := range ops {
		want := Op{Index: int64(i + 2), Kind: faultWorkload[i].kind, Path: faultWorkload[i].path}
		if faultWorkload[i].kind == OpRename || faultWorkload[i].kind == OpLink {
			want.To = map[OpKind]string{OpRename: "/r2", OpLink: "/l2"}[op.Kind]
		}
		if op != want {
			t.Errorf("operation %d: %+v, want %+v", i+2, op, want)
		}
	}
	if got, want := f.Ops(), int64(len(faultWorkload)+1); got != want {
		t.Errorf("Ops() = %d, want %d", got, want)
	}
	if got, want := f.Count(OpWrite), int64(2); got != want {
		t.Errorf("Count(OpWrite) = %d, want %d", got, want)
	}
	want := "open=2 create=1 read=2 write=2 truncate=1 sync=1 datasync=1 syncdir=1 rename=1 link=1 remove=1 " +
		"removeall=1 mkdir=2 readdir=1 stat=3 lock=1"
	if got := f.Breakdown(); got != want {
		t.Errorf("Breakdown() = %q, want %q", got, want)
	}
}

// TestFaultsFailAt fails each operation of the workload in turn with each fault: that operation alone fails,
// with the fault's error, and leaves the inner FS as if it had not been called.
func TestFaultsFailAt(t *testing.T) {
	for _, fault := range []Fault{EIO, ENOSPC, EROFS, EDQUOT, ShortWrite} {
		for i, step := range faultWorkload {
			t.Run(fmt.Sprintf("%s/%d-%s", fault, i, step.kind), func(t *testing.T) {
				m, f, h := setupWorkload(t)
				f.FailAt(int64(i+2), fault)
				errs := runWorkload(f, h, -1)
				for j, err := range errs {
					if j != i && err != nil {
						t.Errorf("step %d (%s) failed too: %v", j, faultWorkload[j].kind, err)
					}
				}
				want := map[Fault]syscall.Errno{EIO: syscall.EIO, ENOSPC: syscall.ENOSPC, EROFS: syscall.EROFS,
					EDQUOT: syscall.EDQUOT, ShortWrite: syscall.EIO}[fault]
				shortWrite := fault == ShortWrite && step.kind == OpWrite
				if shortWrite {
					want = syscall.ENOSPC
				}
				checkFault(t, errs[i], step.kind.String(), step.path, want)

				skipped, fs, sh := setupWorkload(t)
				runWorkload(fs, sh, i)
				if shortWrite || step.kind == OpSync || step.kind == OpDatasync {
					return
				}
				if got, want := tree(t, m, "/"), tree(t, skipped, "/"); got != want {
					t.Errorf("the inner FS: %s\nwant, as without the step: %s", got, want)
				}
			})
		}
	}
}

func checkFault(t *testing.T, err error, op, path string, errno syscall.Errno) {
	t.Helper()
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != op || pe.Path != path || !errors.Is(err, errno) {
		t.Errorf("error %#v (%v), want a *fs.PathError %s %s with %v", err, err, op, path, errno)
	}
}

func TestFaultsShortWrite(t *testing.T) {
	m := NewMemFS()
	f := NewFaults(m)
	h := openFile(t, f, "/f", os.O_RDWR|os.O_CREATE)
	f.FailAt(2, ShortWrite)
	f.FailAt(3, ShortWrite)
	n, err := h.Write([]byte("abcde"))
	if n != 2 || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Write: %d, %v; want 2 and ENOSPC", n, err)
	}
	n, err = h.WriteAt([]byte("WXYZ"), 10)
	if n != 2 || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("WriteAt: %d, %v; want 2 and ENOSPC", n, err)
	}
	if _, err := h.Write([]byte("!")); err != nil {
		t.Errorf("the next Write: %v", err)
	}
	if got, want := tree(t, m, "/"), `/f="ab!\x00\x00\x00\x00\x00\x00\x00WX"`; got != want {
		t.Errorf("the file: %s, want %s", got, want)
	}
}

func TestFaultsFailFromUntilRepair(t *testing.T) {
	m := NewMemFS()
	f := NewFaults(m)
	f.FailFrom(2, EROFS)
	if err := f.Mkdir("/a", 0o755); err != nil {
		t.Fatalf("operation 1: %v", err)
	}
	for i := range 3 {
		err := f.Mkdir(fmt.Sprintf("/b%d", i), 0o755)
		checkFault(t, err, "mkdir", fmt.Sprintf("/b%d", i), syscall.EROFS)
	}
	f.Repair()
	if err := f.Mkdir("/c", 0o755); err != nil {
		t.Errorf("after Repair: %v", err)
	}
	if got, want := tree(t, m, "/"), "/a/ /c/"; got != want {
		t.Errorf("inner: %s, want %s", got, want)
	}
	if f.Ops() != 5 {
		t.Errorf("Ops() = %d, want 5", f.Ops())
	}
}

func TestFaultsRepairDropsFailAt(t *testing.T) {
	f := NewFaults(NewMemFS())
	f.FailAt(1, EIO)
	f.Repair()
	if err := f.Mkdir("/a", 0o755); err != nil {
		t.Errorf("after Repair: %v", err)
	}
}

func TestFaultsOnly(t *testing.T) {
	m := NewMemFS()
	f := NewFaults(m)
	f.Only(func(op Op) bool { return op.Kind == OpWrite && op.Path == "/seg" })
	f.FailFrom(1, ENOSPC)
	seg, err := f.OpenFile("/seg", os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("create, not a write: %v", err)
	}
	defer seg.Close()
	other := openFile(t, f, "/other", os.O_WRONLY|os.O_CREATE)
	if _, err := seg.Write([]byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("a write to /seg: %v, want ENOSPC", err)
	}
	if _, err := other.Write([]byte("y")); err != nil {
		t.Errorf("a write to /other: %v", err)
	}
	if err := seg.Sync(); err != nil {
		t.Errorf("a sync of /seg: %v", err)
	}
	f.FailAt(f.Ops()+1, EIO)
	if err := f.Mkdir("/d", 0o755); err != nil {
		t.Errorf("FailAt on an operation the filter leaves out: %v", err)
	}
	f.Only(nil)
	if err := f.Mkdir("/e", 0o755); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("without the filter: %v, want ENOSPC", err)
	}
}

func TestFaultsHook(t *testing.T) {
	m := NewMemFS()
	f := NewFaults(m)
	h := openFile(t, f, "/log", os.O_RDWR|os.O_CREATE|os.O_APPEND)
	play(t, m, "syncdir /")
	held, release := make(chan Op), make(chan struct{})
	f.Hook(func(op Op) error {
		if op.Kind == OpDatasync {
			held <- op
			<-release
		}
		return nil
	})
	h.Write([]byte("first "))
	done := make(chan error)
	go func() { done <- h.Datasync() }()
	op := <-held
	if op.Path != "/log" {
		t.Errorf("held %+v", op)
	}
	if _, err := h.Write([]byte("second")); err != nil {
		t.Fatalf("a write while the datasync is held: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the datasync released: %v", err)
	}
	if got, want := tree(t, m.Crash(CrashOptions{}), "/"), `/log="first second"`; got != want {
		t.Errorf("durable: %s, want %s (the datasync ran after the second write)", got, want)
	}

	own := errors.New("by the test's own logic")
	f.Hook(func(op Op) error {
		if op.Kind == OpWrite {
			return own
		}
		return nil
	})
	if _, err := h.Write([]byte("x")); err != own {
		t.Errorf("a write the hook fails: %v, want its error", err)
	}
	f.Hook(nil)
	if _, err := h.Write([]byte("x")); err != nil {
		t.Errorf("without the hook: %v", err)
	}
}

// TestFaultsFailedSyncLosesDirtyData: after a failed Datasync, a successful one does not make the bytes
// written before the failure durable (fsyncgate), whether the fault or the hook failed it, through Faults
// over Faults too.
func TestFaultsFailedSyncLosesDirtyData(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail func(f *Faults)
	}{
		{"fault", func(f *Faults) { f.FailAt(f.Ops()+1, EIO) }},
		{"short write", func(f *Faults) { f.FailAt(f.Ops()+1, ShortWrite) }},
		{"hook", func(f *Faults) {
			n := f.Ops() + 1
			f.Hook(func(op Op) error {
				if op.Index == n {
					return errors.New("refused")
				}
				return nil
			})
		}},
	} {
		for _, nested := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nested=%v", tt.name, nested), func(t *testing.T) {
				m := NewMemFS()
				f := NewFaults(m)
				fsys := FS(f)
				if nested {
					fsys = NewFaults(f)
				}
				h := openFile(t, fsys, "/f", os.O_WRONLY|os.O_CREATE|os.O_APPEND)
				if err := fsys.SyncDir("/"); err != nil {
					t.Fatal(err)
				}
				h.Write([]byte("abc"))
				tt.fail(f)
				if err := h.Datasync(); err == nil {
					t.Fatal("the datasync did not fail")
				}
				h.Write([]byte("def"))
				if err := h.Datasync(); err != nil {
					t.Fatal(err)
				}
				if got, want := tree(t, m.Crash(CrashOptions{}), "/"), `/f="\x00\x00\x00def"`; got != want {
					t.Errorf("durable: %s, want %s", got, want)
				}
				if got, want := tree(t, m, "/"), `/f="abcdef"`; got != want {
					t.Errorf("live: %s, want %s", got, want)
				}
			})
		}
	}
}

func TestFaultsOverOS(t *testing.T) {
	dir := t.TempDir()
	f := NewFaults(OS)
	h := openFile(t, f, dir+"/f", os.O_RDWR|os.O_CREATE)
	f.FailAt(f.Ops()+1, EIO)
	checkFault(t, h.Sync(), "sync", dir+"/f", syscall.EIO)
	f.FailAt(f.Ops()+1, ShortWrite)
	if n, err := h.Write([]byte("abcd")); n != 2 || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("short write: %d, %v", n, err)
	}
	if err := h.Datasync(); err != nil {
		t.Errorf("a datasync after: %v", err)
	}
	if data, err := os.ReadFile(dir + "/f"); string(data) != "ab" || err != nil {
		t.Errorf("the file: %q, %v; want ab", data, err)
	}
}

func TestFaultsPowerCut(t *testing.T) {
	m := NewMemFS()
	f := NewFaults(m)
	h := openFile(t, f, "/f", os.O_WRONLY|os.O_CREATE|os.O_APPEND)
	f.SyncDir("/")
	h.Write([]byte("durable "))
	h.Datasync()
	f.PowerCut(f.Ops() + 2)
	if _, err := h.Write([]byte("live ")); err != nil {
		t.Fatalf("the write before the cut: %v", err)
	}
	if f.Cut() {
		t.Fatal("Cut() before the cut operation")
	}
	for i, op := range []func() error{
		func() error { return h.Datasync() },
		func() error { _, err := h.Write([]byte("gone")); return err },
		func() error { return f.Mkdir("/d", 0o755) },
		func() error { return f.Remove("/f") },
		func() error { return closeOpened(f.OpenFile("/g", os.O_WRONLY|os.O_CREATE, 0o644)) },
	} {
		if err := op(); !errors.Is(err, ErrPowerCut) {
			t.Errorf("operation %d after the cut: %v, want ErrPowerCut", i, err)
		}
	}
	if !f.Cut() {
		t.Error("Cut() false after the cut")
	}
	f.Repair()
	if err := f.Mkdir("/d", 0o755); !errors.Is(err, ErrPowerCut) {
		t.Errorf("after Repair: %v, want ErrPowerCut", err)
	}
	if got, want := tree(t, m, "/"), `/f="durable live "`; got != want {
		t.Errorf("inner, live: %s, want %s", got, want)
	}
	if got, want := tree(t, m.Crash(CrashOptions{TornTail: true}), "/"), `/f="durable li"`; got != want {
		t.Errorf("what survives, torn: %s, want %s (a failed datasync at the cut drops nothing)", got, want)
	}
}

// TestFaultsPowerCutFailsAHeldOperation: an operation a hook held when the power went fails when released.
func TestFaultsPowerCutFailsAHeldOperation(t *testing.T) {
	m := NewMemFS()
	f := NewFaults(m)
	held, release := make(chan struct{}), make(chan struct{})
	f.Hook(func(op Op) error {
		if op.Path == "/held" {
			close(held)
			<-release
		}
		return nil
	})
	f.PowerCut(2)
	done := make(chan error)
	go func() { done <- f.Mkdir("/held", 0o755) }()
	<-held
	if err := f.Mkdir("/cut", 0o755); !errors.Is(err, ErrPowerCut) {
		t.Errorf("operation 2: %v, want ErrPowerCut", err)
	}
	close(release)
	if err := <-done; !errors.Is(err, ErrPowerCut) {
		t.Errorf("operation 1, released after the cut: %v, want ErrPowerCut", err)
	}
	if got := tree(t, m, "/"); got != "" {
		t.Errorf("inner: %s, want nothing", got)
	}
}

// TestConcurrent runs writers, syncs, folder syncs, crashes and rule changes at once (for go test -race):
// every operation is numbered once and what each writer acknowledged as synced survives a crash.
func TestConcurrent(t *testing.T) {
	m := NewMemFS()
	f := NewFaults(m)
	f.Only(func(op Op) bool { return op.Kind == OpRead })
	if err := f.Mkdir("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	const writers, appends = 4, 50
	var wg sync.WaitGroup
	var synced [writers]int
	for w := range writers {
		wg.Go(func() {
			name := fmt.Sprintf("/d/w%d", w)
			h, err := f.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				t.Error(err)
				return
			}
			defer h.Close()
			if err := f.SyncDir("/d"); err != nil {
				t.Error(err)
			}
			for i := range appends {
				if _, err := h.Write([]byte{byte('a' + w)}); err != nil {
					t.Error(err)
				}
				if i%5 == 4 {
					if err := h.Datasync(); err != nil {
						t.Error(err)
					}
					synced[w] = i + 1
				}
				h.ReadAt(make([]byte, 1), 0)
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			m.Crash(CrashOptions{TornTail: true})
			f.FailFrom(f.Ops()+10, EIO)
			f.Ops()
			f.Breakdown()
		}
		f.Repair()
	})
	wg.Wait()
	if err := f.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	c := m.Crash(CrashOptions{})
	for w := range writers {
		data, err := ReadFile(c, fmt.Sprintf("/d/w%d", w))
		if err != nil || len(data) != synced[w] {
			t.Errorf("writer %d: %d bytes durable (%v), want %d", w, len(data), err, synced[w])
		}
	}
	var sum int64
	for k := OpOpen; k < opKinds; k++ {
		sum += f.Count(k)
	}
	want := int64(1 + writers*(2+appends*2+appends/5) + 1)
	if f.Ops() != want || sum != want {
		t.Errorf("Ops() = %d, the counts add up to %d, want %d", f.Ops(), sum, want)
	}
}
