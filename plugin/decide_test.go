package plugin

import (
	"testing"
	"time"

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
		{"ready", facts{}, outcome{do: send, attempts: 2}},
		{"uploaded", facts{step: uploaded}, outcome{do: done, attempts: 2}},
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
