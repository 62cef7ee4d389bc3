// Package plugin is the wivaudit output: it decodes Fluent Bit chunks, routes each record by organisation and
// kind into the durable buffer, seals batches by size or age and uploads them to S3 in the background.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/metrics"
	"github.com/wiv/out_wivaudit/record"
	"github.com/wiv/out_wivaudit/upload"
	"github.com/wiv/out_wivaudit/vfs"
)

// Instance is one [OUTPUT] wivaudit section. Flush is safe for concurrent use (Fluent Bit's Workers).
type Instance struct {
	cfg    *conf.Config
	log    *logger
	dec    *record.Decoder
	store  *buffer.Store
	ledger *ledger.Ledger // every object delivered
	dests  *destinations
	send   sender
	queue  *queue
	stored storedObjects // batches S3 stored whose ledger lines wait to be recorded together
	clock  clock
	chunks sync.Pool // *buffer.Chunk, one per flush under way
	encode buffer.Encoder

	sealNow      chan struct{}
	sealing      sync.Mutex // held by sealWithinRoom
	digests      *digester  // nil without Digest_Signing_Key
	stopDigests  context.CancelFunc
	digestsDone  chan struct{}
	stopReloader context.CancelFunc
	reloaderDone chan struct{}
	stopSealer   context.CancelFunc
	stopUploads  context.CancelFunc // no new upload attempts
	abortUploads context.CancelFunc // the attempts under way end too
	sealerDone   chan struct{}
	uploadersWG  sync.WaitGroup
	rejectReport every
	fullReport   every
	deadFull     every
	usageLevel   atomic.Int32
	diskUnknown  atomic.Bool // the free space of Store_Dir's file system could not be read, and that was logged
	closeOnce    sync.Once

	policy policy // of the upload decisions

	health        *health
	roles         *upload.RoleCounts
	uploadSeconds prometheus.Histogram
	member        *metrics.Member // on the listener of Metrics_Listen; nil without one
	closing       atomic.Bool
	crash         func(point string) // the test hooks' crash points past the store's
	jitter        func() float64     // where in its backoff window a retry falls
	attempting    func()             // called as each upload attempt starts (deps.attempting)

	accepted, rejected, discarded, delivered, objects, conflicts, reassumed, quarantined, corrupt, lost atomic.Int64

	failed       [upload.Classes]atomic.Int64 // failed upload attempts by class
	rejects      [record.Reasons]atomic.Int64 // rejected records by class
	deadLettered atomic.Int64                 // rejected records kept in the dead-letter file
	panics       [loops]atomic.Int64          // panics contained, by loop
}

// New opens the store, recovers what it holds and starts sealing and uploading. name prefixes log lines;
// hooks is the zero TestHooks except in tests.
func New(cfg *conf.Config, name string, out LogFunc, hooks TestHooks) (*Instance, error) {
	c, err := upload.New(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	limitMemory()
	return start(cfg, name, out, deps{send: c, roles: &c.Roles, clock: realClock{}, hooks: hooks})
}

// memoryLimit is the Go runtime's soft memory limit in Fluent Bit's process, unless GOMEMLIMIT sets one: the
// collector then runs more often rather than let the heap grow to twice what is live. It is sized for 30,000
// streams with data at once (about 25 MB live when they all close together): in Fluent Bit 4.2.8, ingesting
// and delivering 10,000 organisations x 3 peaked at 90 MiB RSS with 48 MiB (108 MiB with 64 MiB); with 40 MiB
// the collector ran after every few uploads and took three times the CPU.
const memoryLimit = 48 << 20

var limitMemory = sync.OnceFunc(func() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
})

// deps are what an instance works with besides its settings: S3 and the counts of its role sessions, the
// clock, Store_Dir's file system, the jitter of retries, the test hooks, and the objects' encoder. The fault
// matrix fixes the jitter, so that its runs number their file operations alike.
type deps struct {
	send   sender
	roles  *upload.RoleCounts // nil: none
	clock  clock
	fs     vfs.FS         // Store_Dir's file system, the store's and the ledger's; nil: vfs.OS
	jitter func() float64 // where a retry falls in its backoff window, in [0, 1); nil: random
	hooks  TestHooks
	encode buffer.Encoder // nil: gzip at Compression_Level
	// attempting, when set, is called as each upload attempt starts: the fault matrix holds attempts while it
	// seals, so that its runs number their file operations alike.
	attempting func()
}

func start(cfg *conf.Config, name string, out LogFunc, with deps) (*Instance, error) {
	in := &Instance{
		cfg:          cfg,
		log:          newLogger(out, "["+name+"] ", cfg.ExternalID),
		dec:          record.NewDecoder(cfg.OrgIDKey, cfg.KindKey, int(cfg.MaxRecordSize)),
		clock:        with.clock,
		sealNow:      make(chan struct{}, 1),
		sealerDone:   make(chan struct{}),
		reloaderDone: make(chan struct{}),
		rejectReport: every{interval: 10 * time.Second},
		fullReport:   every{interval: 10 * time.Second},
		deadFull:     every{interval: 10 * time.Second},
	}
	in.queue = newQueue(with.clock)
	in.stored.group = linesPerUploader * cfg.UploadWorkers
	if in.attempting = with.attempting; in.attempting == nil {
		in.attempting = func() {}
	}
	if in.jitter = with.jitter; in.jitter == nil {
		in.jitter = rand.Float64
	}
	in.health, in.roles, in.uploadSeconds = newHealth(cfg, in.log.redact), with.roles, newUploadSeconds(name)
	if in.roles == nil {
		in.roles = &upload.RoleCounts{}
	}
	in.policy = policy{holdRetry: cfg.HoldRetryInterval, quarantineAfter: cfg.QuarantineAfter}
	in.encode = with.encode
	if in.encode == nil {
		in.encode = objectEncoder(cfg.CompressionLevel)
	}
	in.chunks.New = func() any { return buffer.NewChunk() }
	store, rec, err := buffer.Open(cfg.StoreDir, buffer.Options{MaxBatch: cfg.TotalFileSize, Limit: cfg.StoreDirLimitSize,
		QuarantineLimit: cfg.QuarantineLimitSize, DeadLetterLimit: cfg.DeadLetterLimitSize, Now: with.clock.Now,
		KeyClock: with.hooks.keyClock, Crash: with.hooks.crash, FS: with.fs,
		KeepDamaged: func(st buffer.Stream, regions [][]byte) error {
			return in.deadLetterDamaged("the buffer of "+st.String(), regions)
		}})
	if errors.Is(err, buffer.ErrLocked) {
		return nil, fmt.Errorf("Store_Dir: %w; give every [OUTPUT] its own Store_Dir", err)
	}
	if err != nil {
		return nil, fmt.Errorf("Store_Dir: %w", err)
	}
	in.crash = with.hooks.crash
	if in.crash == nil {
		in.crash = func(string) {}
	}
	fsys := with.fs
	if fsys == nil {
		fsys = vfs.OS
	}
	if in.ledger, err = ledger.Open(fsys, filepath.Join(cfg.StoreDir, ledger.Folder), with.clock.Now, in.ledgerOptions()); err != nil {
		store.Close()
		return nil, fmt.Errorf("Store_Dir: %w", err)
	}
	if in.dests, err = newDestinations(cfg, name, store, in.log, with.clock); err != nil {
		in.ledger.Close()
		store.Close()
		return nil, err
	}
	in.store, in.send = store, with.send
	if in.digests, err = newDigester(in); err != nil {
		in.ledger.Close()
		store.Close()
		in.dests.close()
		return nil, err
	}
	in.recovered(rec)
	in.checkUsage()
	if err := in.joinMetrics(name); err != nil {
		in.ledger.Close()
		store.Close()
		in.dests.close()
		return nil, err
	}

	sealCtx, stopSealer := context.WithCancel(context.Background())
	upCtx, stopUploads := context.WithCancel(context.Background())
	reqCtx, abortUploads := context.WithCancel(context.Background())
	reloadCtx, stopReloader := context.WithCancel(context.Background())
	in.stopSealer, in.stopUploads, in.abortUploads, in.stopReloader = stopSealer, stopUploads, abortUploads, stopReloader
	// The tickers start here, not in their goroutines: a fake clock moved after start reaches them.
	sealTick, stopSealTick := with.clock.Every(min(time.Second, cfg.UploadTimeout/4))
	in.background(sealCtx, sealerLoop, func() { in.sealer(sealCtx, sealTick) }, func() { stopSealTick(); close(in.sealerDone) })
	var reloadTick <-chan time.Time // nil without a destinations file: no reloads
	stopReloadTick := func() {}
	if cfg.DestinationsFile != "" {
		reloadTick, stopReloadTick = with.clock.Every(cfg.DestinationsRefresh)
	}
	in.background(reloadCtx, reloaderLoop, func() { in.reloader(reloadCtx, reloadTick) }, func() { stopReloadTick(); close(in.reloaderDone) })
	in.startDigests(with.clock)
	for range cfg.UploadWorkers {
		in.uploadersWG.Add(1)
		in.background(upCtx, uploaderLoop, func() { in.uploader(upCtx, reqCtx) }, in.uploadersWG.Done)
	}
	in.log.logf(LevelInfo, "delivering to %s, buffering in %s", in.dests.describe(), cfg.StoreDir)
	return in, nil
}

func (in *Instance) now() time.Time { return in.clock.Now() }

// recovered queues what the store recovered and reports what it could not use.
func (in *Instance) recovered(rec *buffer.Recovery) {
	rec.Batches, rec.InLog = in.removeDelivered(rec.Batches, rec.InLog)
	for _, b := range rec.Batches {
		in.queue.push(&item{batch: b, due: in.now()})
	}
	for _, p := range rec.InLog {
		in.queue.push(&item{sealed: p, due: in.now()})
	}
	if sealed := len(rec.Batches) + len(rec.InLog); sealed+rec.Pending > 0 {
		in.log.logf(LevelInfo, "recovered %d sealed batches and %d batches to seal from %s", sealed, rec.Pending, in.cfg.StoreDir)
	}
	if len(rec.MovedAside) > 0 {
		in.log.logf(LevelError, "recovery set aside %d file(s) of %s it could not use (unreadable, or an object without its manifest: a seal cut short, whose records the log still holds, or a lost manifest) in %s/quarantine: %s; inspect them; a batch's two files moved back into %s/batches are replayed at the next start",
			len(rec.MovedAside), in.cfg.StoreDir, in.cfg.StoreDir, strings.Join(rec.MovedAside, ", "), in.cfg.StoreDir)
	}
	if rec.TornTail > 0 {
		in.log.logf(LevelInfo, "recovery dropped %d bytes of appends cut short by a crash; they were never acknowledged, so Fluent Bit sends them again", rec.TornTail)
	}
	if len(rec.Damaged) > 0 {
		if err := in.deadLetterDamaged("the log", rec.Damaged); err != nil {
			in.log.logf(LevelError, "cannot keep the damaged regions recovery found: %v", err)
		}
	}
}

// reloader rereads Destinations_File when it changes. An invalid version keeps the current destinations and
// is reported once; a valid one takes effect at once, and held batches are tried again.
func (in *Instance) reloader(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
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

// Close seals and uploads what fits in Shutdown_Timeout and leaves the rest on disk for the next start.
// finishWithin is how long uploads under way at the shutdown deadline may take to end.
const finishWithin = 1500 * time.Millisecond

func (in *Instance) Close() {
	in.closeOnce.Do(func() {
		in.closing.Store(true)
		deadline := in.now().Add(in.cfg.ShutdownTimeout)
		in.stopReloader()
		<-in.reloaderDone
		in.stopDigests()
		<-in.digestsDone
		in.stopSealer()
		<-in.sealerDone
		in.store.Rotate(time.Time{})
		in.sealClosed(deadline)
		in.queue.expedite()
		timeUp, stop := in.clock.At(deadline)
		drained := in.queue.drain(timeUp)
		stop()
		// No new attempts past the deadline; those under way get up to finishWithin (real time: it bounds real
		// requests) to end, so that an upload S3 is storing is not cut off and sent again under another key at
		// the next start.
		in.stopUploads()
		finished := make(chan struct{})
		go func() { in.uploadersWG.Wait(); close(finished) }()
		grace := time.NewTimer(finishWithin)
		select {
		case <-finished:
		case <-grace.C:
		}
		grace.Stop()
		in.abortUploads()
		<-finished
		in.recordStored() // the lines an uploader that panicked on its way out left
		if in.member != nil {
			in.member.Leave()
		}
		if err := in.ledger.Close(); err != nil {
			in.log.logf(LevelError, "delivery ledger: %v", err)
		}
		in.store.Close()
		in.dests.close()
		left := ""
		if !drained {
			left = fmt.Sprintf("; %d batches stay in %s for the next start", in.queue.len(), in.cfg.StoreDir)
		}
		in.log.logf(LevelInfo, "stopped: %s%s", in.counters(), left)
	})
}
