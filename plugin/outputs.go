package plugin

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/wiv/out_wivaudit/lru"
)

// process is every running output of this plugin. Fluent Bit runs all [OUTPUT]s of the .so in one process
// and hands each the chunks whose tag it matches, so an output that meets a record of an organisation it does
// not serve can leave it to another output that receives the same tag.
var process = &outputs{byTag: map[string][]*member{}, learnt: make(chan struct{}), waited: map[waitKey]bool{},
	claims: lru.New[*member](maxClaims)}

// learnWait is how long an output that meets a record of an organisation another output serves waits, once per
// tag and output, for that output to flush the tag too (they are handed the same chunk at the same time),
// before it keeps the record itself in case that output does not receive the tag.
const learnWait = time.Second

// member is one output among the process's outputs.
type member struct {
	name string
	// lists reports whether the output has a destination of its own for an organisation (a conf.OrgKey).
	lists func(org string) (string, bool)
	// keepsUnlisted: the output keeps the organisations it does not list (a destinations file holds or
	// dead-letters them, an archive delivers them); an Org_ID output leaves them to others.
	keepsUnlisted bool
	// keepsAll: the platform's archive (Unlisted_Orgs archive without Destinations_File) keeps every record it
	// receives, also those of organisations another output delivers to their own bucket: it is a copy.
	keepsAll bool
	clock    clock // its waits for other outputs
}

// Bounds: tags whose receivers are remembered, and records kept for organisations no output serves whose
// keeper is remembered.
const (
	maxTags   = 4096
	maxClaims = 16384
)

type outputs struct {
	mu      sync.Mutex
	members []*member
	byTag   map[string][]*member // the outputs that flushed records of each tag
	learnt  chan struct{}        // closed, and replaced, whenever an output is first seen flushing a tag
	waited  map[waitKey]bool     // the outputs waited for in vain, by tag
	claims  *lru.Cache[*member]  // which output keeps each record no output serves
}

type waitKey struct {
	tag string
	m   *member
}

func (o *outputs) join(name string, lists func(string) (string, bool), keepsUnlisted, keepsAll bool, clk clock) *member {
	m := &member{name: name, lists: lists, keepsUnlisted: keepsUnlisted, keepsAll: keepsAll, clock: clk}
	o.mu.Lock()
	o.members = append(o.members, m)
	o.mu.Unlock()
	return m
}

// leave forgets m. What it claimed is forgotten too: an output that replaces it (a hot reload) keeps such
// records again, at worst twice, never not at all.
func (o *outputs) leave(m *member) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.members = slices.DeleteFunc(o.members, func(x *member) bool { return x == m })
	for tag, rs := range o.byTag {
		o.byTag[tag] = slices.DeleteFunc(rs, func(x *member) bool { return x == m })
	}
	for k := range o.waited {
		if k.m == m {
			delete(o.waited, k)
		}
	}
	o.claims = lru.New[*member](maxClaims)
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
		clear(o.waited)
	}
	o.byTag[tag] = append(rs, m)
	close(o.learnt)
	o.learnt = make(chan struct{})
}

// takerOf returns the output that takes a record of org (a conf.OrgKey) with tag, raw its msgpack bytes,
// which m does not list, or nil when m keeps it itself, as the platform's archive always does. Among Org_ID outputs that all miss it, the first to
// flush the record keeps it: it is kept once. Outputs learn who receives a tag as they flush it: when an
// output that lists org has not flushed the tag yet, takerOf waits up to learnWait for it, once per tag; if
// m keeps the record after all, unsure names that output, which may receive the record too.
func (o *outputs) takerOf(m *member, tag, org string, raw []byte) (taker, unsure *member) {
	if m.keepsAll {
		return nil, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var deadline time.Time
	for {
		receivers := o.byTag[tag]
		if by := leaveTo(m, receivers, org); by != nil {
			return by, nil
		}
		unsure = o.unheard(m, receivers, org)
		if unsure == nil || o.waited[waitKey{tag, unsure}] {
			break
		}
		now := m.clock.Now()
		if deadline.IsZero() {
			deadline = now.Add(learnWait)
		}
		if !now.Before(deadline) {
			o.waited[waitKey{tag, unsure}] = true
			break
		}
		learnt := o.learnt
		timeUp, stop := m.clock.At(deadline)
		o.mu.Unlock()
		select {
		case <-learnt:
		case <-timeUp:
		}
		stop()
		o.mu.Lock()
	}
	if m.keepsUnlisted {
		return nil, unsure
	}
	h := sha256.New()
	h.Write([]byte(tag))
	h.Write([]byte{0})
	h.Write(raw)
	key := string(h.Sum(nil)[:16])
	if keeper, ok := o.claims.Get(key); ok && keeper != m {
		return keeper, nil
	}
	o.claims.Put(key, m)
	return nil, unsure
}

// unheard returns an output other than m that lists org but is not among the receivers of a tag, or nil.
func (o *outputs) unheard(m *member, receivers []*member, org string) *member {
	for _, r := range o.members {
		if _, ok := r.lists(org); ok && r != m && !slices.Contains(receivers, r) {
			return r
		}
	}
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
