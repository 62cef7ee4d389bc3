package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/record"
)

// Flush takes one chunk: every record is either appended durably to the log or rejected (into the dead-letter
// file while it has room) before OK is returned. It never waits on the network. When the disk refuses the
// write it returns Retry, so Fluent Bit keeps the chunk and sends it again. It reads chunk during the call
// only, and keeps none of it: chunk may be Fluent Bit's own buffer.
func (in *Instance) Flush(chunk []byte, tag string) Result {
	c := in.chunks.Get().(*buffer.Chunk)
	defer in.chunks.Put(c)
	c.Reset()
	var dead []byte
	var firstReject string
	rejected := 0
	var why [record.Reasons]int64
	in.dests.receive(tag)
	in.dec.Decode(chunk, tag, func(ev *record.Event) {
		if ev.Reject == "" && in.dests.admit(ev, tag) {
			return
		}
		if ev.Reject != "" {
			line := deadLetterLine{Tag: tag, Reason: ev.Reject, Record: ev.JSON}
			if ev.JSON == nil {
				line.Msgpack = ev.Raw
			}
			dead = line.append(dead, in.now())
			if rejected == 0 {
				firstReject = ev.Reject
			}
			rejected++
			why[ev.Why]++
			return
		}
		// Add copies the record: the decoder reuses its buffer for the next one.
		c.Add(buffer.Stream{Org: ev.Org, Kind: ev.Kind}, ev.JSON)
	})
	// The whole chunk is refused when it does not fit, rather than part of it kept and sent twice. Rejections
	// are written once its room is claimed, before its records: if the append then fails, the retry writes
	// them again, which is harmless, where the other order would buffer the chunk's good records twice.
	err := in.store.Append(c, func() error {
		if rejected > 0 && !in.deadLetter(dead, &why, tag, firstReject) {
			return errRejectsNotKept
		}
		return nil
	})
	in.checkDiskKnown()
	var full *buffer.FullError
	switch {
	case errors.As(err, &full):
		in.store.Relieve()
		signal(in.sealNow)
		if ok, _ := in.fullReport.allow(in.now()); ok {
			if full.Disk {
				in.log.logf(LevelWarn, "Store_Dir's file system is full: %d bytes free, the chunk needs %d and %d are kept for sealing and delivery; asking Fluent Bit to retry it until uploads free space",
					full.Free, full.Need, full.Reserve)
			} else {
				in.log.logf(LevelWarn, "Store_Dir_Limit_Size reached: %d of %d bytes used, the chunk needs %d; asking Fluent Bit to retry it until uploads free space",
					full.Used, full.Limit, full.Need)
			}
		}
		in.checkUsage()
		return Retry
	case errors.Is(err, errRejectsNotKept):
		return Retry
	case err != nil:
		in.log.limitedf(LevelError, "append\x00"+rootCause(err), in.now(), "cannot buffer records, asking Fluent Bit to retry the chunk: %v", err)
		return Retry
	}
	in.checkUsage()
	in.accepted.Add(int64(c.Records()))
	signal(in.sealNow)
	return OK
}

// errRejectsNotKept refuses a chunk whose rejected records could not be kept; deadLetter said why.
var errRejectsNotKept = errors.New("the rejected records could not be kept")

// deadLetter keeps a chunk's rejected records (one line each; why counts them by class), or reports false
// when the chunk should be retried. Those that do not fit in the file are discarded, loudly: holding them
// back would stop the good records of every organisation behind records that can never be delivered.
func (in *Instance) deadLetter(lines []byte, why *[record.Reasons]int64, tag, first string) bool {
	rejected := 0
	for _, n := range why {
		rejected += int(n)
	}
	n, err := in.store.DeadLetter(lines)
	if err != nil && !errors.Is(err, buffer.ErrDeadLetterFull) {
		in.log.limitedf(LevelError, "deadletter\x00"+rootCause(err), in.now(), "cannot write %d rejected records to %s, asking Fluent Bit to retry the chunk: %v",
			rejected, in.store.DeadLetterPath(), err)
		return false
	}
	in.rejected.Add(int64(rejected))
	for r, n := range why {
		if n > 0 {
			in.rejects[r].Add(n)
		}
	}
	kept := rejected
	if err != nil {
		kept = bytes.Count(lines[:n], []byte{'\n'})
	}
	in.deadLettered.Add(int64(kept))
	in.discarded.Add(int64(rejected - kept))
	if err != nil {
		if ok, held := in.deadFull.allow(in.now()); ok {
			in.log.logf(LevelError, "%s is full (%v): kept %d and discarded %d of a chunk's %d rejected record(s) with tag %q (first: %s); %d discarded since start%s; move the file away (a new one is started) or raise Dead_Letter_Limit_Size",
				in.store.DeadLetterPath(), err, kept, rejected-kept, rejected, tag, first, in.discarded.Load(), heldNote(held))
		}
		return true
	}
	if ok, held := in.rejectReport.allow(in.now()); ok {
		in.log.logf(LevelWarn, "rejected %d record(s) of a chunk with tag %q (first: %s); kept in %s; %d rejected since start%s",
			rejected, tag, first, in.store.DeadLetterPath(), in.rejected.Load(), heldNote(held))
	}
	return true
}

// heldNote tells how many chunks a rate-limited report stands for besides its own.
func heldNote(held int) string {
	if held == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d more chunks like it since the last report)", held)
}

// deadLetterLine is one line of the dead-letter file, Store_Dir/deadletter.jsonl, in the format the README
// documents: when, the chunk's tag, why, and what is kept: the record as JSON, or its msgpack bytes as they
// came when it could not be read, or the bytes of a damaged region of the buffer (whose tag is not known:
// "").
type deadLetterLine struct {
	Time    string          `json:"time"`
	Tag     string          `json:"tag"`
	Reason  string          `json:"reason"`
	Record  json.RawMessage `json:"record,omitempty"`
	Msgpack []byte          `json:"msgpack_base64,omitempty"`
	Buffer  []byte          `json:"buffer_base64,omitempty"`
}

// append adds the line, written at now, to dst.
func (l deadLetterLine) append(dst []byte, now time.Time) []byte {
	l.Time = now.UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(l)
	return append(append(dst, b...), '\n')
}

// deadLetterDamaged keeps the damaged regions that reading where (the log, or a batch's buffer) found in the
// dead-letter file. When it cannot write them it returns why, and the store keeps them: a seal fails and is
// tried again. Past Dead_Letter_Limit_Size those that do not fit are discarded, loudly, as rejected records
// are.
func (in *Instance) deadLetterDamaged(where string, regions [][]byte) error {
	var lines []byte
	for _, r := range regions {
		lines = deadLetterLine{Reason: "damaged in " + where, Buffer: r}.append(lines, in.now())
	}
	n, err := in.store.DeadLetter(lines)
	switch {
	case errors.Is(err, buffer.ErrDeadLetterFull):
		in.log.logf(LevelError, "%d damaged regions in %s (disk corruption?); %s is full (%v): kept %d bytes of them, discarded the rest",
			len(regions), where, in.store.DeadLetterPath(), err, n)
	case err != nil:
		return fmt.Errorf("write %d damaged regions to %s: %w", len(regions), in.store.DeadLetterPath(), err)
	default:
		in.log.logf(LevelError, "%d damaged regions in %s (disk corruption?) moved to %s", len(regions), where, in.store.DeadLetterPath())
	}
	return nil
}
