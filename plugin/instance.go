// Package plugin is the wivaudit output: it decodes Fluent Bit chunks, routes each record by organisation and
// kind into the durable buffer, seals batches by size or age and uploads them to S3 in the background.
package plugin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/record"
)

// Retry backoff for failed uploads: full jitter, capped.
const (
	backoffBase = time.Second
	backoffCap  = 5 * time.Minute
	// A destination's refused credentials are dropped and its role assumed again at most this often.
	reassumeEvery = 30 * time.Second
)

// Instance is one [OUTPUT] wivaudit section. Flush is safe for concurrent use (Fluent Bit's Workers).
type Instance struct {
	cfg    *conf.Config
	log    *logger
	dec    *record.Decoder
	store  *buffer.Store
	dests  *destinations
	send   sender
	queue  *queue
	now    func() time.Time
	chunks sync.Pool // *buffer.Chunk, one per flush under way
	encode buffer.Encoder

	sealNow      chan struct{}
	stopReloader context.CancelFunc
	reloaderDone chan struct{}
	stopSealer   context.CancelFunc
	stopUploads  context.CancelFunc
	sealerDone   chan struct{}
	uploadersWG  sync.WaitGroup
	rejectReport every
	fullReport   every
	deadFull     every
	usageLevel   atomic.Int32
	closeOnce    sync.Once

	accepted, rejected, discarded, delivered, objects, conflicts, reassumed, quarantined atomic.Int64

	failed [misconfigured + 1]atomic.Int64 // failed upload attempts by class
}

// New opens the store, recovers what it holds and starts sealing and uploading. name prefixes log lines.
func New(cfg *conf.Config, name string, out LogFunc) (*Instance, error) {
	c, err := newClients(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	hooks, err := testHooksFromEnv()
	if err != nil {
		return nil, err
	}
	return start(cfg, name, out, c, hooks)
}

func start(cfg *conf.Config, name string, out LogFunc, send sender, hooks testHooks) (*Instance, error) {
	in := &Instance{
		cfg:          cfg,
		log:          newLogger(out, "["+name+"] ", cfg.ExternalID),
		dec:          record.NewDecoder(cfg.OrgIDKey, cfg.KindKey, int(cfg.MaxRecordSize)),
		now:          time.Now,
		sealNow:      make(chan struct{}, 1),
		sealerDone:   make(chan struct{}),
		reloaderDone: make(chan struct{}),
		rejectReport: every{interval: 10 * time.Second},
		fullReport:   every{interval: 10 * time.Second},
		deadFull:     every{interval: 10 * time.Second},
	}
	in.queue = newQueue(in.now)
	in.encode = objectEncoder(cfg.CompressionLevel)
	in.chunks.New = func() any { return buffer.NewChunk() }
	store, rec, err := buffer.Open(cfg.StoreDir, buffer.Options{MaxBatch: cfg.TotalFileSize, Limit: cfg.StoreDirLimitSize,
		QuarantineLimit: cfg.QuarantineLimitSize, DeadLetterLimit: cfg.DeadLetterLimitSize, Now: in.now,
		KeyClock: hooks.keyClock, Crash: hooks.crash})
	if err != nil {
		return nil, fmt.Errorf("Store_Dir: %w", err)
	}
	if in.dests, err = newDestinations(cfg, name, store, in.log); err != nil {
		store.Close()
		return nil, err
	}
	in.store, in.send = store, send
	in.recovered(rec)
	in.checkUsage()

	sealCtx, stopSealer := context.WithCancel(context.Background())
	upCtx, stopUploads := context.WithCancel(context.Background())
	reloadCtx, stopReloader := context.WithCancel(context.Background())
	in.stopSealer, in.stopUploads, in.stopReloader = stopSealer, stopUploads, stopReloader
	go in.sealer(sealCtx)
	go in.reloader(reloadCtx)
	for range cfg.UploadWorkers {
		in.uploadersWG.Add(1)
		go in.uploader(upCtx)
	}
	in.log.logf(LevelInfo, "delivering to %s, buffering in %s", in.dests.describe(), cfg.StoreDir)
	return in, nil
}

// recovered queues what the store recovered and reports what it could not use.
func (in *Instance) recovered(rec *buffer.Recovery) {
	for _, b := range rec.Batches {
		in.queue.push(&item{batch: b, due: in.now()})
	}
	if len(rec.Batches)+rec.Pending > 0 {
		in.log.logf(LevelInfo, "recovered %d sealed batches and %d batches to seal from %s", len(rec.Batches), rec.Pending, in.cfg.StoreDir)
	}
	if len(rec.MovedAside) > 0 {
		in.log.logf(LevelError, "recovery could not read %d file(s) of %s and moved them to %s/quarantine: %s; inspect them, and move a batch's two files back into %s/batches to replay it",
			len(rec.MovedAside), in.cfg.StoreDir, in.cfg.StoreDir, strings.Join(rec.MovedAside, ", "), in.cfg.StoreDir)
	}
	if rec.TornTail > 0 {
		in.log.logf(LevelInfo, "recovery dropped %d bytes of appends cut short by a crash; they were never acknowledged, so Fluent Bit sends them again", rec.TornTail)
	}
	if len(rec.Damaged) > 0 {
		in.deadLetterDamaged("the log", rec.Damaged)
	}
}

// reloader rereads Destinations_File when it changes. An invalid version keeps the current destinations and
// is reported once; a valid one takes effect at once, and held batches are tried again.
func (in *Instance) reloader(ctx context.Context) {
	defer close(in.reloaderDone)
	if in.cfg.DestinationsFile == "" {
		return
	}
	tick := time.NewTicker(in.cfg.DestinationsRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		what, err := in.dests.reload()
		switch {
		case err != nil:
			in.log.limitedf(LevelError, "reload", in.now(), "Destinations_File %s was changed but cannot be used, keeping the previous destinations: %v", in.cfg.DestinationsFile, err)
		case what != "":
			in.log.logf(LevelInfo, "Destinations_File reloaded: %s", what)
			in.queue.expedite()
		}
	}
}

// Flush takes one chunk: every record is either appended durably to the log or rejected (into the dead-letter
// file while it has room) before OK is returned. It never waits on the network. When the disk refuses the
// write it returns Retry, so Fluent Bit keeps the chunk and sends it again.
func (in *Instance) Flush(chunk []byte, tag string) Result {
	c := in.chunks.Get().(*buffer.Chunk)
	defer in.chunks.Put(c)
	c.Reset()
	var dead []byte
	var firstReject string
	rejected := 0
	in.dests.receive(tag)
	in.dec.Decode(chunk, tag, func(ev *record.Event) {
		if ev.Reject == "" {
			var skip bool
			if ev.Org, ev.Reject, skip = in.dests.admit(ev.Org, tag, ev.Raw); skip {
				return
			}
		}
		if ev.Reject != "" {
			dead = appendDeadLetter(dead, in.now(), tag, ev)
			if rejected == 0 {
				firstReject = ev.Reject
			}
			rejected++
			return
		}
		// Add copies the record: the decoder reuses its buffer for the next one.
		c.Add(buffer.Stream{Org: ev.Org, Kind: ev.Kind}, ev.JSON)
	})
	// Refuse the whole chunk when it does not fit, rather than keep part of it and have it sent twice.
	if !in.store.Reserve(c.Size()) {
		in.store.Relieve()
		signal(in.sealNow)
		if ok, _ := in.fullReport.allow(in.now()); ok {
			used, limit := in.store.Usage()
			in.log.logf(LevelWarn, "Store_Dir_Limit_Size reached: %d of %d bytes used, the chunk needs %d; asking Fluent Bit to retry it until uploads free space",
				used, limit, c.Size())
		}
		in.checkUsage()
		return Retry
	}
	// Rejections are written first: if the append then fails, the retry writes them again, which is harmless,
	// where the other order would buffer the chunk's good records twice.
	if rejected > 0 && !in.deadLetter(dead, rejected, tag, firstReject) {
		in.store.Release(c.Size())
		return Retry
	}
	if err := in.store.Commit(c); err != nil {
		in.log.limitedf(LevelError, "append\x00"+rootCause(err), in.now(), "cannot buffer records, asking Fluent Bit to retry the chunk: %v", err)
		return Retry
	}
	in.checkUsage()
	in.accepted.Add(int64(c.Records()))
	signal(in.sealNow)
	return OK
}

// deadLetter keeps a chunk's rejected records (one line each), or reports false when the chunk should be
// retried. Those that do not fit in the file are discarded, loudly: holding them back would stop the good
// records of every organisation behind records that can never be delivered.
func (in *Instance) deadLetter(lines []byte, rejected int, tag, first string) bool {
	n, err := in.store.DeadLetter(lines)
	if err != nil && !errors.Is(err, buffer.ErrDeadLetterFull) {
		in.log.limitedf(LevelError, "deadletter\x00"+rootCause(err), in.now(), "cannot write %d rejected records to %s, asking Fluent Bit to retry the chunk: %v",
			rejected, in.store.DeadLetterPath(), err)
		return false
	}
	in.rejected.Add(int64(rejected))
	if err != nil {
		kept := bytes.Count(lines[:n], []byte{'\n'})
		in.discarded.Add(int64(rejected - kept))
		if ok, held := in.deadFull.allow(in.now()); ok {
			in.log.logf(LevelError, "%s is full (%v): kept %d and discarded %d of a chunk's %d rejected record(s) with tag %q (first: %s); %d discarded since start%s; move the file away (a new one is started) or raise Dead_Letter_Limit_Size",
				in.store.DeadLetterPath(), err, kept, rejected-kept, rejected, tag, first, in.discarded.Load(), heldNote(held))
		}
		return true
	}
	if ok, held := in.rejectReport.allow(in.now()); ok {
		in.log.logf(LevelWarn, "rejected %d record(s) of a chunk with tag %q (first: %s); kept in %s; %d rejected since start%s",
			rejected, tag, first, in.store.DeadLetterPath(), in.rejected.Load(), heldNote(held))
	}
	return true
}

// heldNote tells how many chunks a rate-limited report stands for besides its own.
func heldNote(held int) string {
	if held == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d more chunks like it since the last report)", held)
}

// appendDeadLetter adds one JSON line: when, the tag, why, and the record as JSON (or its raw msgpack when it
// could not be read).
func appendDeadLetter(dst []byte, now time.Time, tag string, ev *record.Event) []byte {
	line := struct {
		Time    string          `json:"time"`
		Tag     string          `json:"tag"`
		Reason  string          `json:"reason"`
		Record  json.RawMessage `json:"record,omitempty"`
		Msgpack string          `json:"msgpack_base64,omitempty"`
	}{Time: now.UTC().Format(time.RFC3339Nano), Tag: tag, Reason: ev.Reject, Record: ev.JSON}
	if ev.JSON == nil {
		line.Msgpack = base64.StdEncoding.EncodeToString(ev.Raw)
	}
	b, _ := json.Marshal(line)
	return append(append(dst, b...), '\n')
}

func (in *Instance) sealer(ctx context.Context) {
	defer close(in.sealerDone)
	tick := time.NewTicker(min(time.Second, in.cfg.UploadTimeout/4))
	defer tick.Stop()
	var st statusReport
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			in.store.Rotate(in.now().Add(-in.cfg.UploadTimeout))
			st.maybe(in, in.now())
		case <-in.sealNow:
		}
		in.sealClosed(time.Time{})
	}
}

// statusReport logs a status line every Status_Interval, unless nothing happened since the last one and
// nothing waits for upload.
type statusReport struct {
	next time.Time
	last string
}

func (s *statusReport) maybe(in *Instance, now time.Time) {
	switch {
	case in.cfg.StatusInterval == 0:
		return
	case s.next.IsZero():
		s.next, s.last = now.Add(in.cfg.StatusInterval), in.counters()
		return
	case now.Before(s.next):
		return
	}
	s.next = now.Add(in.cfg.StatusInterval)
	counters, waiting := in.counters(), in.queue.len()
	if counters == s.last && waiting == 0 {
		return
	}
	s.last = counters
	in.log.logf(LevelInfo, "status: %s", in.status(counters, waiting))
}

// counters sums up what the instance did since it started.
func (in *Instance) counters() string {
	discarded := ""
	if n := in.discarded.Load(); n > 0 {
		discarded = fmt.Sprintf(" (%d discarded: the dead-letter file was full)", n)
	}
	return fmt.Sprintf("%d records accepted, %d rejected%s, %d delivered in %d objects; failed upload attempts: %d retriable, %d credentials, %d refused; %d key conflicts (412), %d role re-assumptions, %d batches quarantined%s",
		in.accepted.Load(), in.rejected.Load(), discarded, in.delivered.Load(), in.objects.Load(),
		in.failed[retriable].Load(), in.failed[credentials].Load(), in.failed[misconfigured].Load(),
		in.conflicts.Load(), in.reassumed.Load(), in.quarantined.Load(), in.dests.counters())
}

// status adds what waits now: sealed batches, the age of the oldest undelivered record (sealed or not), and
// the disk used.
func (in *Instance) status(counters string, waiting int) string {
	ms, ok := in.queue.oldest()
	if logMs, logOK := in.store.OldestPending(); logOK && (!ok || logMs < ms) {
		ms, ok = logMs, true
	}
	oldest := ""
	if ok {
		oldest = fmt.Sprintf("; the oldest undelivered record arrived %s ago", in.now().Sub(time.UnixMilli(ms)).Round(time.Second))
	}
	used, _ := in.store.Usage()
	return fmt.Sprintf("%s; %d sealed batches waiting for upload%s; %d bytes buffered in Store_Dir", counters, waiting, oldest, used)
}

// sealRound is how many closed batches are sealed together, sharing one folder sync and one log append.
const sealRound = 64

// sealClosed seals closed batches with their final keys and queues them for upload. Past the deadline (if
// set) it stops: the batches left are durable in the log and sealed at the next start.
func (in *Instance) sealClosed(deadline time.Time) {
	closed := in.store.TakeClosed()
	for len(closed) > 0 {
		if !deadline.IsZero() && in.now().After(deadline) {
			for _, rest := range closed {
				in.store.PutBack(rest)
			}
			in.log.logf(LevelInfo, "%d batches left unsealed at shutdown; they are sealed at the next start", len(closed))
			return
		}
		round := closed[:min(len(closed), sealRound)]
		closed = closed[len(round):]
		for _, r := range in.store.Seal(round, in.naming, in.encode) {
			in.sealed(r)
		}
	}
}

// naming gives a closed batch its destination and key, fixed at seal time.
func (in *Instance) naming(p *buffer.Pending) (string, func(int64) string) {
	dest, prefix := in.dests.seal(p.Org)
	return dest, func(ms int64) string { return objectKey(prefix, p.Org, p.Kind, ms) }
}

// sealed reports what sealing one batch found and queues the batch.
func (in *Instance) sealed(r buffer.Sealed) {
	p := r.Pending
	if r.Err != nil {
		in.log.limitedf(LevelError, "seal\x00"+rootCause(r.Err), in.now(), "%v; will try again", r.Err)
		in.store.PutBack(p)
		return
	}
	if r.Report.TornTail > 0 {
		in.log.logf(LevelWarn, "%s: dropped the last %d bytes of its buffer, an append interrupted by a crash; it was never acknowledged, so Fluent Bit sends it again",
			p.Stream, r.Report.TornTail)
	}
	if len(r.Report.Damaged) > 0 {
		in.deadLetterDamaged("the buffer of "+p.Stream.String(), r.Report.Damaged)
	}
	if r.Report.Unreleased != nil {
		in.log.limitedf(LevelError, "release\x00"+rootCause(r.Report.Unreleased), in.now(), "sealed %s but cannot mark its records as sealed in the log (%v); the log keeps them until the next start", p.Stream, r.Report.Unreleased)
	}
	if r.Batch != nil {
		in.queue.push(&item{batch: r.Batch, due: in.now()})
	}
}

func (in *Instance) deadLetterDamaged(where string, regions [][]byte) {
	var lines []byte
	for _, r := range regions {
		b, _ := json.Marshal(map[string]string{
			"time": in.now().UTC().Format(time.RFC3339Nano), "reason": "damaged in " + where,
			"buffer_base64": base64.StdEncoding.EncodeToString(r),
		})
		lines = append(append(lines, b...), '\n')
	}
	in.log.logf(LevelError, "%d damaged regions in %s (disk corruption?) moved to %s", len(regions), where, in.store.DeadLetterPath())
	if _, err := in.store.DeadLetter(lines); err != nil {
		in.log.logf(LevelError, "cannot write all damaged buffer regions to the dead-letter file: %v", err)
	}
}

func (in *Instance) uploader(ctx context.Context) {
	defer in.uploadersWG.Done()
	for {
		it, ok := in.queue.pop(ctx)
		if !ok {
			return
		}
		in.queue.done(it, in.attempt(ctx, it))
	}
}

// attempt uploads one batch and reports whether it stays queued.
func (in *Instance) attempt(ctx context.Context, it *item) bool {
	b := it.batch
	d, hold := in.dests.resolve(b)
	if hold != "" {
		it.due = in.now().Add(in.cfg.HoldRetryInterval)
		in.log.limitedf(LevelWarn, "hold\x00"+b.Org, in.now(), "holding %s (%d records): %s; next look in %s", b.Key, b.Records, hold, in.cfg.HoldRetryInterval)
		return true
	}
	if want := objectKey(d.KeyPrefix, d.OrgID, b.Kind, b.KeyMs); want != b.Key {
		if err := in.store.Rekey(b, want, b.KeyMs); err != nil {
			in.log.limitedf(LevelError, "rekey\x00"+b.Org, in.now(), "cannot move %s to the key of its destination: %v", b.Key, err)
			it.attempts++
			it.due = in.now().Add(backoff(it.attempts))
			return true
		}
	}
	err := in.send.put(ctx, d, b)
	if err == nil {
		if err := in.store.Remove(b); err != nil {
			in.log.limitedf(LevelError, "remove", in.now(), "uploaded %s but cannot remove it from the buffer: %v", b.Key, err)
		}
		in.delivered.Add(int64(b.Records))
		in.objects.Add(1)
		in.checkUsage()
		in.log.logf(LevelDebug, "uploaded s3://%s/%s (%d records, %d bytes)", d.Bucket, b.Key, b.Records, b.ObjectBytes)
		return false
	}
	if ctx.Err() != nil {
		return true // shutting down: the batch stays on disk
	}
	now := in.now()
	if err := in.store.SaveAttempt(b); err != nil {
		in.log.limitedf(LevelWarn, "manifest", now, "cannot record the attempt in the manifest of %s: %v", b.Key, err)
	}
	class := classify(err)
	in.failed[class].Add(1)
	switch class {
	case keyExists:
		old := b.Key
		ms := in.store.NextMs(b.Stream())
		if err := in.store.Rekey(b, objectKey(d.KeyPrefix, b.Org, b.Kind, ms), ms); err != nil {
			it.attempts++
			it.due = now.Add(backoff(it.attempts))
			in.log.limitedf(LevelError, "rekey\x00"+b.Org, now, "%s exists in S3 and the batch cannot take a new key: %v", old, err)
			return true
		}
		in.conflicts.Add(1)
		it.due = now
		in.log.limitedf(LevelWarn, "412\x00"+d.Bucket, now, "%s already exists in S3 (another writer, or an earlier attempt whose answer was lost); uploading the batch as %s instead", old, b.Key)
		return true
	case credentials:
		if in.send.invalidate(d, now) {
			in.reassumed.Add(1)
			it.due = now
			in.log.limitedf(LevelWarn, "credentials\x00"+d.RoleARN, now, "the role's credentials were refused for %s; assuming the role again: %s", b.Key, explain(err, d, in.cfg))
			return true
		}
	case misconfigured:
		age := now.Sub(time.UnixMilli(b.Opened))
		if age >= in.cfg.QuarantineAfter {
			return in.quarantine(b, age, explain(err, d, in.cfg))
		}
		it.due = now.Add(in.cfg.HoldRetryInterval)
		in.log.limitedf(LevelError, "refused\x00"+d.OrgID+"\x00"+d.Bucket, now, "upload of %s (%d records) refused, attempt %d; held, next try in %s, quarantine in %s: %s",
			b.Key, b.Records, b.Attempts, in.cfg.HoldRetryInterval, in.cfg.QuarantineAfter-age.Round(time.Second), explain(err, d, in.cfg))
		return true
	}
	it.attempts++
	it.due = now.Add(backoff(it.attempts))
	in.log.limitedf(LevelWarn, "retry\x00"+d.Bucket, now, "upload of %s (%d records) failed, attempt %d, next in %s; the batch stays buffered: %s",
		b.Key, b.Records, b.Attempts, it.due.Sub(now).Round(time.Millisecond), explain(err, d, in.cfg))
	return true
}

// quarantine moves a batch refused for longer than Quarantine_After out of the upload path. When the
// quarantine folder is full, the batch stays and is retried: nothing is deleted.
func (in *Instance) quarantine(b *buffer.Batch, age time.Duration, cause string) bool {
	if err := in.store.Quarantine(b); err != nil {
		in.log.limitedf(LevelError, "quarantine\x00"+b.Org, in.now(), "upload of %s refused for %s and it cannot be quarantined (%v); keeping it in the upload path: %s",
			b.Key, age.Round(time.Second), err, cause)
		return true
	}
	in.quarantined.Add(1)
	in.checkUsage()
	object, manifest := b.Files()
	in.log.limitedf(LevelError, "quarantined\x00"+b.Org, in.now(), "upload of %s (%d records) refused for %s: moved to quarantine (%s, %s); to replay it after fixing the cause, move both files into %s/batches and restart. Cause: %s",
		b.Key, b.Records, age.Round(time.Second), object, manifest, in.cfg.StoreDir, cause)
	return false
}

// checkUsage logs when the store crosses 80 % and 95 % of Store_Dir_Limit_Size, and when it is back under.
func (in *Instance) checkUsage() {
	used, limit := in.store.Usage()
	if limit == 0 {
		return
	}
	level := int32(0)
	switch {
	case used*100 >= limit*95:
		level = 2
	case used*100 >= limit*80:
		level = 1
	}
	old := in.usageLevel.Swap(level)
	switch {
	case level > old:
		in.log.logf(LevelWarn, "Store_Dir holds %d of %d bytes (Store_Dir_Limit_Size), over %d%%; at the limit flushes are retried until uploads free space",
			used, limit, map[int32]int{1: 80, 2: 95}[level])
	case level < old && level == 0:
		in.log.logf(LevelInfo, "Store_Dir is back under 80%% of Store_Dir_Limit_Size (%d of %d bytes)", used, limit)
	}
}

func backoff(attempts int) time.Duration {
	ceiling := backoffCap
	if attempts < 20 {
		ceiling = min(backoffCap, backoffBase<<attempts)
	}
	return backoffBase/2 + rand.N(ceiling)
}

// Close seals and uploads what fits in Shutdown_Timeout and leaves the rest on disk for the next start.
func (in *Instance) Close() {
	in.closeOnce.Do(func() {
		deadline := in.now().Add(in.cfg.ShutdownTimeout)
		in.stopReloader()
		<-in.reloaderDone
		in.stopSealer()
		<-in.sealerDone
		in.store.Rotate(time.Time{})
		in.sealClosed(deadline)
		in.queue.expedite()
		timer := time.NewTimer(max(0, deadline.Sub(in.now())))
		drained := in.queue.drain(timer.C)
		timer.Stop()
		in.stopUploads()
		in.uploadersWG.Wait()
		in.store.Close()
		in.dests.close()
		left := ""
		if !drained {
			left = fmt.Sprintf("; %d batches stay in %s for the next start", in.queue.len(), in.cfg.StoreDir)
		}
		in.log.logf(LevelInfo, "stopped: %s%s", in.counters(), left)
	})
}
