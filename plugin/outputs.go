package plugin

import (
	"crypto/sha256"
	"slices"
	"sync"
)

// process is every running output of this plugin. Fluent Bit runs all [OUTPUT]s of the .so in one process
// and hands each the chunks whose tag it matches, so an output that meets a record of an organisation it does
// not serve can leave it to another output that receives the same tag.
var process = &outputs{byTag: map[string][]*member{}, claims: newLRU[*member](maxClaims)}

// member is one output among the process's outputs.
type member struct {
	name string
	// lists reports whether the output has a destination of its own for an organisation (a conf.OrgKey).
	lists func(org string) (string, bool)
	// keepsUnlisted: the output keeps the organisations it does not list (a destinations file holds or
	// dead-letters them, an archive delivers them); an Org_ID output leaves them to others.
	keepsUnlisted bool
}

// Bounds: tags whose receivers are remembered, and records kept for organisations no output serves whose
// keeper is remembered.
const (
	maxTags   = 4096
	maxClaims = 16384
)

type outputs struct {
	mu     sync.Mutex
	byTag  map[string][]*member // the outputs that flushed records of each tag
	claims *lru[*member]        // which output keeps each record no output serves
}

func (o *outputs) join(name string, lists func(string) (string, bool), keepsUnlisted bool) *member {
	return &member{name: name, lists: lists, keepsUnlisted: keepsUnlisted}
}

// leave forgets m. What it claimed is forgotten too: an output that replaces it (a hot reload) keeps such
// records again, at worst twice, never not at all.
func (o *outputs) leave(m *member) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for tag, rs := range o.byTag {
		o.byTag[tag] = slices.DeleteFunc(rs, func(x *member) bool { return x == m })
	}
	o.claims = newLRU[*member](maxClaims)
}

// receive notes that m flushes records of tag. Past maxTags, what was learnt is dropped and learnt again.
func (o *outputs) receive(m *member, tag string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	rs, ok := o.byTag[tag]
	if slices.Contains(rs, m) {
		return
	}
	if !ok && len(o.byTag) >= maxTags {
		clear(o.byTag)
	}
	o.byTag[tag] = append(rs, m)
}

// takerOf returns the output that takes a record of org (a conf.OrgKey) with tag, raw its msgpack bytes,
// which m does not list, or nil when m keeps it itself. Among Org_ID outputs that all miss it, the first to
// flush the record keeps it: it is kept once.
func (o *outputs) takerOf(m *member, tag, org string, raw []byte) *member {
	o.mu.Lock()
	defer o.mu.Unlock()
	if by := leaveTo(m, o.byTag[tag], org); by != nil || m.keepsUnlisted {
		return by
	}
	h := sha256.New()
	h.Write([]byte(tag))
	h.Write([]byte{0})
	h.Write(raw)
	key := string(h.Sum(nil)[:16])
	if keeper, ok := o.claims.get(key); ok && keeper != m {
		return keeper
	}
	o.claims.put(key, m)
	return nil
}

// leaveTo picks the output that takes a record of org which m does not list, among the receivers of its
// tag: one that lists org; else, unless m keeps unlisted organisations itself, one that does. nil: none.
func leaveTo(m *member, receivers []*member, org string) *member {
	for _, r := range receivers {
		if _, ok := r.lists(org); ok && r != m {
			return r
		}
	}
	if m.keepsUnlisted {
		return nil
	}
	for _, r := range receivers {
		if r.keepsUnlisted && r != m {
			return r
		}
	}
	return nil
}
