package vfs

import (
	"maps"
	"slices"
)

// CrashOptions chooses among the states a power cut may leave.
type CrashOptions struct {
	// TornTail keeps part of an unsynced append: of a file whose live data is longer than its durable data,
	// the first half (rounded down) of the bytes past the durable end. Of those, bytes whose write a failed
	// sync dropped are zeros. Without it only durable data survives.
	TornTail bool
}

// Crash returns a new MemFS holding what survives a power cut now. It walks from the root through the
// folders' durable names only: a name created, renamed, linked or removed in a folder not synced since is
// as it was at that folder's last sync, and a folder no durable name reaches is gone with all below it. Each
// file surviving has its durable data (see CrashOptions.TornTail) and keeps its inode: two durable names of
// one file are still hard links. A file renamed between two folders of which only the target was synced has
// both names; a folder reached twice that way keeps the first name in sorted order. Open files and locks are
// not carried over; m is unchanged.
func (m *MemFS) Crash(opt CrashOptions) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &MemFS{locks: map[*memNode]*memFile{}, ino: m.ino, clock: m.clock}
	c.root = crashCopy(m.root, map[*memNode]*memNode{}, opt)
	return c
}

// crashCopy copies n as the power cut leaves it; nil for a folder already copied.
func crashCopy(n *memNode, copies map[*memNode]*memNode, opt CrashOptions) *memNode {
	if c := copies[n]; c != nil {
		if c.isDir() {
			return nil
		}
		c.links++
		return c
	}
	c := &memNode{ino: n.ino, mode: n.mode, modTime: n.modTime, links: 1}
	copies[n] = c
	if !n.isDir() {
		c.durable = n.crashData(opt)
		c.data = slices.Clone(c.durable)
		return c
	}
	c.entries = map[string]*memNode{}
	for _, name := range slices.Sorted(maps.Keys(n.synced)) {
		if child := crashCopy(n.synced[name], copies, opt); child != nil {
			c.entries[name] = child
		}
	}
	c.synced = maps.Clone(c.entries)
	return c
}

func (n *memNode) crashData(opt CrashOptions) []byte {
	durable := slices.Clone(n.durable)
	end := len(durable)
	if !opt.TornTail || len(n.data) <= end {
		return durable
	}
	var tail spans
	for _, s := range n.dirty {
		if s.to > end {
			tail = append(tail, span{max(s.from, end), s.to})
		}
	}
	if len(tail) == 0 {
		return durable
	}
	return overlay(durable, end+(len(n.data)-end)/2, n.data, tail)
}

// DirtyDropper is a File that can lose the writes not yet durable, as Linux may after a failed fsync
// (fsyncgate): Faults calls it on the file whose Sync or Datasync it failed.
type DirtyDropper interface {
	DropDirty()
}

// DropDirty makes the writes to the file since its last successful sync never durable: a later Sync makes
// durable only what is written after this call, and the durable data keeps its old bytes in the dropped
// ranges (zeros where the dropped writes extended the file). Reads still see the data.
func (f *memFile) DropDirty() {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.node.dirty = f.node.dirty[:0]
}
