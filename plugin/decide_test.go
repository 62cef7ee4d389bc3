package plugin

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/upload"
)

func TestDecide(t *testing.T) {
	now := time.UnixMilli(1769611845000)
	p := policy{holdRetry: time.Minute, quarantineAfter: 24 * time.Hour}
	young, old := now.Add(-time.Hour), now.Add(-24*time.Hour)
	cases := []struct {
		name string
		f    facts
		want outcome
	}{
		{"held", facts{held: "organisation org-a has no entry yet", wrongKey: true}, outcome{do: hold, at: now.Add(time.Minute), attempts: 2}},
		{"its destination gives it another key", facts{wrongKey: true}, outcome{do: moveKey, attempts: 2}},
		{"ready: its object is read and checked first", facts{}, outcome{do: check, attempts: 2}},
		{"checked: intact", facts{step: checked}, outcome{do: send, attempts: 2}},
		{"checked: altered in Store_Dir", facts{step: checked, altered: "its SHA-256 is 1 where its manifest says 2"}, outcome{do: setAside, attempts: 2}},
		{"altered, and the quarantine is full", facts{step: quarantineFailed, altered: "its SHA-256 is 1 where its manifest says 2"},
			outcome{do: refused, at: now.Add(time.Minute), attempts: 2}},
		{"unreadable: not corruption, backoff of the 3rd attempt", facts{step: readFailed, jitter: 0.5},
			outcome{do: retry, at: now.Add(4500 * time.Millisecond), attempts: 3}},
		{"unreadable: gone", facts{step: readFailed, gone: true}, outcome{do: drop, attempts: 2}},
		{"the attempt panicked: backoff of the 3rd attempt", facts{step: panicked, jitter: 0.5},
			outcome{do: retry, at: now.Add(4500 * time.Millisecond), attempts: 3}},
		{"uploaded", facts{step: uploaded}, outcome{do: done, attempts: 2}},
		{"uploaded before, its ledger line not recorded: whatever its destination says now", facts{recording: true, held: "organisation org-a has no entry yet", wrongKey: true},
			outcome{do: finish, attempts: 2}},
		{"the ledger line not recorded", facts{step: recordFailed, jitter: 0.5}, outcome{do: retry, at: now.Add(4500 * time.Millisecond), attempts: 3}},
		{"the ledger line not recorded, files gone: the object is in S3", facts{step: recordFailed, gone: true},
			outcome{do: retry, at: now.Add(500 * time.Millisecond), attempts: 3}},
		{"retriable: backoff of the 3rd attempt", facts{step: putFailed, class: upload.Retriable, jitter: 0.5},
			outcome{do: retry, at: now.Add(4500 * time.Millisecond), attempts: 3}},
		{"retriable: capped at 5 min", facts{step: putFailed, class: upload.Retriable, attempts: 30, jitter: 0.5},
			outcome{do: retry, at: now.Add(150500 * time.Millisecond), attempts: 31}},
		{"412", facts{step: putFailed, class: upload.KeyExists}, outcome{do: nextKey, attempts: 2}},
		{"credentials refused, the session may be dropped", facts{step: putFailed, class: upload.Credentials, mayReassume: true},
			outcome{do: reassume, attempts: 2}},
		{"credentials refused, the session was dropped just now", facts{step: putFailed, class: upload.Credentials},
			outcome{do: retry, at: now.Add(500 * time.Millisecond), attempts: 3}},
		{"refused", facts{step: putFailed, class: upload.Misconfigured}, outcome{do: refused, at: now.Add(time.Minute), attempts: 2}},
		{"refused for Quarantine_After", facts{step: putFailed, class: upload.Misconfigured, opened: old}, outcome{do: quarantine, attempts: 2}},
		{"refused for Quarantine_After, but requeued since", facts{step: putFailed, class: upload.Misconfigured, opened: old, requeued: young},
			outcome{do: refused, at: now.Add(time.Minute), attempts: 2}},
		{"requeued, then refused for Quarantine_After again", facts{step: putFailed, class: upload.Misconfigured, opened: old.Add(-time.Hour), requeued: old},
			outcome{do: quarantine, attempts: 2}},
		{"refused, and the quarantine is full", facts{step: quarantineFailed, class: upload.Misconfigured, opened: old},
			outcome{do: refused, at: now.Add(time.Minute), attempts: 2}},
		{"the store cannot change its key", facts{step: rekeyFailed, class: upload.KeyExists},
			outcome{do: retry, at: now.Add(500 * time.Millisecond), attempts: 3}},
		{"files gone: upload failed", facts{step: putFailed, class: upload.Retriable, gone: true}, outcome{do: drop, attempts: 2}},
		{"files gone: refused", facts{step: putFailed, class: upload.Misconfigured, opened: old, gone: true}, outcome{do: drop, attempts: 2}},
		{"files gone: no new key", facts{step: rekeyFailed, gone: true}, outcome{do: drop, attempts: 2}},
		{"files gone: no quarantine", facts{step: quarantineFailed, gone: true}, outcome{do: drop, attempts: 2}},
		// A batch that lives in the log stays there while its delivery goes well, and is spilled otherwise.
		{"in the log: composed from it first", facts{inLog: true}, outcome{do: check, attempts: 2}},
		// Only a batch file keeps a moved key over a restart: the ledger lists the key it was delivered under.
		{"in the log: another key", facts{inLog: true, wrongKey: true}, outcome{do: spill, attempts: 2}},
		{"in the log: composed", facts{inLog: true, step: checked}, outcome{do: send, attempts: 2}},
		{"in the log: uploaded", facts{inLog: true, step: uploaded}, outcome{do: done, attempts: 2}},
		{"in the log: uploaded before, its line to record", facts{inLog: true, recording: true}, outcome{do: finish, attempts: 2}},
		{"in the log: credentials refused, the session may be dropped", facts{inLog: true, step: putFailed, class: upload.Credentials, mayReassume: true},
			outcome{do: reassume, attempts: 2}},
		{"in the log: held", facts{inLog: true, held: "organisation org-a has no entry yet"}, outcome{do: spill, attempts: 2}},
		{"in the log: damaged", facts{inLog: true, step: damaged}, outcome{do: spill, attempts: 2}},
		{"spilled after damage: its batch file is checked", facts{step: damaged}, outcome{do: check, attempts: 2}},
		{"in the log: retriable", facts{inLog: true, step: putFailed, class: upload.Retriable}, outcome{do: spill, attempts: 2}},
		{"in the log: refused", facts{inLog: true, step: putFailed, class: upload.Misconfigured, opened: old}, outcome{do: spill, attempts: 2}},
		{"in the log: 412", facts{inLog: true, step: putFailed, class: upload.KeyExists}, outcome{do: spill, attempts: 2}},
		{"in the log: the ledger line not recorded: S3 has it, a file would only take room", facts{inLog: true, step: recordFailed, jitter: 0.5},
			outcome{do: retry, at: now.Add(4500 * time.Millisecond), attempts: 3}},
		{"in the log: the log could not be read, which a spill needs too", facts{inLog: true, step: readFailed, jitter: 0.5},
			outcome{do: retry, at: now.Add(4500 * time.Millisecond), attempts: 3}},
		{"in the log: the spill failed", facts{inLog: true, step: spillFailed, jitter: 0.5},
			outcome{do: retry, at: now.Add(4500 * time.Millisecond), attempts: 3}},
		{"in the log: the attempt panicked", facts{inLog: true, step: panicked, jitter: 0.5},
			outcome{do: retry, at: now.Add(4500 * time.Millisecond), attempts: 3}},
	}
	for _, tc := range cases {
		f := tc.f
		f.now = now
		if f.attempts == 0 {
			f.attempts = 2 // two failed attempts so far, unless the case says otherwise
		}
		if f.opened.IsZero() {
			f.opened = young
		}
		if got := decide(f, p); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestAltered(t *testing.T) {
	b64 := func(sum []byte) string { return base64.StdEncoding.EncodeToString(sum) }
	sealedSHA, alteredSHA := sha256.Sum256([]byte("sealed")), sha256.Sum256([]byte("altered"))
	sealedMD5, alteredMD5 := md5.Sum([]byte("sealed")), md5.Sum([]byte("altered"))
	m := buffer.Manifest{ObjectBytes: 100, SHA256: b64(sealedSHA[:]), ContentMD5: b64(sealedMD5[:])}
	old := buffer.Manifest{ObjectBytes: 100, ContentMD5: m.ContentMD5} // of a version that did not record the SHA-256
	shaDiffers := "its SHA-256 is " + hex.EncodeToString(alteredSHA[:]) + " where its manifest says " + hex.EncodeToString(sealedSHA[:])
	md5Differs := "its MD5 is " + hex.EncodeToString(alteredMD5[:]) + " where its manifest says " + hex.EncodeToString(sealedMD5[:])
	cases := []struct {
		name string
		m    buffer.Manifest
		got  objectSums
		want string
	}{
		{"intact", m, objectSums{100, m.SHA256, m.ContentMD5}, ""},
		{"a byte flipped", m, objectSums{100, b64(alteredSHA[:]), b64(alteredMD5[:])}, shaDiffers + ", " + md5Differs},
		{"cut short", m, objectSums{60, b64(alteredSHA[:]), b64(alteredMD5[:])},
			shaDiffers + ", it has 60 bytes where its manifest says 100, " + md5Differs},
		{"only the manifest's MD5 altered: S3 would refuse it too", m, objectSums{100, m.SHA256, b64(alteredMD5[:])}, md5Differs},
		{"an older manifest: intact", old, objectSums{100, b64(alteredSHA[:]), m.ContentMD5}, ""},
		{"an older manifest: altered", old, objectSums{100, b64(alteredSHA[:]), b64(alteredMD5[:])}, md5Differs},
		{"a manifest checksum that is not base64", buffer.Manifest{ObjectBytes: 100, SHA256: "not base64!", ContentMD5: m.ContentMD5},
			objectSums{100, b64(alteredSHA[:]), m.ContentMD5}, "its SHA-256 is " + hex.EncodeToString(alteredSHA[:]) + ` where its manifest says "not base64!"`},
	}
	for _, tc := range cases {
		if got := altered(tc.m, tc.got); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
