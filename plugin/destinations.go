package plugin

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/metrics"
	"github.com/wiv/out_wivaudit/record"
)

// Where a batch goes, fixed when it is sealed (Manifest.Destination).
const (
	toOutput  = "default" // the [OUTPUT]-level destination: Org_ID's, or the platform's archive
	toOrg     = "org"     // the organisation's entry in the destinations file, as it is at upload time
	toPending = "pending" // unlisted when sealed (Unlisted_Orgs hold): its entry, once the file has one
)

// knownFile keeps every organisation the destinations file ever listed, so that after a restart an
// organisation removed from the file is still held rather than archived.
const knownFile = "destinations-known.json"

// destinations maps organisations to where their audit logs go. An output serves one organisation (Org_ID),
// or those of Destinations_File (reloaded when it changes), or is the platform's archive. Organisation IDs
// match case-insensitively (conf.OrgKey); objects are keyed with the destination's spelling.
type destinations struct {
	cfg    *conf.Config
	own    conf.Destination // the [OUTPUT]-level destination
	store  *buffer.Store
	log    *logger
	now    func() time.Time
	member *member // this output among the process's outputs

	mu      sync.RWMutex
	byOrg   map[string]conf.Destination // by conf.OrgKey
	known   map[string]bool             // by conf.OrgKey
	stamp   [32]byte                    // checksum of the file as loaded
	failed  [32]byte                    // checksum of the last invalid version, reported once
	invalid error                       // why that version is invalid
	file    fileState                   // what the reloads left, for /destinations and the metrics

	left     atomic.Int64 // records of organisations another output serves
	unserved atomic.Int64 // records of organisations no output serves, kept in the dead-letter file here
	unlisted atomic.Int64 // records of organisations the file does not list, held (Unlisted_Orgs hold)
}

func newDestinations(cfg *conf.Config, name string, store *buffer.Store, log *logger, clk clock) (*destinations, error) {
	d := &destinations{cfg: cfg, store: store, log: log, now: clk.Now, byOrg: map[string]conf.Destination{}, known: map[string]bool{}}
	d.own, _ = cfg.Output()
	if cfg.DestinationsFile != "" {
		data, err := store.ReadFile(knownFile)
		if err != nil {
			return nil, err
		}
		if data != nil {
			var orgs []string
			if err := json.Unmarshal(data, &orgs); err != nil {
				return nil, fmt.Errorf("%s: %w", knownFile, err)
			}
			for _, o := range orgs {
				d.known[conf.OrgKey(o)] = true
			}
		}
		if _, err := d.reload(); err != nil {
			return nil, fmt.Errorf("Destinations_File %s: %w", cfg.DestinationsFile, err)
		}
	}
	d.member = process.join(name, d.lists, cfg.OrgID == "", cfg.Archive() && cfg.DestinationsFile == "", clk)
	return d, nil
}

// close takes this output out of the process's outputs.
func (d *destinations) close() { process.leave(d.member) }

// describe says where this output delivers, for its first log line.
func (d *destinations) describe() string {
	archive := d.own
	archive.OrgID = "<org_id>"
	switch {
	case d.cfg.OrgID != "":
		return fmt.Sprintf("organisation %s only: %s", d.own.OrgID, d.own)
	case d.cfg.DestinationsFile == "":
		return fmt.Sprintf("the platform's archive for every organisation it receives: %s", archive)
	case d.cfg.Archive():
		return fmt.Sprintf("the destinations in %s; unlisted organisations to the platform's archive %s", d.cfg.DestinationsFile, archive)
	}
	return fmt.Sprintf("the destinations in %s; unlisted organisations: %s", d.cfg.DestinationsFile, d.cfg.UnlistedOrgs)
}

// fileState is what the reloads of the destinations file left: when the version in use was loaded, whether
// the file in place can be used, its last error and the reloads counted.
type fileState struct {
	loadedAt      time.Time
	organisations int
	failingSince  time.Time // zero while the file in place is the version in use
	failure       string    // what the current failure is: the version's checksum and the error
	lastError     string
	lastErrorAt   time.Time
	at            conf.Position // of the last error, when the parser names one
	reloads       [2]int64      // by reloadResults
}

// Results of a reload, for wivaudit_destinations_reloads_total.
const (
	reloadOK = iota
	reloadFailed
)

var reloadResults = [2]string{reloadOK: "ok", reloadFailed: "failed"}

// reload reads the destinations file and applies it whole, or not at all: an invalid version, or one whose
// organisations cannot be remembered in Store_Dir, leaves the current destinations in place. A version that
// does not validate is reported once. It reports what changed, or "" when nothing did.
func (d *destinations) reload() (string, error) {
	data, err := os.ReadFile(d.cfg.DestinationsFile)
	if err != nil {
		d.failing([32]byte{}, err)
		return "", err
	}
	sum := sha256.Sum256(data)
	d.mu.RLock()
	same, reported, invalid := sum == d.stamp, sum == d.failed, d.invalid
	d.mu.RUnlock()
	switch {
	case same:
		d.mu.Lock()
		fixed := d.file.usable(d.now(), false)
		d.mu.Unlock()
		if fixed != "" {
			return "the version in use is back in place" + fixed, nil
		}
		return "", nil
	case reported:
		d.failing(sum, invalid)
		return "", nil
	}
	parsed, err := conf.ParseDestinations(data, d.cfg)
	if err != nil {
		d.mu.Lock()
		d.failed, d.invalid = sum, err
		d.mu.Unlock()
		d.failing(sum, err)
		return "", err
	}
	d.mu.RLock()
	added, removed, changed := 0, 0, 0
	for org, dest := range parsed {
		if old, ok := d.byOrg[org]; !ok {
			added++
		} else if old != dest {
			changed++
		}
	}
	for org := range d.byOrg {
		if _, ok := parsed[org]; !ok {
			removed++
		}
	}
	known := make(map[string]bool, len(d.known)+added)
	for org := range d.known {
		known[org] = true
	}
	d.mu.RUnlock()
	grew := false
	for org := range parsed {
		if !known[org] {
			known[org], grew = true, true
		}
	}
	if grew {
		list := make([]string, 0, len(known))
		for org := range known {
			list = append(list, org)
		}
		sort.Strings(list)
		data, _ := json.Marshal(list)
		if err := d.store.WriteFile(knownFile, data); err != nil {
			err = fmt.Errorf("cannot remember its organisations in %s: %w", knownFile, err)
			d.failing(sum, err)
			return "", err
		}
	}
	secrets := make([]string, 0, len(parsed))
	for _, dest := range parsed {
		secrets = append(secrets, dest.ExternalID)
	}
	d.log.setSecrets(secrets)
	now := d.now()
	d.mu.Lock()
	d.byOrg, d.known, d.stamp = parsed, known, sum
	fixed := d.file.usable(now, !d.file.loadedAt.IsZero())
	d.file.loadedAt, d.file.organisations = now, len(parsed)
	d.mu.Unlock()
	return fmt.Sprintf("%d organisations (%d added, %d changed, %d removed)%s", len(parsed), added, changed, removed, fixed), nil
}

// failing notes that the file in place (its checksum sum, zero when unreadable) cannot be used for err. A
// failure is counted once, however many reloads find it again.
func (d *destinations) failing(sum [32]byte, err error) {
	msg := d.log.redact(err.Error())
	failure := fmt.Sprintf("%x %s", sum, msg)
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	f := &d.file
	if f.failure == failure {
		return
	}
	if f.failingSince.IsZero() {
		f.failingSince = now
	}
	var at *conf.PositionError
	f.failure, f.lastError, f.lastErrorAt, f.at = failure, msg, now, conf.Position{}
	if errors.As(err, &at) {
		f.at = at.Position
	}
	f.reloads[reloadFailed]++
}

// usable notes that the file in place can be used at now: a new version was applied (a reload, unless it is
// the first load), or the version in use was put back. It says how long the file could not be used, or ""
// when it could.
func (f *fileState) usable(now time.Time, applied bool) string {
	failing := !f.failingSince.IsZero()
	if applied || failing {
		f.reloads[reloadOK]++
	}
	if !failing {
		return ""
	}
	spell := now.Sub(f.failingSince)
	f.failingSince, f.failure = time.Time{}, ""
	return fmt.Sprintf("; the file could not be used for %s", rounded(spell))
}

// fileStatus returns the destinations file as its reloads left it, and its reloads by result; nil without one.
func (d *destinations) fileStatus() (*metrics.DestinationsFile, [2]int64) {
	if d.cfg.DestinationsFile == "" {
		return nil, [2]int64{}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	f := d.file
	return &metrics.DestinationsFile{Path: d.cfg.DestinationsFile, Failing: !f.failingSince.IsZero(), LoadedAt: f.loadedAt.UTC(),
		Organisations: f.organisations, FailingSince: f.failingSince.UTC(), LastError: f.lastError, LastErrorAt: f.lastErrorAt.UTC(),
		ErrorLine: f.at.Line, ErrorColumn: f.at.Column}, f.reloads
}

// lists returns the spelling of org (a conf.OrgKey) in this output's own destinations, if it has one.
func (d *destinations) lists(org string) (string, bool) {
	if d.cfg.OrgID != "" {
		return d.own.OrgID, org == conf.OrgKey(d.own.OrgID)
	}
	d.mu.RLock()
	dest, ok := d.byOrg[org]
	d.mu.RUnlock()
	return dest.OrgID, ok
}

// receive notes that this output flushes records of tag, so that the other outputs know who receives them.
func (d *destinations) receive(tag string) { process.receive(d.member, tag) }

// admit decides what a flush does with a record of ev.Org: buffer it under the spelling it sets in ev.Org,
// reject it into the dead-letter file for the reason it sets in ev.Reject and ev.Why, or skip it because
// another output takes it.
func (d *destinations) admit(ev *record.Event, tag string) (skip bool) {
	org := ev.Org
	key := conf.OrgKey(org)
	if own, ok := d.lists(key); ok {
		ev.Org = own
		return false
	}
	taker, unsure := process.takerOf(d.member, tag, key, ev.Raw)
	if taker != nil {
		d.left.Add(1)
		return true
	}
	now := d.now()
	switch {
	case d.cfg.OrgID != "" && unsure != nil:
		d.unserved.Add(1)
		d.log.limitedf(LevelWarn, "unsure\x00"+key, now, "organisation %s is served by %s, which has not flushed tag %q yet: its records are kept in %s meanwhile, in case it does not receive them",
			org, unsure.name, tag, d.store.DeadLetterPath())
		ev.Reject, ev.Why = fmt.Sprintf("organisation %s is served by %s, which had not flushed tag %q yet: kept here in case it does not receive it (then delivered there too)", org, unsure.name, tag), record.Unserved
		return false
	case d.cfg.OrgID != "":
		d.unserved.Add(1)
		d.log.limitedf(LevelError, "unserved\x00"+key, now, "organisation %s has a destination in no wivaudit output that receives tag %q: its records are kept in %s, not delivered; give it an output or a Destinations_File entry",
			org, tag, d.store.DeadLetterPath())
		ev.Reject, ev.Why = fmt.Sprintf("organisation %s has a destination in no wivaudit output that receives tag %q (this one serves %s)", org, tag, d.own.OrgID), record.Unserved
		return false
	case d.cfg.DestinationsFile == "" || d.cfg.Archive():
		ev.Org = key
		return false
	}
	d.mu.RLock()
	known := d.known[key]
	d.mu.RUnlock()
	switch {
	case known:
		ev.Org = key
		return false
	case d.cfg.UnlistedOrgs == conf.UnlistedDeadLetter:
		ev.Reject, ev.Why = fmt.Sprintf("org_id %q has no destination in Destinations_File (Unlisted_Orgs deadletter)", org), record.Unlisted
		return false
	}
	d.unlisted.Add(1)
	d.log.limitedf(LevelWarn, "unlisted\x00"+key, now, "organisation %s is not in Destinations_File: its records are held in Store_Dir until it is (Unlisted_Orgs hold)", org)
	ev.Org = key
	return false
}

// counters sums up the records this output did not deliver for want of a destination; "" when there are none.
func (d *destinations) counters() string {
	left, unserved, unlisted := d.left.Load(), d.unserved.Load(), d.unlisted.Load()
	if left+unserved+unlisted == 0 {
		return ""
	}
	return fmt.Sprintf("; records of other organisations: %d left to the outputs that serve them, %d kept in the dead-letter file (no output known to receive their tag serves them), %d held (not in Destinations_File)",
		left, unserved, unlisted)
}

// seal chooses a batch's destination and key prefix when it is sealed. An organisation the file lists, or
// listed once, keeps to its own entry: its data never goes to the archive.
func (d *destinations) seal(org string) (destination, prefix string) {
	if d.cfg.DestinationsFile == "" {
		return toOutput, d.own.KeyPrefix
	}
	key := conf.OrgKey(org)
	d.mu.RLock()
	defer d.mu.RUnlock()
	if dest, ok := d.byOrg[key]; ok {
		return toOrg, dest.KeyPrefix
	}
	if d.known[key] {
		return toOrg, d.cfg.KeyPrefix
	}
	if d.cfg.Archive() {
		return toOutput, d.own.KeyPrefix
	}
	return toPending, d.cfg.KeyPrefix
}

// resolve returns where a sealed batch goes now, its OrgID the spelling for its key, or why it is held. A
// batch only ever goes to its own organisation's destination, or to the archive it was sealed for.
func (d *destinations) resolve(b *buffer.Batch) (conf.Destination, string) {
	return d.route(b.Org, b.Destination == toOutput)
}

// current returns where org's next batch goes, or why it is held.
func (d *destinations) current(org string) (conf.Destination, string) {
	dest, _ := d.seal(org)
	return d.route(org, dest == toOutput)
}

// route returns where org's batches go now, those sealed for the [OUTPUT]-level destination (archived) or
// not, or why they are held.
func (d *destinations) route(org string, archived bool) (conf.Destination, string) {
	key := conf.OrgKey(org)
	archive := d.own
	archive.OrgID = org
	switch {
	case d.cfg.OrgID != "" && key == conf.OrgKey(d.own.OrgID):
		return d.own, ""
	case d.cfg.OrgID != "":
		return conf.Destination{}, fmt.Sprintf("organisation %s is not this output's (Org_ID %s), so its batch is held: it was buffered under an earlier configuration; move its files to the Store_Dir of the output that serves it", org, d.own.OrgID)
	case d.cfg.DestinationsFile == "":
		return archive, ""
	case archived && d.cfg.Archive():
		return archive, ""
	}
	d.mu.RLock()
	dest, listed := d.byOrg[key]
	known := d.known[key]
	d.mu.RUnlock()
	switch {
	case listed:
		return dest, ""
	case known:
		return conf.Destination{}, fmt.Sprintf("organisation %s was removed from Destinations_File; its batches are held (never sent elsewhere) until it is listed again", org)
	}
	return conf.Destination{}, fmt.Sprintf("organisation %s has no entry in Destinations_File yet (Unlisted_Orgs hold)", org)
}

// listed returns the organisations this output has a destination of its own for, spelt as configured.
func (d *destinations) listed() []string {
	if d.cfg.OrgID != "" {
		return []string{d.own.OrgID}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	orgs := make([]string, 0, len(d.byOrg))
	for _, dest := range d.byOrg {
		orgs = append(orgs, dest.OrgID)
	}
	return orgs
}
