package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// play runs a script of file operations, one per line or separated by ";":
//
//	mkdir P | write P DATA (appends, creating P) | writeat P OFF DATA | truncate P SIZE | sync P | datasync P
//	dropdirty P (what a failed sync does) | syncdir P | opensync P (Sync on P opened with OpenFile)
//	rename A B | link A B | remove P | removeall P
func play(t *testing.T, fsys FS, script string) {
	t.Helper()
	for _, line := range strings.FieldsFunc(script, func(r rune) bool { return r == ';' || r == '\n' }) {
		args := strings.Fields(line)
		if len(args) == 0 {
			continue
		}
		if err := playOne(fsys, args); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
}

func playOne(fsys FS, args []string) error {
	onFile := func(flag int, do func(File) error) error {
		f, err := fsys.OpenFile(args[1], flag, 0o644)
		if err != nil {
			return err
		}
		return errors.Join(do(f), f.Close())
	}
	switch args[0] {
	case "mkdir":
		return fsys.Mkdir(args[1], 0o755)
	case "write":
		return onFile(os.O_WRONLY|os.O_CREATE|os.O_APPEND, func(f File) error {
			_, err := f.Write([]byte(args[2]))
			return err
		})
	case "writeat":
		off, _ := strconv.ParseInt(args[2], 10, 64)
		return onFile(os.O_WRONLY, func(f File) error {
			_, err := f.WriteAt([]byte(args[3]), off)
			return err
		})
	case "truncate":
		size, _ := strconv.ParseInt(args[2], 10, 64)
		return onFile(os.O_WRONLY, func(f File) error { return f.Truncate(size) })
	case "sync", "opensync":
		return onFile(os.O_RDONLY, File.Sync)
	case "datasync":
		return onFile(os.O_RDONLY, File.Datasync)
	case "dropdirty":
		return onFile(os.O_RDONLY, func(f File) error {
			f.(DirtyDropper).DropDirty()
			return nil
		})
	case "syncdir":
		return fsys.SyncDir(args[1])
	case "rename":
		return fsys.Rename(args[1], args[2])
	case "link":
		return fsys.Link(args[1], args[2])
	case "remove":
		return fsys.Remove(args[1])
	case "removeall":
		return fsys.RemoveAll(args[1])
	}
	return fmt.Errorf("unknown step %q", args[0])
}

// tree lists everything below dir: folders as "path/", files as path=%q of their data.
func tree(t *testing.T, fsys FS, dir string) string {
	t.Helper()
	var out []string
	var walk func(dir string)
	walk = func(dir string) {
		list, err := fsys.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			name := path.Join(dir, e.Name())
			if e.IsDir() {
				out = append(out, name+"/")
				walk(name)
				continue
			}
			data, err := ReadFile(fsys, name)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s=%q", name, data))
		}
	}
	walk(dir)
	return strings.Join(out, " ")
}

func TestCrash(t *testing.T) {
	const durableF = "write /f abc; sync /f; syncdir /; "
	tests := []struct {
		name   string
		script string
		torn   bool
		want   string
	}{
		{"created, folder not synced: gone", "write /f abc", false, ``},
		{"data synced, folder not synced: gone", "write /f abc; sync /f", false, ``},
		{"folder synced, data not: there, empty", "write /f abc; syncdir /", false, `/f=""`},
		{"data and folder synced", durableF, false, `/f="abc"`},
		{"datasync makes data durable", "write /f abc; datasync /f; syncdir /", false, `/f="abc"`},
		{"Sync on a folder opened is a SyncDir", "write /f abc; opensync /", false, `/f=""`},
		{"append not synced: lost", durableF + "write /f defg", false, `/f="abc"`},
		{"append synced", durableF + "write /f defg; datasync /f", false, `/f="abcdefg"`},
		{"torn tail keeps half", durableF + "write /f defgh", true, `/f="abcde"`},
		{"torn tail of a file never synced", "write /f abcde; syncdir /", true, `/f="ab"`},
		{"torn tail of one byte keeps none", durableF + "write /f d", true, `/f="abc"`},
		{"torn tail needs no sync to lose an overwrite", durableF + "writeat /f 0 X; write /f defg", true,
			`/f="abcde"`},
		{"rename, folder not synced: reverts", durableF + "rename /f /g", false, `/f="abc"`},
		{"rename, folder synced", durableF + "rename /f /g; syncdir /", false, `/g="abc"`},
		{"rename replacing, folder not synced: both as before",
			durableF + "write /t new; sync /t; syncdir /; rename /t /f", false, `/f="abc" /t="new"`},
		{"rename replacing, folder synced",
			durableF + "write /t new; sync /t; syncdir /; rename /t /f; syncdir /", false, `/f="new"`},
		{"rename across folders, only the target synced: both names",
			"mkdir /a; mkdir /b; syncdir /; write /a/f x; sync /a/f; syncdir /a; rename /a/f /b/f; syncdir /b",
			false, `/a/ /a/f="x" /b/ /b/f="x"`},
		{"link, folder not synced: one name", durableF + "link /f /g", false, `/f="abc"`},
		{"link, folder synced: two names", durableF + "link /f /g; syncdir /", false, `/f="abc" /g="abc"`},
		{"unlink, folder not synced: still there", durableF + "remove /f", false, `/f="abc"`},
		{"unlink, folder synced: gone", durableF + "remove /f; syncdir /", false, ``},
		{"folder synced, its new folder not: empty", "mkdir /a; syncdir /; write /a/f x; sync /a/f", false,
			`/a/`},
		{"nested folder whose parent was not synced: gone",
			"mkdir /a; mkdir /a/b; write /a/b/f x; sync /a/b/f; syncdir /a/b; syncdir /a", false, ``},
		{"nested folders all synced",
			"mkdir /a; mkdir /a/b; write /a/b/f x; sync /a/b/f; syncdir /a/b; syncdir /a; syncdir /", false,
			`/a/ /a/b/ /a/b/f="x"`},
		{"folder removed, parent not synced: back with its durable names",
			"mkdir /a; write /a/f x; sync /a/f; syncdir /a; syncdir /; removeall /a", false, `/a/ /a/f="x"`},
		{"a folder two durable names reach appears once",
			"mkdir /a; mkdir /b; syncdir /; rename /b /a/b; syncdir /a; rename /a/b /b; rename /a /b/a; syncdir /b",
			false, `/a/ /a/b/`},
		{"truncate not synced: reverts", durableF + "truncate /f 1", false, `/f="abc"`},
		{"truncate synced", durableF + "truncate /f 1; sync /f", false, `/f="a"`},
		{"truncate then a write past the end: zeros between", durableF + "truncate /f 1; writeat /f 4 Z; sync /f",
			false, `/f="a\x00\x00\x00Z"`},
		{"write past the end: zeros between", durableF + "writeat /f 5 Z; sync /f", false,
			`/f="abc\x00\x00Z"`},
		{"failed sync, then a successful one: the earlier append never durable",
			durableF + "write /f def; dropdirty /f; write /f ghi; datasync /f", false, `/f="abc\x00\x00\x00ghi"`},
		{"failed sync, then a successful one: an earlier overwrite keeps the old bytes",
			"write /f abcdef; sync /f; syncdir /; writeat /f 0 XY; dropdirty /f; writeat /f 4 ZZ; sync /f", false,
			`/f="abcdZZ"`},
		{"failed sync, then a rewrite of the same bytes: durable",
			durableF + "writeat /f 0 X; dropdirty /f; writeat /f 0 Y; sync /f", false, `/f="Ybc"`},
		{"torn tail: dropped bytes are zeros", durableF + "write /f def; dropdirty /f; write /f gh", true,
			`/f="abc\x00\x00"`},
		{"torn tail: all of it dropped", durableF + "write /f defg; dropdirty /f", true, `/f="abc"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemFS()
			play(t, m, tt.script)
			if got := tree(t, m.Crash(CrashOptions{TornTail: tt.torn}), "/"); got != tt.want {
				t.Errorf("after the crash: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestCrashIsACopy(t *testing.T) {
	m := NewMemFS()
	play(t, m, "mkdir /a; write /a/f abc; sync /a/f; link /a/f /a/g; syncdir /a; syncdir /")
	lock, err := m.Lock("/a/lock")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	c := m.Crash(CrashOptions{})
	play(t, m, "write /a/f MORE; sync /a/f; remove /a/g; syncdir /a")
	play(t, c, "write /a/g xyz")
	if got, want := tree(t, c, "/"), `/a/ /a/f="abcxyz" /a/g="abcxyz"`; got != want {
		t.Errorf("the crashed MemFS: %s, want %s (its hard link shares the file)", got, want)
	}
	if got, want := tree(t, m, "/"), `/a/ /a/f="abcMORE" /a/lock=""`; got != want {
		t.Errorf("the original: %s, want %s", got, want)
	}
	fi, err := c.Stat("/a/f")
	if err != nil {
		t.Fatal(err)
	}
	if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 2 {
		t.Errorf("Nlink after the crash = %d, want 2", n)
	}
	if _, err := c.Stat("/a/lock"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the lock file, created in a folder not synced since: %v, want not exist", err)
	}
	relock, err := c.Lock("/a/f")
	if err != nil {
		t.Fatalf("Lock after the crash: %v", err)
	}
	relock.Close()
}

func TestCrashCarriesNoLock(t *testing.T) {
	m := NewMemFS()
	lock, err := m.Lock("/lock")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	play(t, m, "syncdir /")
	relock, err := m.Crash(CrashOptions{}).Lock("/lock")
	if err != nil {
		t.Fatalf("Lock after the crash: %v", err)
	}
	relock.Close()
}

// posixRun runs the POSIX script on one FS under base.
type posixRun struct {
	fs    FS
	base  string
	files map[string]File
}

func (r *posixRun) p(name string) string { return r.base + "/" + name }

// e describes an error: its text with base as $, its type and the classes it belongs to.
func (r *posixRun) e(err error) string {
	if err == nil {
		return "ok"
	}
	s := fmt.Sprintf("%T %s", err, strings.ReplaceAll(err.Error(), r.base, "$"))
	for _, c := range []error{fs.ErrExist, fs.ErrNotExist, fs.ErrClosed, ErrLocked, io.EOF} {
		if errors.Is(err, c) {
			s += " [" + c.Error() + "]"
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s += fmt.Sprintf(" [errno %d]", int(errno))
	}
	return s
}

func (r *posixRun) open(label, name string, flag int) string {
	f, err := r.fs.OpenFile(r.p(name), flag, 0o644)
	if err == nil {
		r.files[label] = f
	}
	return r.e(err)
}

func (r *posixRun) n(n int, err error) string { return fmt.Sprintf("n=%d %s", n, r.e(err)) }

func (r *posixRun) n64(n int64, err error) string { return fmt.Sprintf("n=%d %s", n, r.e(err)) }

func (r *posixRun) readAt(label string, size int, off int64) string {
	b := make([]byte, size)
	n, err := r.files[label].ReadAt(b, off)
	return fmt.Sprintf("%q %s", b[:n], r.e(err))
}

func (r *posixRun) read(label string, size int) string {
	b := make([]byte, size)
	n, err := r.files[label].Read(b)
	return fmt.Sprintf("%q %s", b[:n], r.e(err))
}

func (r *posixRun) info(fi fs.FileInfo, err error) string {
	if err != nil {
		return r.e(err)
	}
	s := fmt.Sprintf("name=%s dir=%v regular=%v", fi.Name(), fi.IsDir(), fi.Mode().IsRegular())
	if !fi.IsDir() {
		st := fi.Sys().(*syscall.Stat_t)
		s += fmt.Sprintf(" size=%d nlink=%d sys.size=%d", fi.Size(), st.Nlink, st.Size)
	}
	return s
}

func (r *posixRun) stat(name string) string { return r.info(r.fs.Stat(r.p(name))) }

func (r *posixRun) readDir(name string) string {
	list, err := r.fs.ReadDir(r.p(name))
	if err != nil {
		return r.e(err)
	}
	var s []string
	for _, e := range list {
		s = append(s, fmt.Sprintf("%s:%v", e.Name(), e.IsDir()))
	}
	return strings.Join(s, " ")
}

func (r *posixRun) content(name string) string {
	b, err := ReadFile(r.fs, r.p(name))
	return fmt.Sprintf("%q %s", b, r.e(err))
}

// posixScript is run on vfs.OS in a temporary folder and on a MemFS: each step must give the same result.
var posixScript = []struct {
	name string
	do   func(r *posixRun) string
}{
	{"Mkdir", func(r *posixRun) string { return r.e(r.fs.Mkdir(r.p("d"), 0o755)) }},
	{"Mkdir existing", func(r *posixRun) string { return r.e(r.fs.Mkdir(r.p("d"), 0o755)) }},
	{"Mkdir without parent", func(r *posixRun) string { return r.e(r.fs.Mkdir(r.p("x/y"), 0o755)) }},
	{"MkdirAll", func(r *posixRun) string { return r.e(r.fs.MkdirAll(r.p("d/e/f"), 0o755)) }},
	{"MkdirAll existing", func(r *posixRun) string { return r.e(r.fs.MkdirAll(r.p("d/e/f"), 0o755)) }},
	{"create exclusive", func(r *posixRun) string { return r.open("a", "d/a", os.O_RDWR|os.O_CREATE|os.O_EXCL) }},
	{"create exclusive existing", func(r *posixRun) string {
		return r.open("x", "d/a", os.O_RDWR|os.O_CREATE|os.O_EXCL)
	}},
	{"Write", func(r *posixRun) string { return r.n(r.files["a"].Write([]byte("hello"))) }},
	{"WriteAt past the end", func(r *posixRun) string { return r.n(r.files["a"].WriteAt([]byte("XY"), 10)) }},
	{"ReadAt all", func(r *posixRun) string { return r.readAt("a", 20, 0) }},
	{"ReadAt past the end", func(r *posixRun) string { return r.readAt("a", 4, 100) }},
	{"ReadAt nothing past the end", func(r *posixRun) string { return r.readAt("a", 0, 100) }},
	{"ReadAt negative", func(r *posixRun) string { return r.readAt("a", 4, -1) }},
	{"Seek current", func(r *posixRun) string { return r.n64(r.files["a"].Seek(0, io.SeekCurrent)) }},
	{"Seek negative", func(r *posixRun) string { return r.n64(r.files["a"].Seek(-1, io.SeekStart)) }},
	{"Seek bad whence", func(r *posixRun) string { return r.n64(r.files["a"].Seek(0, 7)) }},
	{"Seek end", func(r *posixRun) string { return r.n64(r.files["a"].Seek(-2, io.SeekEnd)) }},
	{"Read to the end", func(r *posixRun) string { return r.read("a", 10) }},
	{"Read at the end", func(r *posixRun) string { return r.read("a", 10) }},
	{"Read nothing", func(r *posixRun) string { return r.read("a", 0) }},
	{"Seek past the end", func(r *posixRun) string { return r.n64(r.files["a"].Seek(20, io.SeekStart)) }},
	{"Write past the end", func(r *posixRun) string { return r.n(r.files["a"].Write([]byte("!"))) }},
	{"Seek and Read", func(r *posixRun) string {
		r.files["a"].Seek(1, io.SeekStart)
		return r.read("a", 3)
	}},
	{"Stat", func(r *posixRun) string { return r.stat("d/a") }},
	{"Truncate shorter", func(r *posixRun) string { return r.e(r.files["a"].Truncate(3)) }},
	{"Truncate longer", func(r *posixRun) string { return r.e(r.files["a"].Truncate(6)) }},
	{"after Truncate", func(r *posixRun) string { return r.readAt("a", 20, 0) }},
	{"Truncate negative", func(r *posixRun) string { return r.e(r.files["a"].Truncate(-1)) }},
	{"File.Stat", func(r *posixRun) string { return r.info(r.files["a"].Stat()) }},
	{"Sync", func(r *posixRun) string { return r.e(r.files["a"].Sync()) }},
	{"Datasync", func(r *posixRun) string { return r.e(r.files["a"].Datasync()) }},
	{"open append", func(r *posixRun) string { return r.open("ap", "d/a", os.O_WRONLY|os.O_APPEND) }},
	{"append", func(r *posixRun) string {
		r.files["ap"].Seek(0, io.SeekStart)
		return r.n(r.files["ap"].Write([]byte("++")))
	}},
	{"append goes to the end", func(r *posixRun) string { return r.content("d/a") }},
	{"WriteAt on append", func(r *posixRun) string { return r.n(r.files["ap"].WriteAt([]byte("x"), 0)) }},
	{"Read write-only", func(r *posixRun) string { return r.read("ap", 4) }},
	{"ReadAt write-only", func(r *posixRun) string { return r.readAt("ap", 4, 0) }},
	{"Read nothing write-only", func(r *posixRun) string { return r.read("ap", 0) }},
	{"open read-only", func(r *posixRun) string { return r.open("ro", "d/a", os.O_RDONLY) }},
	{"Write read-only", func(r *posixRun) string { return r.n(r.files["ro"].Write([]byte("x"))) }},
	{"Write nothing read-only", func(r *posixRun) string { return r.n(r.files["ro"].Write(nil)) }},
	{"WriteAt read-only", func(r *posixRun) string { return r.n(r.files["ro"].WriteAt([]byte("x"), 0)) }},
	{"WriteAt nothing read-only", func(r *posixRun) string { return r.n(r.files["ro"].WriteAt(nil, 0)) }},
	{"Truncate read-only", func(r *posixRun) string { return r.e(r.files["ro"].Truncate(1)) }},
	{"Sync read-only", func(r *posixRun) string { return r.e(r.files["ro"].Sync()) }},
	{"open truncating", func(r *posixRun) string { return r.open("tr", "d/t", os.O_RDWR|os.O_CREATE|os.O_TRUNC) }},
	{"write it", func(r *posixRun) string { return r.n(r.files["tr"].Write([]byte("12345"))) }},
	{"open it truncating", func(r *posixRun) string { return r.open("tr2", "d/t", os.O_WRONLY|os.O_TRUNC) }},
	{"truncated", func(r *posixRun) string { return r.stat("d/t") }},
	{"the first handle's offset stays", func(r *posixRun) string { return r.n(r.files["tr"].Write([]byte("6"))) }},
	{"a hole", func(r *posixRun) string { return r.content("d/t") }},
	{"open missing", func(r *posixRun) string { return r.open("x", "nope", os.O_RDONLY) }},
	{"open below a file", func(r *posixRun) string { return r.open("x", "d/a/x", os.O_RDONLY) }},
	{"open a file with a slash", func(r *posixRun) string { return r.open("x", "d/a/", os.O_RDONLY) }},
	{"create with a slash", func(r *posixRun) string { return r.open("x", "d/new/", os.O_RDWR|os.O_CREATE) }},
	{"create below a missing folder", func(r *posixRun) string { return r.open("x", "n/f", os.O_RDWR|os.O_CREATE) }},
	{"open a folder to write", func(r *posixRun) string { return r.open("x", "d", os.O_RDWR) }},
	{"open a folder creating", func(r *posixRun) string { return r.open("x", "d", os.O_RDONLY|os.O_CREATE) }},
	{"open a folder truncating", func(r *posixRun) string { return r.open("x", "d", os.O_RDONLY|os.O_TRUNC) }},
	{"open a folder", func(r *posixRun) string { return r.open("dh", "d", os.O_RDONLY) }},
	{"Read a folder", func(r *posixRun) string { return r.read("dh", 4) }},
	{"Sync a folder", func(r *posixRun) string { return r.e(r.files["dh"].Sync()) }},
	{"Stat a folder", func(r *posixRun) string { return r.info(r.files["dh"].Stat()) }},
	{"Link", func(r *posixRun) string { return r.e(r.fs.Link(r.p("d/a"), r.p("d/b"))) }},
	{"linked", func(r *posixRun) string { return r.stat("d/b") }},
	{"write through one name", func(r *posixRun) string { return r.n(r.files["ap"].Write([]byte("L"))) }},
	{"read through the other", func(r *posixRun) string { return r.content("d/b") }},
	{"Link to an existing name", func(r *posixRun) string { return r.e(r.fs.Link(r.p("d/a"), r.p("d/b"))) }},
	{"Link a folder", func(r *posixRun) string { return r.e(r.fs.Link(r.p("d/e"), r.p("d/g"))) }},
	{"Link a folder to an existing name", func(r *posixRun) string {
		return r.e(r.fs.Link(r.p("d/e"), r.p("d/a")))
	}},
	{"Link missing", func(r *posixRun) string { return r.e(r.fs.Link(r.p("nope"), r.p("d/z"))) }},
	{"Link into a missing folder", func(r *posixRun) string { return r.e(r.fs.Link(r.p("d/a"), r.p("n/z"))) }},
	{"Rename", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("d/b"), r.p("d/c"))) }},
	{"renamed", func(r *posixRun) string { return r.readDir("d") }},
	{"Rename onto a hard link of itself", func(r *posixRun) string {
		return r.e(r.fs.Rename(r.p("d/a"), r.p("d/c")))
	}},
	{"both names stay", func(r *posixRun) string { return r.readDir("d") }},
	{"Rename missing", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("nope"), r.p("d/c"))) }},
	{"Rename missing onto a folder", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("nope"), r.p("d/e"))) }},
	{"Rename a file onto a folder", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("d/a"), r.p("d/e"))) }},
	{"Rename a folder onto a file", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("d/e"), r.p("d/a"))) }},
	{"Rename a folder onto itself", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("d/e"), r.p("d/e"))) }},
	{"Rename a folder into itself", func(r *posixRun) string {
		return r.e(r.fs.Rename(r.p("d/e"), r.p("d/e/f/g")))
	}},
	{"Rename into a missing folder", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("d/a"), r.p("n/a"))) }},
	{"Rename a file to a name with a slash", func(r *posixRun) string {
		return r.e(r.fs.Rename(r.p("d/c"), r.p("d/z/")))
	}},
	{"create another", func(r *posixRun) string { return r.open("n", "d/n", os.O_RDWR|os.O_CREATE) }},
	{"write it", func(r *posixRun) string { return r.n(r.files["n"].Write([]byte("new"))) }},
	{"Rename replacing", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("d/n"), r.p("d/c"))) }},
	{"replaced", func(r *posixRun) string { return r.content("d/c") + " " + r.readDir("d") }},
	{"the other name keeps the old file", func(r *posixRun) string { return r.stat("d/a") }},
	{"Rename a folder", func(r *posixRun) string { return r.e(r.fs.Rename(r.p("d/e"), r.p("e2"))) }},
	{"renamed folder", func(r *posixRun) string { return r.readDir("e2") + " / " + r.readDir("") }},
	{"Remove a folder not empty", func(r *posixRun) string { return r.e(r.fs.Remove(r.p("d"))) }},
	{"Remove missing", func(r *posixRun) string { return r.e(r.fs.Remove(r.p("nope"))) }},
	{"Remove below a file", func(r *posixRun) string { return r.e(r.fs.Remove(r.p("d/a/x"))) }},
	{"Remove an open file", func(r *posixRun) string { return r.e(r.fs.Remove(r.p("d/c"))) }},
	{"its handle", func(r *posixRun) string { return r.info(r.files["n"].Stat()) }},
	{"its handle writes", func(r *posixRun) string { return r.n(r.files["n"].Write([]byte("er"))) }},
	{"its handle reads", func(r *posixRun) string { return r.readAt("n", 10, 0) }},
	{"its name is gone", func(r *posixRun) string { return r.stat("d/c") }},
	{"ReadDir", func(r *posixRun) string { return r.readDir("d") }},
	{"ReadDir a file", func(r *posixRun) string { return r.readDir("d/a") }},
	{"ReadDir missing", func(r *posixRun) string { return r.readDir("nope") }},
	{"Stat a folder", func(r *posixRun) string { return r.stat("d") }},
	{"Stat with a slash", func(r *posixRun) string { return r.stat("d/") }},
	{"Stat a file with a slash", func(r *posixRun) string { return r.stat("d/a/") }},
	{"Lstat", func(r *posixRun) string { return r.info(r.fs.Lstat(r.p("d/a"))) }},
	{"Stat missing", func(r *posixRun) string { return r.stat("nope") }},
	{"Lstat missing", func(r *posixRun) string { return r.info(r.fs.Lstat(r.p("nope"))) }},
	{"Stat below a file", func(r *posixRun) string { return r.stat("d/a/x") }},
	{"Mkdir on a file", func(r *posixRun) string { return r.e(r.fs.Mkdir(r.p("d/a"), 0o755)) }},
	{"MkdirAll on a file", func(r *posixRun) string { return r.e(r.fs.MkdirAll(r.p("d/a"), 0o755)) }},
	{"MkdirAll below a file", func(r *posixRun) string { return r.e(r.fs.MkdirAll(r.p("d/a/x/y"), 0o755)) }},
	{"SyncDir", func(r *posixRun) string { return r.e(r.fs.SyncDir(r.p("d"))) }},
	{"SyncDir missing", func(r *posixRun) string { return r.e(r.fs.SyncDir(r.p("nope"))) }},
	{"SyncDir a file", func(r *posixRun) string { return r.e(r.fs.SyncDir(r.p("d/a"))) }},
	{"Lock", func(r *posixRun) string {
		f, err := r.fs.Lock(r.p("d/lock"))
		r.files["lock"] = f
		return r.e(err)
	}},
	{"Lock again", func(r *posixRun) string {
		_, err := r.fs.Lock(r.p("d/lock"))
		return r.e(err)
	}},
	{"the lock's file", func(r *posixRun) string { return r.n(r.files["lock"].Write([]byte("pid"))) }},
	{"Lock after the holder closed", func(r *posixRun) string {
		r.files["lock"].Close()
		f, err := r.fs.Lock(r.p("d/lock"))
		if err == nil {
			f.Close()
		}
		return r.e(err)
	}},
	{"Lock a folder", func(r *posixRun) string {
		_, err := r.fs.Lock(r.p("d"))
		return r.e(err)
	}},
	{"Close", func(r *posixRun) string { return r.e(r.files["a"].Close()) }},
	{"Close again", func(r *posixRun) string { return r.e(r.files["a"].Close()) }},
	{"Read closed", func(r *posixRun) string { return r.read("a", 1) }},
	{"ReadAt closed", func(r *posixRun) string { return r.readAt("a", 1, 0) }},
	{"Write closed", func(r *posixRun) string { return r.n(r.files["a"].Write([]byte("x"))) }},
	{"WriteAt closed", func(r *posixRun) string { return r.n(r.files["a"].WriteAt([]byte("x"), 0)) }},
	{"Seek closed", func(r *posixRun) string { return r.n64(r.files["a"].Seek(0, io.SeekStart)) }},
	{"Stat closed", func(r *posixRun) string { return r.info(r.files["a"].Stat()) }},
	{"Truncate closed", func(r *posixRun) string { return r.e(r.files["a"].Truncate(0)) }},
	{"Sync closed", func(r *posixRun) string { return r.e(r.files["a"].Sync()) }},
	{"Name", func(r *posixRun) string { return strings.ReplaceAll(r.files["a"].Name(), r.base, "$") }},
	{"RemoveAll missing", func(r *posixRun) string { return r.e(r.fs.RemoveAll(r.p("nope"))) }},
	{"RemoveAll below a missing folder", func(r *posixRun) string { return r.e(r.fs.RemoveAll(r.p("n/x"))) }},
	{"RemoveAll a file", func(r *posixRun) string { return r.e(r.fs.RemoveAll(r.p("d/t"))) }},
	{"RemoveAll a tree", func(r *posixRun) string { return r.e(r.fs.RemoveAll(r.p("d"))) }},
	{"all gone", func(r *posixRun) string { return r.readDir("") + " / " + r.stat("d") }},
	{"Remove an empty folder", func(r *posixRun) string { return r.e(r.fs.Remove(r.p("e2/f"))) }},
	{"RemoveAll ending in a dot", func(r *posixRun) string { return r.e(r.fs.RemoveAll(r.p("e2/."))) }},
}

// TestSameAsOS runs posixScript on vfs.OS and on a MemFS and compares every step.
func TestSameAsOS(t *testing.T) {
	results := func(fsys FS, base string) []string {
		r := &posixRun{fs: fsys, base: base, files: map[string]File{}}
		out := make([]string, len(posixScript))
		for i, step := range posixScript {
			out[i] = step.do(r)
		}
		for _, f := range r.files {
			f.Close()
		}
		return out
	}
	m := NewMemFS()
	if err := m.MkdirAll("/base", 0o755); err != nil {
		t.Fatal(err)
	}
	want, got := results(OS, t.TempDir()), results(m, "/base")
	for i, step := range posixScript {
		if got[i] != want[i] {
			t.Errorf("%s:\n MemFS: %s\n    OS: %s", step.name, got[i], want[i])
		} else {
			t.Logf("%s: %s", step.name, got[i])
		}
	}
}

func TestSpans(t *testing.T) {
	tests := []struct {
		name string
		do   func(s *spans)
		want spans
	}{
		{"empty range", func(s *spans) { s.add(3, 3) }, nil},
		{"appends merge", func(s *spans) { s.add(0, 2); s.add(2, 5); s.add(5, 6) }, spans{{0, 6}}},
		{"apart", func(s *spans) { s.add(6, 8); s.add(0, 2); s.add(3, 4) }, spans{{0, 2}, {3, 4}, {6, 8}}},
		{"one covering several", func(s *spans) { s.add(0, 2); s.add(3, 4); s.add(6, 8); s.add(1, 7) },
			spans{{0, 8}}},
		{"inside one", func(s *spans) { s.add(0, 10); s.add(2, 3) }, spans{{0, 10}}},
		{"touching the next", func(s *spans) { s.add(5, 8); s.add(2, 5) }, spans{{2, 8}}},
		{"clip through one", func(s *spans) { s.add(0, 2); s.add(4, 8); s.clip(6) }, spans{{0, 2}, {4, 6}}},
		{"clip between", func(s *spans) { s.add(0, 2); s.add(4, 8); s.clip(3) }, spans{{0, 2}}},
		{"clip at a start", func(s *spans) { s.add(0, 2); s.add(4, 8); s.clip(4) }, spans{{0, 2}}},
		{"clip at an end", func(s *spans) { s.add(0, 2); s.add(4, 8); s.clip(2) }, spans{{0, 2}}},
		{"clip to nothing", func(s *spans) { s.add(1, 2); s.clip(0) }, spans{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s spans
			tt.do(&s)
			if fmt.Sprint(s) != fmt.Sprint(tt.want) {
				t.Errorf("%v, want %v", s, tt.want)
			}
		})
	}
}

// TestMemFSRootAndNames covers what TestSameAsOS cannot do on the real root.
func TestMemFSRootAndNames(t *testing.T) {
	m := NewMemFS()
	if err := m.Mkdir("a", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"a relative name is from the root", func() error { _, err := m.Stat("/a"); return err }(), 0},
		{"Stat of nothing", func() error { _, err := m.Stat(""); return err }(), syscall.ENOENT},
		{"Mkdir the root", m.Mkdir("/", 0o755), syscall.EEXIST},
		{"MkdirAll the root", m.MkdirAll("/", 0o755), 0},
		{"Remove the root", m.Remove("/"), syscall.EBUSY},
		{"RemoveAll the root", m.RemoveAll("/"), syscall.EBUSY},
		{"Rename the root", m.Rename("/", "/b"), syscall.EBUSY},
		{"Rename onto the root", m.Rename("/a", "/"), syscall.EEXIST},
		{"Link onto the root", m.Link("/a", "/"), syscall.EEXIST},
		{"SyncDir the root", m.SyncDir("/"), 0},
	} {
		if tt.want == 0 && tt.err != nil || tt.want != 0 && !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	fi, err := m.Stat("/")
	if err != nil || fi.Name() != "/" || !fi.IsDir() {
		t.Errorf("Stat(/): %v %v", fi, err)
	}
	if got := tree(t, m, "/"); got != "/a/" {
		t.Errorf("tree %s, want /a/", got)
	}
}

func TestMemFSRemoveAllWithOpenFiles(t *testing.T) {
	m := NewMemFS()
	play(t, m, "mkdir /a; mkdir /a/b; write /a/b/f data; write /a/g x; link /a/b/f /kept")
	f, g := openFile(t, m, "/a/b/f", os.O_RDWR), openFile(t, m, "/a/g", os.O_RDWR)
	if err := m.RemoveAll("/a"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file  File
		nlink uint64
	}{{f, 1}, {g, 0}} {
		fi, err := c.file.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if n := fi.Sys().(*syscall.Stat_t).Nlink; n != c.nlink {
			t.Errorf("%s: Nlink %d, want %d", c.file.Name(), n, c.nlink)
		}
	}
	if _, err := g.Write([]byte("more")); err != nil {
		t.Errorf("writing a removed file: %v", err)
	}
	if got, want := tree(t, m, "/"), `/kept="data"`; got != want {
		t.Errorf("tree %s, want %s", got, want)
	}
}

func TestMemFSModTime(t *testing.T) {
	stat := func(m *MemFS) fs.FileInfo {
		fi, err := m.Stat("/f")
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	m, same := NewMemFS(), NewMemFS()
	play(t, m, "write /f a")
	play(t, same, "write /f a")
	before := stat(m).ModTime()
	if !before.Equal(stat(same).ModTime()) {
		t.Errorf("the same operations gave %v and %v", before, stat(same).ModTime())
	}
	play(t, m, "write /f b")
	if after := stat(m).ModTime(); !after.After(before) {
		t.Errorf("ModTime after a write %v, not after %v", after, before)
	}
}
