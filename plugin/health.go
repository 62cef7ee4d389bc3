package plugin

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/metrics"
	"github.com/wiv/out_wivaudit/upload"
)

// health follows each organisation's deliveries, as the uploads go: the state its last attempt left it in,
// when it was last tried and last delivered, its last error, and counts for the per-organisation metrics.
// What waits for upload is not kept here: it is read from the queue and the store when asked.
type health struct {
	mu       sync.Mutex
	orgs     map[string]*orgHealth    // by conf.OrgKey
	problems map[upload.Problem]int64 // failed upload attempts of every organisation by problem
	cfg      *conf.Config             // for upload.Explain
	redact   func(string) string      // the log's: an error's own words could quote a secret
}

// orgHealth is one organisation's deliveries since start.
type orgHealth struct {
	org                      string // as its batches spell it
	state                    metrics.State
	lastAttempt, lastSuccess time.Time
	lastError                string // upload.Explain, redacted as the log is
	lastErrorAt              time.Time
	advice                   upload.Advice
	uploads                  [outcomes]int64
	problems                 map[upload.Problem]int64
	delivered, quarantined   int64
	failingSince             time.Time // the first attempt of the spell that has not left it ok; zero when ok
	failedAttempts           int64     // the attempts of that spell
}

// Outcomes of an upload attempt, for the metrics: delivered, or the class of its failure.
const (
	delivered = int(upload.Classes)
	outcomes  = delivered + 1
)

var outcomeNames = [outcomes]string{upload.Retriable: "retriable", upload.KeyExists: "key_conflict",
	upload.Credentials: "credentials", upload.Misconfigured: "refused", delivered: "delivered"}

func newHealth(cfg *conf.Config, redact func(string) string) *health {
	return &health{orgs: map[string]*orgHealth{}, problems: map[upload.Problem]int64{}, cfg: cfg, redact: redact}
}

// orgLocked returns org's entry, making it. The caller holds mu.
func (h *health) orgLocked(org string) *orgHealth {
	key := conf.OrgKey(org)
	o := h.orgs[key]
	if o == nil {
		o = &orgHealth{org: org, state: metrics.OK}
		h.orgs[key] = o
	}
	return o
}

// uploaded notes an upload attempt of org's batch to d that ended at now: delivered when err is nil, else
// failed as class says.
func (h *health) uploaded(org string, d conf.Destination, now time.Time, err error, class upload.Class) {
	var explained string
	var advice upload.Advice
	if err != nil {
		explained, advice = h.redact(upload.Explain(err, d, h.cfg)), upload.Advise(err, d, h.cfg)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.orgLocked(org)
	o.lastAttempt = now
	if err == nil {
		o.uploads[delivered]++
		return
	}
	o.uploads[class]++
	o.lastError, o.lastErrorAt, o.advice = explained, now, advice
	if o.problems == nil {
		o.problems = map[upload.Problem]int64{}
	}
	o.problems[advice.Problem]++
	h.problems[advice.Problem]++
}

// decided notes what an attempt does next with a batch of org of records records. When the attempt ends a
// spell of attempts that left the organisation retrying, refused, held or quarantined, it returns the line
// that says so.
func (h *health) decided(org string, a action, records int, now time.Time) (recovered string) {
	s, ok := stateAfter(a)
	if !ok {
		return ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.orgLocked(org)
	last := o.state
	o.state = s
	switch {
	case s != metrics.OK:
		if o.failingSince.IsZero() {
			o.failingSince = now
		}
		o.failedAttempts++
	case !o.failingSince.IsZero():
		class := o.advice.Problem
		if o.lastErrorAt.Before(o.failingSince) {
			class = "" // the spell had no upload error: its object could not be read, or it was held
		}
		recovered = recoveryLine(o.org, last, class, now.Sub(o.failingSince), o.failedAttempts)
		o.failingSince, o.failedAttempts = time.Time{}, 0
	}
	switch a {
	case done:
		o.lastSuccess = now
		o.delivered += int64(records)
	case quarantine, setAside:
		o.quarantined++
	}
	return recovered
}

// recoveryLine says that org delivers again, after how long and how many attempts not ok, and what the last
// of them left it: its state, with the class of its last upload error unless it was held.
func recoveryLine(org string, last metrics.State, class upload.Problem, spell time.Duration, attempts int64) string {
	what := string(last)
	if last != metrics.Held && class != "" {
		what += ", " + string(class)
	}
	return fmt.Sprintf("organisation %s delivers again after %s and %d attempts not ok (last: %s)", org, rounded(spell), attempts, what)
}

// rounded is how long a spell of failures lasted, to the second, or to the millisecond under a second.
func rounded(spell time.Duration) time.Duration {
	if spell < time.Second {
		return spell.Round(time.Millisecond)
	}
	return spell.Round(time.Second)
}

// stateAfter is the state an action leaves its organisation in; ok=false when it says nothing of it (a new
// key after a 412, a batch whose files are gone, the steps on the way).
func stateAfter(a action) (metrics.State, bool) {
	switch a {
	case done, finish:
		return metrics.OK, true
	case retry, reassume:
		return metrics.Retrying, true
	case refused:
		return metrics.Refused, true
	case hold:
		return metrics.Held, true
	case quarantine, setAside:
		return metrics.Quarantined, true
	}
	return "", false
}

// stateNow is an organisation's state as it stands: held whenever its destination cannot be used now
// (whatever its last attempt said: its records would be held), otherwise as its last attempt left it, but
// ok once no longer held.
func stateNow(last metrics.State, heldNow string) metrics.State {
	switch {
	case heldNow != "":
		return metrics.Held
	case last == "" || last == metrics.Held:
		return metrics.OK
	}
	return last
}

// destinations returns every organisation this output knows of: those it has a destination for, those it
// tried to deliver, and those with records waiting, each with its state and what waits. Its cost follows
// the organisations and streams, never the records.
func (in *Instance) destinations() []metrics.Destination {
	now := in.now()
	byKey := map[string]*metrics.Destination{}
	entry := func(org string) *metrics.Destination {
		key := conf.OrgKey(org)
		d := byKey[key]
		if d == nil {
			d = &metrics.Destination{OrgID: org}
			byKey[key] = d
		}
		return d
	}
	for _, org := range in.dests.listed() {
		entry(org).OrgID = org // the configured spelling wins
	}
	wait := func(org string, batches int, records, bytes, oldest int64) {
		d := entry(org)
		d.BatchesWaiting += batches
		d.RecordsWaiting += records
		d.BytesWaiting += bytes
		if t := time.UnixMilli(oldest).UTC(); d.OldestUndelivered.IsZero() || t.Before(d.OldestUndelivered) {
			d.OldestUndelivered = t
		}
	}
	in.queue.each(func(st buffer.Stream, opened int64, records int, json int64) {
		wait(st.Org, 1, int64(records), json, opened)
	})
	for st, u := range in.store.UnsealedStreams() {
		wait(st.Org, u.Batches, u.Records, u.Bytes, u.Oldest)
	}
	last := map[string]metrics.State{}
	in.health.mu.Lock()
	for key, o := range in.health.orgs {
		d := entry(o.org)
		last[key] = o.state
		d.LastAttempt, d.LastSuccess, d.LastError, d.LastErrorAt = o.lastAttempt.UTC(), o.lastSuccess.UTC(), o.lastError, o.lastErrorAt.UTC()
		d.ErrorClass, d.GuideStep = string(o.advice.Problem), o.advice.Step
		d.RecordsDelivered, d.BatchesQuarantined = o.delivered, o.quarantined
	}
	in.health.mu.Unlock()
	out := make([]metrics.Destination, 0, len(byKey))
	for key, d := range byKey {
		dest, held := in.dests.current(d.OrgID)
		d.State, d.HeldReason = stateNow(last[key], held), held
		d.Bucket, d.RoleARN = dest.Bucket, dest.RoleARN
		if !d.OldestUndelivered.IsZero() {
			d.OldestAgeSeconds = max(0, now.Sub(d.OldestUndelivered).Seconds())
		}
		out = append(out, *d)
	}
	return out
}

// notOK names, for the status line, the organisations that are not ok: a few, then how many more.
func notOK(list []metrics.Destination) string {
	const shown = 5
	var names []string
	for _, d := range list {
		if d.State == metrics.OK {
			continue
		}
		what := string(d.State)
		if d.ErrorClass != "" && (d.State == metrics.Refused || d.State == metrics.Retrying || d.State == metrics.Quarantined) {
			what += ": " + d.ErrorClass
		}
		names = append(names, d.OrgID+" ("+what+")")
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	more := ""
	if len(names) > shown {
		more = fmt.Sprintf(" and %d more", len(names)-shown)
		names = names[:shown]
	}
	return "; not ok: " + strings.Join(names, ", ") + more
}
