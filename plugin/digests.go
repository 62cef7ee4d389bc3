package plugin

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/digest"
	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/upload"
)

// Store_Dir keeps the digests' state in its digests folder: the chain id of this Store_Dir (one chain per
// replica), and per organisation where its chain stands (<org key>.json), with the digest made but not yet
// known to be in the bucket.
const (
	digestFolder = "digests"
	chainIDFile  = "chain-id"
)

var chainIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// ledgerReader reads the delivery ledger: *ledger.Ledger.
type ledgerReader interface {
	Entries(f ledger.Filter) iter.Seq2[ledger.Entry, error]
}

// digester writes, every Digest_Interval, one signed digest per organisation whose destination has digests on:
// what the ledger recorded as delivered to that destination in the interval, chained to the previous one.
type digester struct {
	in     *Instance
	signer *digest.Signer
	chain  string // replaced, under mu, when another writer is found using it
	every  time.Duration
	ledger ledgerReader

	mu      sync.Mutex
	chains  map[string]*orgChain // by conf.OrgKey; written by the loop only, under mu
	reading time.Time            // the end of the digests being made, raised before the ledger is read for them

	written, failed atomic.Int64
}

// orgChain is one organisation's chain, and the retry state of its pending digest.
type orgChain struct {
	st       digest.ChainState
	attempts int       // failed uploads of the pending digest in a row
	due      time.Time // when the pending digest may be tried again
}

// newDigester loads the signing key, this Store_Dir's chain id (created once) and the chains of the
// organisations with digests on. It returns nil without Digest_Signing_Key.
func newDigester(in *Instance) (*digester, error) {
	cfg := in.cfg
	if cfg.DigestSigningKey == "" {
		return nil, nil
	}
	signer, err := digest.LoadSigner(cfg.DigestSigningKey)
	if err != nil {
		return nil, fmt.Errorf("Digest_Signing_Key: %w", err)
	}
	g := &digester{in: in, signer: signer, every: cfg.DigestInterval, ledger: in.ledger, chains: map[string]*orgChain{}}
	if g.chain, err = chainID(in.store); err != nil {
		return nil, fmt.Errorf("Store_Dir %s/%s/%s: %w", cfg.StoreDir, digestFolder, chainIDFile, err)
	}
	now := in.now()
	for _, d := range in.dests.digested() {
		if _, err := g.chainOf(d, now); err != nil {
			return nil, err
		}
	}
	in.log.logf(LevelInfo, "digests every %s for %d organisations, chain %s, signed by the key of fingerprint %s", g.every,
		len(g.chains), g.chain, signer.Fingerprint())
	return g, nil
}

// chainID reads this Store_Dir's chain id, or makes it.
func chainID(store *buffer.Store) (string, error) {
	data, err := store.ReadFileIn(digestFolder, chainIDFile)
	if err != nil {
		return "", err
	}
	if data != nil {
		id := strings.TrimSpace(string(data))
		if !chainIDPattern.MatchString(id) {
			return "", errors.New("not a chain id (16 lower-case hex digits); it was altered: restore it, or remove it to start a new chain (verification then reports the old chain as stopped)")
		}
		return id, nil
	}
	id, err := digest.NewChainID()
	if err != nil {
		return "", err
	}
	return id, store.WriteFileIn(digestFolder, chainIDFile, []byte(id+"\n"))
}

// digested returns the destinations whose organisations get digests: this output's own (Org_ID), or the
// file's entries with digests on, by organisation (their state files are written in the same order each
// time). The archive never gets any.
func (d *destinations) digested() []conf.Destination {
	if d.cfg.OrgID != "" {
		if d.own.Digests {
			return []conf.Destination{d.own}
		}
		return nil
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []conf.Destination
	for _, dest := range d.byOrg {
		if dest.Digests {
			out = append(out, dest)
		}
	}
	slices.SortFunc(out, func(a, b conf.Destination) int { return strings.Compare(conf.OrgKey(a.OrgID), conf.OrgKey(b.OrgID)) })
	return out
}

func stateFile(org string) string { return conf.OrgKey(org) + ".json" }

// chainOf returns the organisation's chain: as persisted, or a new one starting at the current interval's
// start (so that what was delivered since then is listed), persisted at once.
func (g *digester) chainOf(d conf.Destination, now time.Time) (*orgChain, error) {
	key := conf.OrgKey(d.OrgID)
	if c := g.chains[key]; c != nil {
		return c, nil
	}
	data, err := g.in.store.ReadFileIn(digestFolder, stateFile(d.OrgID))
	if err != nil {
		return nil, fmt.Errorf("digest state of %s: %w", d.OrgID, err)
	}
	var st digest.ChainState
	if data != nil {
		if st, err = digest.DecodeChainState(data); err != nil {
			return nil, fmt.Errorf("%s/%s/%s: %w; restore it, or remove it to start the organisation's chain again", g.in.cfg.StoreDir, digestFolder, stateFile(d.OrgID), err)
		}
	} else {
		st = digest.NewChain(g.chain, g.intervalStart(now))
		if err := g.save(d.OrgID, st); err != nil {
			return nil, err
		}
	}
	c := &orgChain{st: st}
	g.mu.Lock()
	g.chains[key] = c
	g.mu.Unlock()
	return c, nil
}

// intervalStart is the start of the Digest_Interval that now is in (the end of a digest due now): a multiple
// of the interval since the Unix epoch.
func (g *digester) intervalStart(now time.Time) time.Time {
	end, _ := digest.ChainState{}.Due(now, g.every)
	return end
}

func (g *digester) save(org string, st digest.ChainState) error {
	data, err := st.Encode()
	if err == nil {
		err = g.in.store.WriteFileIn(digestFolder, stateFile(org), data)
	}
	if err != nil {
		return fmt.Errorf("cannot save the digest state of %s in %s/%s: %w", org, g.in.cfg.StoreDir, digestFolder, err)
	}
	return nil
}

func (g *digester) set(c *orgChain, st digest.ChainState) {
	g.mu.Lock()
	c.st = st
	g.mu.Unlock()
}

// keepFrom is from when the ledger's entries are not yet in a digest written: the earliest start of the
// chains' next digests, and never later than the start of the current interval, where a chain made now starts.
func (g *digester) keepFrom() time.Time {
	from := g.intervalStart(g.in.now())
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.chains {
		if c.st.End.Before(from) {
			from = c.st.End
		}
	}
	return from
}

// floor is the latest interval end of the digests made or being made: after a clock step back, what is
// delivered is stamped no earlier in the ledger, so that the next digest lists it.
func (g *digester) floor() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	floor := g.reading
	for _, c := range g.chains {
		end := c.st.End
		if c.st.Pending != nil {
			end = c.st.Pending.End
		}
		if end.After(floor) {
			floor = end
		}
	}
	return floor
}

// loop makes and uploads digests at each tick until ctx ends; a digest under way then stays pending in
// Store_Dir for the next start.
func (g *digester) loop(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		g.round(ctx, g.in.now())
	}
}

// work is one organisation's chain and where its digests go.
type work struct {
	d conf.Destination
	c *orgChain
}

// round uploads the pending digests that are due, and makes and uploads the digests whose interval ended.
func (g *digester) round(ctx context.Context, now time.Time) {
	var toUpload, toMake []work
	digested := g.in.dests.digested()
	g.forgetOthers(digested)
	for _, d := range digested {
		c, err := g.chainOf(d, now)
		if err == nil && c.st.Moved(d.Bucket, d.KeyPrefix) {
			err = g.move(d, c)
		}
		switch {
		case err != nil:
			g.in.log.limitedf(LevelError, "digest\x00"+d.OrgID, now, "no digest for %s: %v", d.OrgID, err)
		case c.due.After(now):
		case c.st.Pending != nil:
			toUpload = append(toUpload, work{d, c})
		default:
			if _, ok := c.st.Due(now, g.every); ok {
				toMake = append(toMake, work{d, c})
			}
		}
	}
	if len(toMake) > 0 && ctx.Err() == nil {
		toUpload = append(toUpload, g.makeDigests(toMake, now)...)
	}
	g.uploadAll(ctx, toUpload)
}

// move starts the organisation's chain again in its new bucket or key prefix, from where it stood there. A
// digest made for the old place and not uploaded is not put into the new one.
func (g *digester) move(d conf.Destination, c *orgChain) error {
	st := digest.NewChain(c.st.Chain, c.st.End)
	if err := g.save(d.OrgID, st); err != nil {
		return err
	}
	dropped := "no digest was waiting"
	if p := c.st.Pending; p != nil {
		dropped = fmt.Sprintf("the digest %s made for it and not written there is dropped", p.Key)
	}
	g.in.log.logf(LevelWarn, "digests of %s now go to s3://%s/%s instead of s3://%s/%s (%s); a new chain starts there, from %s",
		d.OrgID, d.Bucket, d.KeyPrefix, c.st.Bucket, c.st.Prefix, dropped, st.End.Format(time.RFC3339))
	g.set(c, st)
	c.attempts, c.due = 0, time.Time{}
	return nil
}

// forgetOthers drops the chains of organisations no longer digested (removed from the destinations file, or
// digests switched off), so that they no longer keep the ledger's entries; their state stays in Store_Dir, where
// the chain goes on from if they come back.
func (g *digester) forgetOthers(digested []conf.Destination) {
	keep := map[string]bool{}
	for _, d := range digested {
		keep[conf.OrgKey(d.OrgID)] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	maps.DeleteFunc(g.chains, func(key string, _ *orgChain) bool { return !keep[key] })
}

// makeDigests makes and persists the digests of the chains whose interval ended, from one read of the ledger, and
// returns those made.
func (g *digester) makeDigests(ws []work, now time.Time) []work {
	end := g.intervalStart(now)
	from := end
	for _, w := range ws {
		if w.c.st.End.Before(from) {
			from = w.c.st.End
		}
	}
	// The floor goes up to end before the ledger is read: an entry recorded after the read is then stamped at
	// end or later, for the next digests, never before end, where the digests made now would not list it.
	g.mu.Lock()
	if end.After(g.reading) {
		g.reading = end
	}
	g.mu.Unlock()
	byOrg := map[string][]ledger.Entry{}
	for e, err := range g.ledger.Entries(ledger.Filter{From: from, To: end}) {
		if err != nil {
			g.in.log.limitedf(LevelError, "digest-ledger", now, "cannot read the delivery ledger, so no digest is made until it can be: %v", err)
			return nil
		}
		byOrg[conf.OrgKey(e.Org)] = append(byOrg[conf.OrgKey(e.Org)], e)
	}
	var made []work
	for _, w := range ws {
		d, st := w.d, w.c.st
		base := d.KeyPrefix + d.OrgID + "/"
		var objects []digest.Object
		for _, e := range byOrg[conf.OrgKey(d.OrgID)] {
			// Only what went into this destination: not the archive, nor a bucket or prefix it had before.
			if !e.Time.Before(st.End) && e.Bucket == d.Bucket && strings.HasPrefix(e.Key, base) {
				objects = append(objects, digest.FromLedger(e))
			}
		}
		next, err := g.signer.Make(st, digest.Interval{Org: d.OrgID, Prefix: d.KeyPrefix, Bucket: d.Bucket, End: end, Every: g.every, Objects: objects, MadeAt: now})
		if err == nil {
			err = g.save(d.OrgID, next)
		}
		if err != nil {
			g.failed.Add(1)
			g.in.log.limitedf(LevelError, "digest\x00"+d.OrgID, now, "no digest for %s up to %s: %v; trying again", d.OrgID, end.Format(time.RFC3339), err)
			continue
		}
		g.set(w.c, next)
		made = append(made, w)
	}
	return made
}

// uploadAll uploads the pending digests, Upload_Workers at a time.
func (g *digester) uploadAll(ctx context.Context, ws []work) {
	next := make(chan work)
	var wg sync.WaitGroup
	for range min(len(ws), g.in.cfg.UploadWorkers) {
		wg.Go(func() {
			for w := range next {
				if p := g.in.contain(digestsLoop, func() { g.upload(ctx, w.d, w.c) }); p != nil {
					g.in.logPanic(p, fmt.Sprintf("the digest of %s stays pending, tried again at the next round", w.d.OrgID))
				}
			}
		})
	}
	for _, w := range ws {
		next <- w
	}
	close(next)
	wg.Wait()
}

// upload puts a chain's pending digest into its organisation's bucket. S3's 412 means this chain wrote it
// already (before a crash, or an answer that was lost) if it was sent before; on its first upload, that
// another writer holds the key.
func (g *digester) upload(ctx context.Context, d conf.Destination, c *orgChain) {
	p := c.st.Pending
	first := p.Unsent
	if first {
		st := c.st.Sending()
		if err := g.save(d.OrgID, st); err != nil {
			g.retryLater(d, c, err)
			return
		}
		g.set(c, st)
	}
	err := g.in.send.PutDigest(ctx, d, p.Key, p.Body, digest.MetadataSignature, p.Signature)
	if err != nil && ctx.Err() != nil {
		return // shutting down: it stays pending in Store_Dir
	}
	now := g.in.now()
	class := upload.Classify(err)
	if class == upload.KeyExists && first {
		g.rechain(d, c, now)
		return
	}
	if err == nil || class == upload.KeyExists {
		st := c.st.Uploaded()
		g.set(c, st)
		c.attempts, c.due = 0, time.Time{}
		g.written.Add(1)
		if err := g.save(d.OrgID, st); err != nil {
			g.in.log.limitedf(LevelError, "digest-state\x00"+d.OrgID, now, "%v; the next start uploads %s again, which S3 answers as already there", err, p.Key)
		}
		g.in.log.logf(LevelDebug, "digest s3://%s/%s written (sequence %d)", d.Bucket, p.Key, p.Sequence)
		return
	}
	g.failed.Add(1)
	c.attempts++
	why := upload.Explain(err, d, g.in.cfg)
	switch {
	case class == upload.Credentials && g.in.send.MayReassume(d, now) && g.in.send.Reassume(d, now):
		g.in.reassumed.Add(1)
		c.due = now
		g.in.log.limitedf(LevelWarn, "credentials\x00"+d.RoleARN, now, "the role's credentials were refused for digest %s; assuming the role again: %s", p.Key, why)
	case class == upload.Misconfigured:
		c.due = now.Add(g.in.cfg.HoldRetryInterval)
		g.in.log.limitedf(LevelError, "digest-refused\x00"+d.OrgID, now, "digest %s refused, attempt %d; it stays pending in Store_Dir (no later digest is made until it is written), next try in %s: %s",
			p.Key, c.attempts, g.in.cfg.HoldRetryInterval, why)
	default:
		c.due = now.Add(backoff(c.attempts, g.in.jitter()))
		g.in.log.limitedf(LevelWarn, "digest-retry\x00"+d.OrgID, now, "digest %s failed, attempt %d, next in %s: %s",
			p.Key, c.attempts, c.due.Sub(now).Round(time.Millisecond), why)
	}
}

// retryLater counts a failed attempt at the pending digest and sets the next one after a backoff.
func (g *digester) retryLater(d conf.Destination, c *orgChain, err error) {
	now := g.in.now()
	g.failed.Add(1)
	c.attempts++
	c.due = now.Add(backoff(c.attempts, g.in.jitter()))
	g.in.log.limitedf(LevelWarn, "digest-retry\x00"+d.OrgID, now, "digest %s failed, attempt %d, next in %s: %v",
		c.st.Pending.Key, c.attempts, c.due.Sub(now).Round(time.Millisecond), err)
}

// rechain makes the pending digest, whose key another writer took, again as the first of a new chain of this
// Store_Dir, to be uploaded at the next round.
func (g *digester) rechain(d conf.Destination, c *orgChain, now time.Time) {
	taken, old := c.st.Pending.Key, c.st.Chain
	id, err := g.newChainID(old)
	var st digest.ChainState
	if err == nil {
		st, err = g.signer.Rechain(c.st, id, now)
	}
	if err == nil {
		err = g.save(d.OrgID, st)
	}
	if err != nil {
		g.retryLater(d, c, fmt.Errorf("its key was already taken by another writer, and no new chain could start: %w", err))
		return
	}
	g.set(c, st)
	c.attempts, c.due = 0, time.Time{}
	g.in.log.logf(LevelError, "digest s3://%s/%s was already taken by another writer when first sent: chain %s is not this Store_Dir's alone (a copy of it runs elsewhere, or the state of %s was reset while the clock was behind); %s's digests go on in the new chain %s, from %s",
		d.Bucket, taken, old, d.OrgID, d.OrgID, id, st.End.Format(time.RFC3339))
}

// newChainID gives this Store_Dir a new chain id in place of old, unless an organisation's digest did already.
func (g *digester) newChainID(old string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.chain != old {
		return g.chain, nil
	}
	id, err := digest.NewChainID()
	if err == nil {
		err = g.in.store.WriteFileIn(digestFolder, chainIDFile, []byte(id+"\n"))
	}
	if err != nil {
		return "", fmt.Errorf("a new chain id in %s/%s/%s: %w", g.in.cfg.StoreDir, digestFolder, chainIDFile, err)
	}
	g.chain = id
	return id, nil
}

// ledgerOptions are the delivery ledger's: with digests, it keeps what no digest written lists yet.
func (in *Instance) ledgerOptions() ledger.Options {
	opt := ledger.Options{Limit: in.cfg.LedgerLimitSize}
	if in.cfg.DigestSigningKey != "" {
		opt.KeepFrom = func() time.Time { return in.digests.keepFrom() }
		opt.Floor = func() time.Time { return in.digests.floor() }
	}
	return opt
}

// startDigests starts the digest loop, ticking every second on clk: a digest is made within a second of its
// interval's end.
func (in *Instance) startDigests(clk clock) {
	ctx, stop := context.WithCancel(context.Background())
	in.stopDigests, in.digestsDone = stop, make(chan struct{})
	if in.digests == nil {
		close(in.digestsDone)
		return
	}
	tick, stopTick := clk.Every(time.Second)
	in.background(ctx, digestsLoop, func() { in.digests.loop(ctx, tick) }, func() { stopTick(); close(in.digestsDone) })
}
