package plugin

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/ledger"
)

// A batch S3 stored leaves the queue once its ledger line is durable. While other uploads are under way, an
// uploader that stored one does not wait for that: it leaves the line pending and goes on with the next due
// batch, and the lines pending are recorded together, in one write and one fdatasync, when there are
// linesPerUploader for each uploader, when the oldest has waited recordWithin, when no other upload is under
// way, and whenever an uploader finds no batch due. So under load one sync serves several objects, and a lone
// upload is recorded at once. Until its line is recorded, a batch keeps its stream's turn (the stream's next
// batch waits) and its place in the log. A crash before then sends it again at the next start, as a crash
// between S3's answer and the ledger always did: the bound keeps those few.
const (
	linesPerUploader = 8
	recordWithin     = time.Second
)

// storedObject is a batch S3 stored, whose ledger line is still to be recorded.
type storedObject struct {
	it      *item
	b       *buffer.Batch
	d       conf.Destination // where S3 stored it
	version string           // of the object S3 stored ("" unversioned)
	at      time.Time        // when S3 answered
}

// storedObjects are the batches S3 stored whose lines wait for the next group, and the attempts under way.
type storedObjects struct {
	mu       sync.Mutex
	list     []storedObject
	group    int // lines recorded together at most (but when an uploader finds no batch due)
	attempts int // under way
}

// begin counts an attempt that starts.
func (p *storedObjects) begin() {
	p.mu.Lock()
	p.attempts++
	p.mu.Unlock()
}

// end counts an attempt that ended, which stored s when stored, and reports whether the lines pending are
// due now.
func (p *storedObjects) end(stored bool, s storedObject, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts--
	if stored {
		p.list = append(p.list, s)
	}
	if len(p.list) == 0 {
		return false
	}
	return recordDue(len(p.list), p.group, p.attempts, now.Sub(p.list[0].at))
}

// recordDue says whether the lines pending are recorded now: pending of them (at least one), the oldest of
// which has waited for waited, while others attempts are under way.
func recordDue(pending, group, others int, waited time.Duration) bool {
	return others == 0 || pending >= group || waited >= recordWithin
}

// take returns the lines pending, which are then no longer.
func (p *storedObjects) take() []storedObject {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.list
	p.list = nil
	return list
}

// sent is where S3 stored a batch whose ledger line is still to be recorded.
type sent struct {
	dest    conf.Destination
	version string
}

// recordStored records the lines pending and ends their batches in the queue: delivered, removed from
// Store_Dir; or, when their line could not be recorded, back in their lane to try the line again later. It
// reports whether there were any.
func (in *Instance) recordStored() bool {
	group := in.stored.take()
	if len(group) == 0 {
		return false
	}
	ended := make([]bool, len(group))
	defer func() {
		for i, s := range group {
			if !ended[i] { // recording panicked: the line is tried again
				ended[i] = true
				in.lineLater(s, panicked)
			}
		}
	}()
	now := in.now()
	lines := make([]ledger.Entry, 0, len(group))
	for i, s := range group {
		e, err := in.entryOf(ledger.Delivered, s.d, s.b, s.version, now)
		if err != nil {
			ended[i] = true
			in.lineLater(s, recordFailed)
			continue
		}
		lines = append(lines, e)
	}
	what := fmt.Sprintf("%d objects", len(lines))
	if len(lines) == 1 {
		what = lines[0].Key
	}
	err := in.recordLines(what, now, lines...)
	for i, s := range group {
		if ended[i] {
			continue
		}
		if err != nil {
			ended[i] = true
			in.lineLater(s, recordFailed)
			continue
		}
		if err := in.store.Remove(s.b); err != nil {
			in.log.limitedf(LevelError, "remove", now, "uploaded %s but cannot remove it from the buffer: %v", s.b.Key, err)
		}
		in.delivered.Add(int64(s.b.Records))
		in.objects.Add(1)
		in.log.logf(LevelDebug, "uploaded s3://%s/%s (%d records, %d bytes)", s.d.Bucket, s.b.Key, s.b.Records, s.b.ObjectBytes)
		ended[i] = true
		in.queue.done(s.it, false)
	}
	in.checkUsage()
	return true
}

// lineLater puts a stored batch whose line was not recorded back in its lane, due when decide says, to record
// the line then without sending the batch again.
func (in *Instance) lineLater(s storedObject, why step) {
	s.it.sent = &sent{dest: s.d, version: s.version}
	f := in.failedStep(factsOf(s.it, s.b, in.now()), why, s.b)
	o := decide(f, in.policy)
	if line := in.health.decided(s.b.Org, o.do, s.b.Records, f.now); line != "" {
		in.log.limitedf(LevelInfo, "recovered\x00"+conf.OrgKey(s.b.Org), f.now, "%s", line)
	}
	s.it.attempts, s.it.due = o.attempts, o.at
	in.queue.done(s.it, true)
}

// entryOf is the ledger line of b as stored in d: delivered (S3 answered 200), or unconfirmed (S3 answered
// that the batch's key exists: an earlier attempt whose answer was lost may have stored it, or another writer
// did). It logs why it cannot be made.
func (in *Instance) entryOf(status string, d conf.Destination, b *buffer.Batch, version string, now time.Time) (ledger.Entry, error) {
	e := ledger.Entry{Status: status, Org: d.OrgID, Kind: b.Kind, Bucket: d.Bucket, Key: b.Key, Bytes: b.ObjectBytes,
		Records: b.Records, First: b.FirstEvent, Last: b.LastEvent, VersionID: version}
	sum, err := b.ObjectSHA256()
	if err == nil {
		e.SHA256, err = hexOfBase64(sum)
	}
	if err != nil {
		in.log.limitedf(LevelError, "ledger\x00"+rootCause(err), now, "cannot record %s in the delivery ledger; the batch stays in Store_Dir and its line is tried again: %v", b.Key, err)
	}
	return e, err
}

// record notes one object in the delivery ledger (see entryOf). An error means the line is not recorded: the
// batch stays until it is, or the object would be in no ledger line and no digest.
func (in *Instance) record(status string, d conf.Destination, b *buffer.Batch, version string, now time.Time) error {
	e, err := in.entryOf(status, d, b, version, now)
	if err != nil {
		return err
	}
	return in.recordLines(b.Key, now, e)
}

// recordLines writes lines to the ledger, in one write and one fdatasync; what names them in a log line. On a
// full disk it spends the delivery reserve and tries once more.
func (in *Instance) recordLines(what string, now time.Time, lines ...ledger.Entry) error {
	err := in.ledger.Record(lines...)
	if err != nil && in.store.MakeRoom(err) {
		in.log.limitedf(LevelWarn, "ballast", now, "Store_Dir's file system is full (%v): deleted its delivery reserve so that delivery goes on and frees space; it is made again once there is room", err)
		err = in.ledger.Record(lines...)
	}
	switch {
	case errors.Is(err, ledger.ErrOverflow):
		in.log.limitedf(LevelWarn, "ledger-overflow", now, "the delivery ledger outgrew twice Ledger_Limit_Size: its oldest entries were deleted before a digest covered them")
	case err != nil:
		in.log.limitedf(LevelError, "ledger\x00"+rootCause(err), now, "cannot record %s in the delivery ledger; their batches stay in Store_Dir and the lines are tried again: %v", what, err)
		return err
	}
	return nil
}

// hexOfBase64 turns a base64 SHA-256 (as S3 takes it) into lower-case hex (as sha256sum prints it).
func hexOfBase64(sum string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(sum)
	if err != nil {
		return "", fmt.Errorf("SHA-256 %q: %w", sum, err)
	}
	return hex.EncodeToString(raw), nil
}
