package plugin

import (
	"fmt"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/upload"
)

// An attempt to upload a batch goes in steps. At each one, decide (pure: the facts in, the next action out)
// says what to do, and attempt (uploader.go) does it: the store, S3 and the log.

// step is where an attempt stands.
type step int

const (
	starting         step = iota // nothing done yet
	checked                      // its object was read and checked against its manifest: see facts.altered
	readFailed                   // its object could not be read
	uploaded                     // S3 stored the object
	putFailed                    // the upload failed: see facts.class
	rekeyFailed                  // the store could not give the batch a new key
	quarantineFailed             // the quarantine folder has no room for the batch
	panicked                     // the attempt panicked
	recordFailed                 // the delivery ledger could not record what S3 answered (200 or 412)
	damaged                      // its object could not be composed from the log: part of it is damaged
	spillFailed                  // it could not be written to a batch file
)

// facts is what an attempt knows about its batch at one step.
type facts struct {
	step        step
	class       upload.Class // what the failed upload means (putFailed)
	now         time.Time
	opened      time.Time // arrival of the batch's first record: its age decides the quarantine
	requeued    time.Time // when it was put back from quarantine (zero: never); the quarantine clock restarts then
	attempts    int       // failed attempts in this process, for the backoff
	held        string    // why its destination cannot be used now; "" when it can
	wrongKey    bool      // its key is not the one its destination gives it (prefix, spelling of the organisation)
	gone        bool      // its object is missing from Store_Dir
	altered     string    // how its object differs from its manifest ("": it does not)
	mayReassume bool      // its destination's role session may be dropped now
	jitter      float64   // in [0, 1): where in its backoff window a retry falls
	recording   bool      // S3 stored it at an earlier attempt, and its ledger line is still to be recorded
	inLog       bool      // it lives in the log, not in a batch file
}

// policy is the settings the decisions follow.
type policy struct {
	holdRetry       time.Duration // Hold_Retry_Interval
	quarantineAfter time.Duration // Quarantine_After
}

// action is what the uploader does next with a batch.
type action int

const (
	check      action = iota // read its object and check it against its manifest
	send                     // upload what was read
	moveKey                  // give it its destination's key at the same millisecond, then check it
	done                     // delivered: record it in the ledger and remove it from Store_Dir
	finish                   // S3 stored it at an earlier attempt: record it in the ledger and remove it, never send it again
	retry                    // back off: try again at outcome.at
	nextKey                  // 412: give it the stream's next free millisecond, and send it again at once
	reassume                 // drop its destination's role session, and send it again at once
	hold                     // its destination cannot be used now: look again at outcome.at
	refused                  // its destination refuses it: try again at outcome.at
	quarantine               // refused for Quarantine_After: move it out of the upload path
	setAside                 // its object is not the one sealed: quarantine it without sending it
	drop                     // its files are gone from Store_Dir: it can never be delivered
	spill                    // write it to a batch file, then decide again
)

// outcome is a decision: the action, when the batch is due again (retry, hold, refused), and its failed
// attempts from now on.
type outcome struct {
	do       action
	at       time.Time
	attempts int
}

// Retry backoff for failed uploads: full jitter, capped.
const (
	backoffBase = time.Second
	backoffCap  = 5 * time.Minute
)

// decide says what to do with a batch next. A batch that lives in the log goes on there while its delivery
// goes well; anything else (held, refused, retried later, a new key, damage) is first spilled to a batch
// file, so that it never keeps the log's segments, and so that a new key lasts over a restart (the ledger
// lists a delivered batch under the key it was sent with; a restart finds a batch in the log under its sealed
// key). Only what spilling cannot help stays: an attempt that could not read the log, that could not spill,
// or that panicked is retried from the log, and so is one whose ledger line could not be written (S3 has the
// object; a batch file would only take more of a disk that is full, typically).
func decide(f facts, p policy) outcome {
	o := decideFor(f, p)
	stays := inLogAction[o.do] || f.step == readFailed || f.step == spillFailed || f.step == panicked ||
		f.step == recordFailed
	if f.inLog && (f.step == damaged || !stays) {
		return outcome{do: spill, attempts: f.attempts}
	}
	return o
}

// inLogAction are the actions a batch that lives in the log takes there.
var inLogAction = map[action]bool{check: true, send: true, done: true, finish: true, reassume: true}

func decideFor(f facts, p policy) outcome {
	o := outcome{attempts: f.attempts}
	switch f.step {
	case starting:
		switch {
		case f.recording:
			o.do = finish
		case f.held != "":
			o.do, o.at = hold, f.now.Add(p.holdRetry)
		case f.wrongKey:
			o.do = moveKey
		default:
			o.do = check
		}
		return o
	case checked:
		o.do = send
		if f.altered != "" {
			o.do = setAside
		}
		return o
	case uploaded:
		o.do = done
		return o
	case damaged:
		o.do = check // spilled: its batch file holds what was intact
		return o
	}
	switch {
	case f.gone && f.step != recordFailed:
		o.do = drop
	case f.step == quarantineFailed:
		o.do, o.at = refused, f.now.Add(p.holdRetry)
	case f.step == putFailed && f.class == upload.KeyExists:
		o.do = nextKey
	case f.step == putFailed && f.class == upload.Credentials && f.mayReassume:
		o.do = reassume
	case f.step == putFailed && f.class == upload.Misconfigured && f.now.Sub(f.refusedSince()) >= p.quarantineAfter:
		o.do = quarantine
	case f.step == putFailed && f.class == upload.Misconfigured:
		o.do, o.at = refused, f.now.Add(p.holdRetry)
	default: // retriable, credentials that may not be dropped yet, a key the store could not change, an object
		// that could not be read (not corruption: its bytes were not seen), a panic, a ledger line
		o.do, o.attempts = retry, f.attempts+1
		o.at = f.now.Add(backoff(o.attempts, f.jitter))
	}
	return o
}

// objectSums are the size and checksums of an object as read for its upload.
type objectSums struct {
	size        int64
	sha256, md5 string // base64, as the manifest keeps them
}

// altered says how an object read for its upload differs from what its manifest recorded when it was sealed,
// or "" when it does not: its SHA-256 (missing from the manifests of older versions), its size and its
// Content-MD5, which S3 checks too.
func altered(m buffer.Manifest, got objectSums) string {
	var diffs []string
	if m.SHA256 != "" && got.sha256 != m.SHA256 {
		diffs = append(diffs, fmt.Sprintf("its SHA-256 is %s where its manifest says %s", hexSum(got.sha256), hexSum(m.SHA256)))
	}
	if got.size != m.ObjectBytes {
		diffs = append(diffs, fmt.Sprintf("it has %d bytes where its manifest says %d", got.size, m.ObjectBytes))
	}
	if got.md5 != m.ContentMD5 {
		diffs = append(diffs, fmt.Sprintf("its MD5 is %s where its manifest says %s", hexSum(got.md5), hexSum(m.ContentMD5)))
	}
	return strings.Join(diffs, ", ")
}

// hexSum writes a base64 checksum in hex, as sha256sum and md5sum print it; one that is not base64 as it is.
func hexSum(sum string) string {
	if h, err := hexOfBase64(sum); err == nil {
		return h
	}
	return fmt.Sprintf("%q", sum)
}

// refusedSince is when the batch's quarantine clock started: its first record's arrival, or its requeue.
func (f facts) refusedSince() time.Time {
	if f.requeued.After(f.opened) {
		return f.requeued
	}
	return f.opened
}

// backoff is how long a batch waits after its nth failed attempt: half a second, plus up to 2^n s (at most
// 5 min) as jitter in [0, 1) says.
func backoff(attempts int, jitter float64) time.Duration {
	ceiling := backoffCap
	if attempts < 20 {
		ceiling = min(backoffCap, backoffBase<<attempts)
	}
	return backoffBase/2 + time.Duration(jitter*float64(ceiling))
}
