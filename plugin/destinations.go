package plugin

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
)

// Where a batch goes, fixed when it is sealed (Manifest.Destination).
const (
	toDefault = "default" // the [OUTPUT] destination
	toOrg     = "org"     // the organisation's entry in the destinations file, as it is at upload time
	toPending = "pending" // unlisted when sealed (Unlisted_Orgs hold): its entry, once the file has one
)

// knownFile keeps every organisation the destinations file ever listed, so that after a restart an
// organisation removed from the file is still held rather than sent to the default.
const knownFile = "destinations-known.json"

// destinations maps organisations to where their audit logs go, from Destinations_File (reloaded when it
// changes) and the [OUTPUT] default.
type destinations struct {
	cfg    *conf.Config
	def    conf.Destination
	hasDef bool
	store  *buffer.Store
	log    *logger

	mu     sync.RWMutex
	byOrg  map[string]conf.Destination
	known  map[string]bool
	stamp  [32]byte // checksum of the file as loaded
	failed [32]byte // checksum of the last invalid version, reported once
}

func newDestinations(cfg *conf.Config, store *buffer.Store, log *logger) (*destinations, error) {
	d := &destinations{cfg: cfg, store: store, log: log, byOrg: map[string]conf.Destination{}, known: map[string]bool{}}
	d.def, d.hasDef = cfg.Default()
	if cfg.DestinationsFile == "" {
		return d, nil
	}
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
			d.known[o] = true
		}
	}
	if _, err := d.reload(); err != nil {
		return nil, fmt.Errorf("Destinations_File %s: %w", cfg.DestinationsFile, err)
	}
	return d, nil
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

// reject says why records of org cannot be taken (Unlisted_Orgs deadletter), or "".
func (d *destinations) reject(org string) string {
	if d.cfg.DestinationsFile == "" || d.cfg.UnlistedOrgs != conf.UnlistedDeadLetter {
		return ""
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if _, ok := d.byOrg[org]; ok || d.known[org] {
		return ""
	}
	return fmt.Sprintf("org_id %q has no destination in Destinations_File (Unlisted_Orgs deadletter)", org)
}

// seal chooses a batch's destination and key prefix when it is sealed. An organisation the file lists, or
// listed once, keeps to its own entry: its data never goes to the default.
func (d *destinations) seal(org string) (destination, prefix string) {
	if d.cfg.DestinationsFile == "" {
		return toDefault, d.def.KeyPrefix
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if dest, ok := d.byOrg[org]; ok {
		return toOrg, dest.KeyPrefix
	}
	if d.known[org] {
		return toOrg, d.cfg.KeyPrefix
	}
	if d.cfg.UnlistedOrgs == conf.UnlistedDefault && d.hasDef {
		return toDefault, d.def.KeyPrefix
	}
	return toPending, d.cfg.KeyPrefix
}

// resolve returns where a sealed batch goes now, or why it is held.
func (d *destinations) resolve(b *buffer.Batch) (conf.Destination, string) {
	if b.Destination == toDefault || b.Destination == "" {
		return d.def, ""
	}
	d.mu.RLock()
	dest, ok := d.byOrg[b.Org]
	d.mu.RUnlock()
	switch {
	case ok:
		return dest, ""
	case b.Destination == toOrg:
		return conf.Destination{}, fmt.Sprintf("organisation %s was removed from Destinations_File; its batches are held (never sent to the default) until it is listed again", b.Org)
	}
	return conf.Destination{}, fmt.Sprintf("organisation %s has no entry in Destinations_File yet (Unlisted_Orgs hold)", b.Org)
}
