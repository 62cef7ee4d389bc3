package plugin

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
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

	mu     sync.RWMutex
	byOrg  map[string]conf.Destination // by conf.OrgKey
	known  map[string]bool             // by conf.OrgKey
	stamp  [32]byte                    // checksum of the file as loaded
	failed [32]byte                    // checksum of the last invalid version, reported once

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

// reload reads the destinations file and applies it whole, or not at all: an invalid version, or one whose
// organisations cannot be remembered in Store_Dir, leaves the current destinations in place. A version that
// does not validate is reported once. It reports what changed, or "" when nothing did.
func (d *destinations) reload() (string, error) {
	data, err := os.ReadFile(d.cfg.DestinationsFile)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	d.mu.RLock()
	same, reported := sum == d.stamp, sum == d.failed
	d.mu.RUnlock()
	if same || reported {
		return "", nil
	}
	parsed, err := conf.ParseDestinations(data, d.cfg)
	if err != nil {
		d.mu.Lock()
		d.failed = sum
		d.mu.Unlock()
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
			return "", fmt.Errorf("cannot remember its organisations in %s: %w", knownFile, err)
		}
	}
	secrets := make([]string, 0, len(parsed))
	for _, dest := range parsed {
		secrets = append(secrets, dest.ExternalID)
	}
	d.log.setSecrets(secrets)
	d.mu.Lock()
	d.byOrg, d.known, d.stamp = parsed, known, sum
	d.mu.Unlock()
	return fmt.Sprintf("%d organisations (%d added, %d changed, %d removed)", len(parsed), added, changed, removed), nil
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
