package vfs

import (
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MemFS is an FS in memory for tests, with the POSIX semantics the store relies on and a model of what a
// power cut keeps (Crash). Names are absolute slash paths; a relative name is taken from "/". Safe for
// concurrent use: one mutex guards the whole tree and every open file.
type MemFS struct {
	mu    sync.Mutex
	root  *memNode
	locks map[*memNode]*memFile
	ino   uint64
	clock int64
}

// memNode is an inode: a file or a folder.
type memNode struct {
	ino     uint64
	mode    fs.FileMode
	modTime int64
	// links counts the live names of a file; a folder has 1 while it is named, 0 once removed.
	links int

	// A file: data is what reads see; durable what the last successful sync made durable; dirty the ranges of
	// data written since, which the next sync makes durable.
	data    []byte
	durable []byte
	dirty   spans

	// A folder: entries are its live names, synced the names its last sync made durable.
	entries map[string]*memNode
	synced  map[string]*memNode
}

func (n *memNode) isDir() bool { return n.mode.IsDir() }

// memEpoch is the modification time of a node never changed; each change adds a second, so times are
// deterministic and ordered.
var memEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// NewMemFS returns an empty MemFS: only the root folder, which is always durable.
func NewMemFS() *MemFS {
	m := &MemFS{locks: map[*memNode]*memFile{}}
	m.root = m.newNode(fs.ModeDir | 0o755)
	m.root.links = 1
	return m
}

func (m *MemFS) newNode(mode fs.FileMode) *memNode {
	m.ino++
	n := &memNode{ino: m.ino, mode: mode, modTime: m.clock}
	if n.isDir() {
		n.entries = map[string]*memNode{}
		n.synced = map[string]*memNode{}
	}
	return n
}

func (m *MemFS) touch(n *memNode) {
	m.clock++
	n.modTime = m.clock
}

// memPath is a name resolved: its folder (nil for the root), its last element and the node it names (nil
// when absent).
type memPath struct {
	dir   *memNode
	base  string
	node  *memNode
	clean string
	slash bool
}

func (m *MemFS) walk(name string) (memPath, syscall.Errno) {
	if name == "" {
		return memPath{}, syscall.ENOENT
	}
	clean := path.Clean("/" + name)
	p := memPath{clean: clean, slash: strings.HasSuffix(name, "/")}
	if clean == "/" {
		p.base, p.node = "/", m.root
		return p, 0
	}
	elems := strings.Split(clean[1:], "/")
	dir := m.root
	for _, e := range elems[:len(elems)-1] {
		next := dir.entries[e]
		if next == nil {
			return p, syscall.ENOENT
		}
		if !next.isDir() {
			return p, syscall.ENOTDIR
		}
		dir = next
	}
	p.dir, p.base = dir, elems[len(elems)-1]
	p.node = dir.entries[p.base]
	if p.slash && p.node != nil && !p.node.isDir() {
		return p, syscall.ENOTDIR
	}
	return p, 0
}

// find resolves a name that must exist; op names the error.
func (m *MemFS) find(op, name string) (memPath, error) {
	p, errno := m.walk(name)
	if errno == 0 && p.node == nil {
		errno = syscall.ENOENT
	}
	if errno != 0 {
		return p, pathErr(op, name, errno)
	}
	return p, nil
}

func (m *MemFS) link(dir *memNode, base string, n *memNode) {
	dir.entries[base] = n
	n.links++
	m.touch(dir)
}

func (m *MemFS) unlink(dir *memNode, base string) {
	n := dir.entries[base]
	delete(dir.entries, base)
	n.links--
	m.touch(dir)
}

// unlinkTree removes everything below folder n, as RemoveAll does name by name.
func (m *MemFS) unlinkTree(n *memNode) {
	for name, child := range n.entries {
		if child.isDir() {
			m.unlinkTree(child)
		}
		m.unlink(n, name)
	}
}

func pathErr(op, name string, errno syscall.Errno) error {
	return &fs.PathError{Op: op, Path: name, Err: errno}
}

// OpenFile opens name like os.OpenFile.
func (m *MemFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, errno := m.open(name, flag, perm)
	if errno != 0 {
		return nil, pathErr("open", name, errno)
	}
	return f, nil
}

func (m *MemFS) open(name string, flag int, perm fs.FileMode) (*memFile, syscall.Errno) {
	p, errno := m.walk(name)
	if errno != 0 {
		return nil, errno
	}
	n := p.node
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return nil, syscall.ENOENT
	case n == nil && p.slash:
		return nil, syscall.EISDIR
	case n == nil:
		n = m.newNode(perm & fs.ModePerm)
		m.link(p.dir, p.base, n)
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, syscall.EEXIST
	case n.isDir() && (writable(flag) || flag&(os.O_CREATE|os.O_TRUNC) != 0):
		return nil, syscall.EISDIR
	case flag&os.O_TRUNC != 0:
		n.resize(0)
		m.touch(n)
	}
	return &memFile{fs: m, node: n, name: name, flag: flag}, 0
}

func writable(flag int) bool {
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	return acc == os.O_WRONLY || acc == os.O_RDWR
}

func readable(flag int) bool {
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	return acc == os.O_RDONLY || acc == os.O_RDWR
}

// Remove removes a file or an empty folder like os.Remove. A file's open handles keep working.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, errno := m.walk(name)
	switch {
	case errno != 0:
	case p.node == nil:
		errno = syscall.ENOENT
	case p.dir == nil:
		errno = syscall.EBUSY
	case p.node.isDir() && len(p.node.entries) > 0:
		errno = syscall.ENOTEMPTY
	default:
		m.unlink(p.dir, p.base)
		return nil
	}
	return pathErr("remove", name, errno)
}

// RemoveAll removes name and everything below it like os.RemoveAll.
func (m *MemFS) RemoveAll(name string) error {
	if name == "" {
		return nil
	}
	if name == "." || strings.HasSuffix(name, "/.") {
		return pathErr("RemoveAll", name, syscall.EINVAL)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p, errno := m.walk(name)
	switch {
	case errno == syscall.ENOENT || errno == 0 && p.node == nil:
		return nil
	case errno != 0:
		return pathErr("unlinkat", name, errno)
	case p.dir == nil:
		return pathErr("unlinkat", name, syscall.EBUSY)
	}
	if p.node.isDir() {
		m.unlinkTree(p.node)
	}
	m.unlink(p.dir, p.base)
	return nil
}

// Rename replaces to with from atomically like os.Rename, which refuses to replace a folder (EEXIST).
func (m *MemFS) Rename(from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if errno := m.rename(from, to); errno != 0 {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: errno}
	}
	return nil
}

func (m *MemFS) rename(from, to string) syscall.Errno {
	pf, errf := m.walk(from)
	pt, errt := m.walk(to)
	if errf == 0 && pf.node == nil {
		errf = syscall.ENOENT
	}
	if errt == 0 && pt.node != nil && pt.node.isDir() {
		if errf != 0 {
			return errf
		}
		if from == to || pf.node != pt.node {
			return syscall.EEXIST
		}
	}
	switch {
	case errf != 0:
		return errf
	case errt != 0:
		return errt
	case pf.dir == nil || pt.dir == nil:
		return syscall.EBUSY
	case pf.node == pt.node:
		return 0
	case pf.node.isDir() && pt.node != nil:
		return syscall.ENOTDIR
	case pf.node.isDir() && strings.HasPrefix(pt.clean, pf.clean+"/"):
		return syscall.EINVAL
	case !pf.node.isDir() && pt.slash:
		return syscall.ENOTDIR
	}
	if pt.node != nil {
		m.unlink(pt.dir, pt.base)
	}
	n := pf.node
	delete(pf.dir.entries, pf.base)
	m.touch(pf.dir)
	pt.dir.entries[pt.base] = n
	m.touch(pt.dir)
	return 0
}

// Link gives from's file the second name to like os.Link; it fails when to exists.
func (m *MemFS) Link(from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	pf, errno := m.walk(from)
	var pt memPath
	switch {
	case errno != 0:
	case pf.node == nil:
		errno = syscall.ENOENT
	default:
		if pt, errno = m.walk(to); errno == 0 && pt.node != nil {
			errno = syscall.EEXIST
		}
	}
	switch {
	case errno != 0:
	case pf.node.isDir():
		errno = syscall.EPERM
	default:
		m.link(pt.dir, pt.base, pf.node)
		return nil
	}
	return &os.LinkError{Op: "link", Old: from, New: to, Err: errno}
}

// Mkdir makes a folder like os.Mkdir.
func (m *MemFS) Mkdir(name string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, errno := m.walk(name)
	switch {
	case errno != 0:
	case p.node != nil:
		errno = syscall.EEXIST
	default:
		m.link(p.dir, p.base, m.newNode(fs.ModeDir|perm&fs.ModePerm))
		return nil
	}
	return pathErr("mkdir", name, errno)
}

// MkdirAll makes a folder and the folders above it like os.MkdirAll.
func (m *MemFS) MkdirAll(name string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, errno := m.walk(name); errno == 0 && p.node != nil {
		if p.node.isDir() {
			return nil
		}
		return pathErr("mkdir", name, syscall.ENOTDIR)
	}
	if name == "" {
		return pathErr("mkdir", name, syscall.ENOENT)
	}
	elems := strings.Split(path.Clean("/" + name)[1:], "/")
	dir := m.root
	for i, e := range elems {
		next := dir.entries[e]
		if next == nil {
			next = m.newNode(fs.ModeDir | perm&fs.ModePerm)
			m.link(dir, e, next)
		}
		if !next.isDir() {
			return pathErr("mkdir", "/"+strings.Join(elems[:i+1], "/"), syscall.ENOTDIR)
		}
		dir = next
	}
	return nil
}

// ReadDir lists a folder sorted by name like os.ReadDir.
func (m *MemFS) ReadDir(name string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.find("open", name)
	if err != nil {
		return nil, err
	}
	if !p.node.isDir() {
		return nil, pathErr("open", name, syscall.ENOTDIR)
	}
	names := slices.Sorted(maps.Keys(p.node.entries))
	list := make([]fs.DirEntry, len(names))
	for i, e := range names {
		list[i] = fs.FileInfoToDirEntry(m.info(e, p.node.entries[e]))
	}
	return list, nil
}

// Stat describes name like os.Stat.
func (m *MemFS) Stat(name string) (fs.FileInfo, error) { return m.stat("stat", name) }

// Lstat is Stat: a MemFS has no symbolic links.
func (m *MemFS) Lstat(name string) (fs.FileInfo, error) { return m.stat("lstat", name) }

func (m *MemFS) stat(op, name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.find(op, name)
	if err != nil {
		return nil, err
	}
	return m.info(path.Base(p.clean), p.node), nil
}

// SyncDir makes the names in a folder durable: its durable entries become its live ones. Like vfs.OS, given a
// file it syncs the file.
func (m *MemFS) SyncDir(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.find("open", name)
	if err != nil {
		return err
	}
	p.node.sync()
	return nil
}

// Lock opens name (creating it) for reading and writing and takes an exclusive lock on its file, held until
// that File is closed. Like flock, the lock belongs to the file, not to the name.
func (m *MemFS) Lock(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, errno := m.open(name, os.O_RDWR|os.O_CREATE, 0o600)
	if errno != 0 {
		return nil, pathErr("open", name, errno)
	}
	if m.locks[f.node] != nil {
		return nil, &fs.PathError{Op: "lock", Path: name, Err: ErrLocked}
	}
	m.locks[f.node] = f
	return f, nil
}

// memInfo is a FileInfo of a MemFS node, taken under the lock.
type memInfo struct {
	name    string
	size    int64
	mode    fs.FileMode
	modTime time.Time
	sys     *syscall.Stat_t
}

func (i *memInfo) Name() string       { return i.name }
func (i *memInfo) Size() int64        { return i.size }
func (i *memInfo) Mode() fs.FileMode  { return i.mode }
func (i *memInfo) ModTime() time.Time { return i.modTime }
func (i *memInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *memInfo) Sys() any           { return i.sys }

func (m *MemFS) info(name string, n *memNode) *memInfo {
	modTime := memEpoch.Add(time.Duration(n.modTime) * time.Second)
	st := &syscall.Stat_t{
		Ino:     n.ino,
		Nlink:   uint64(n.links),
		Mode:    uint32(n.mode.Perm()) | syscall.S_IFREG,
		Size:    int64(len(n.data)),
		Blksize: 4096,
		Blocks:  (int64(len(n.data)) + 511) / 512,
		Mtim:    syscall.NsecToTimespec(modTime.UnixNano()),
	}
	if n.isDir() {
		st.Mode = uint32(n.mode.Perm()) | syscall.S_IFDIR
		if n.links > 0 {
			st.Nlink = 2
			for _, child := range n.entries {
				if child.isDir() {
					st.Nlink++
				}
			}
		}
	}
	return &memInfo{name: name, size: st.Size, mode: n.mode, modTime: modTime, sys: st}
}
