package buffer

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/vfs"
)

// Requeued is the outcome of Requeue: the batches put back, and the quarantine's files left there with why.
type Requeued struct {
	Batches []Manifest
	Left    []string
}

// Requeue puts the quarantined batches of the store in dir (those of org only, unless org is "", compared
// without case) back into its batches folder for upload at the plugin's next start, and restarts their time
// to quarantine at now. It takes the store's lock: it fails with a *LockedError while the plugin runs on dir.
// Nothing is overwritten: a batch takes a free name. A batch whose files cannot be read stays where it is.
func Requeue(dir, org string, now time.Time) (*Requeued, error) {
	return requeueAll(vfs.OS, dir, org, now)
}

func requeueAll(fsys vfs.FS, dir, org string, now time.Time) (*Requeued, error) {
	quarantine, batches := filepath.Join(dir, quarantineFolder), filepath.Join(dir, batchesFolder)
	if !isDir(fsys, quarantine) || !isDir(fsys, batches) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotStore)
	}
	lock, err := lockDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	entries, err := fsys.ReadDir(quarantine)
	if err != nil {
		return nil, err
	}
	out := &Requeued{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), manifestSuffix)
		if !ok {
			continue
		}
		b, err := readBatch(fsys, filepath.Join(quarantine, e.Name()))
		switch {
		case err != nil:
			out.Left = append(out.Left, fmt.Sprintf("%s: %v", e.Name(), err))
		case org != "" && !strings.EqualFold(b.Org, org):
		default:
			if err := requeue(fsys, b, batches, name, now); err != nil {
				return out, fmt.Errorf("requeue %s: %w", e.Name(), err)
			}
			out.Batches = append(out.Batches, b.Manifest)
		}
	}
	sort.Slice(out.Batches, func(i, j int) bool { return out.Batches[i].Key < out.Batches[j].Key })
	if len(out.Batches) == 0 {
		return out, nil
	}
	return out, errors.Join(fsys.SyncDir(batches), fsys.SyncDir(quarantine))
}

// requeue moves one quarantined batch into the batches folder: its manifest with the requeue time written
// next to it (through a temporary file, which recovery removes), both linked into batches/ under a free name
// and made durable there, then the quarantined pair removed, manifest first. A crash leaves the batch in one
// folder or in both, never in neither.
func requeue(fsys vfs.FS, b *Batch, batches, name string, now time.Time) error {
	base := freeBase(fsys, batches, name)
	b.Requeued = now.UnixMilli()
	tmp := base + manifestSuffix + tmpSuffix
	fsys.Remove(tmp)
	if _, err := createSynced(fsys, tmp, func(w io.Writer) error { _, err := w.Write(b.encode()); return err }); err != nil {
		return err
	}
	err := linkAll(fsys, batches, []string{b.object, tmp}, []string{base + objectSuffix, base + manifestSuffix})
	fsys.Remove(tmp)
	if err != nil {
		return err
	}
	if err := fsys.Remove(b.manifest); err != nil {
		return err
	}
	return fsys.Remove(b.object)
}
