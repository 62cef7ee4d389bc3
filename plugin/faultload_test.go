package plugin

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/digest"
	"github.com/wiv/out_wivaudit/vfs"
)

// The fault matrix's workload (faults_test.go runs it): the real Instance on a fake clock, uploading to a fake
// S3, its Store_Dir on vfs.Faults over a MemFS. It is as sequential as the plugin allows, so that each run
// numbers its file operations alike: one upload worker; the sealer, digest and reloader loops are stopped and
// their work is done by the test at fixed points; every step waits for the uploader to have nothing due; the
// one concurrent pair of flushes is ordered by the pair gate.

// Organisations, their kinds and buckets.
var (
	matrixOrgs  = []string{"org-a", "org-b", "org-c"}
	matrixKinds = map[string][]string{"org": {"org-a", "org-b"}, "user": {"org-a", "org-b", "org-c"}, "api": {"org-a", "org-c"}}
)

func matrixBucket(org string) string { return "bucket-" + strings.TrimPrefix(org, "org-") }

// matrixConfig is the workload's output: the three organisations from a destinations file, digests on, one
// upload worker and batches of at most 1000 bytes.
func matrixConfig(t *testing.T, storeDir string) (*conf.Config, ed25519.PublicKey) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "digest-key.pem")
	signer, err := digest.GenerateKeyFile(key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "destinations.json")
	buckets := map[string]string{}
	for _, org := range matrixOrgs {
		buckets[org] = matrixBucket(org)
	}
	writeDestinations(t, file, buckets)
	cfg, err := conf.Parse(conf.Map{"Store_Dir": storeDir, "Destinations_File": file, "Unlisted_Orgs": "hold",
		"Upload_Timeout": "1s", "Total_File_Size": "1000", "Store_Dir_Limit_Size": "64M", "Upload_Workers": "1",
		"Shutdown_Timeout": "30s", "Digests": "on", "Digest_Signing_Key": key, "Digest_Interval": "10s"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, signer.PublicKey()
}

// matrixChunk is one Fluent Bit chunk of the workload.
type matrixChunk struct {
	tag  string
	data []byte
	ids  []string // its records that are to be delivered
}

// matrixRecord is what the workload knows of a record it flushed.
type matrixRecord struct {
	org, kind string
	json      string // as the object must hold it
}

// matrixChunks makes the workload's chunks: group g's chunks take the kinds given, perOrg records for each
// organisation of the kind. Every id is unique. The first chunk of group 1 also holds a record that is
// rejected (an organisation ID that cannot be used): it goes to the dead-letter file, never to S3.
func matrixChunks(all *[]matrixChunk, recs map[string]matrixRecord, g int, kinds []string, perOrg int) []int {
	var out []int
	for i, kind := range kinds {
		c := matrixChunk{tag: "audit." + kind}
		for _, org := range matrixKinds[kind] {
			for j := range perOrg {
				id := fmt.Sprintf("g%d-c%d-%s-%d", g, i, strings.TrimPrefix(org, "org-"), j)
				c.data = append(c.data, event(org, id)...)
				c.ids = append(c.ids, id)
				recs[id] = matrixRecord{org: org, kind: kind, json: fmt.Sprintf(`{"org_id":%q,"id":%q}`, org, id)}
			}
		}
		if g == 1 && i == 0 {
			c.data = append(c.data, event("bad org", fmt.Sprintf("g%d-c%d-rejected", g, i))...)
		}
		out = append(out, len(*all))
		*all = append(*all, c)
	}
	return out
}

// matrixLoad is the fixed part of every run: the chunks and their records, and the groups the steps flush.
type matrixLoad struct {
	chunks  []matrixChunk
	records map[string]matrixRecord
	groups  [][]int // chunks flushed one after another, step by step
	pair    [2]int  // chunks flushed at once
}

func newMatrixLoad() *matrixLoad {
	w := &matrixLoad{records: map[string]matrixRecord{}}
	w.groups = append(w.groups, matrixChunks(&w.chunks, w.records, 1, []string{"org", "user", "api", "org", "user", "api"}, 8))
	pair := matrixChunks(&w.chunks, w.records, 2, []string{"user", "user"}, 8)
	w.pair = [2]int{pair[0], pair[1]}
	// Five chunks of user take its streams past Total_File_Size: batches close as they are flushed.
	w.groups = append(w.groups, matrixChunks(&w.chunks, w.records, 3, []string{"user", "org", "user", "api", "user", "user", "user"}, 8))
	w.groups = append(w.groups, matrixChunks(&w.chunks, w.records, 4, []string{"api", "user", "org", "user"}, 8))
	return w
}

// tapFS passes every operation to its FS, and tells the pair gate about each write once it is done.
type tapFS struct {
	vfs.FS
	gate *pairGate
}

func (f *tapFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &tapFile{File: file, gate: f.gate}, nil
}

type tapFile struct {
	vfs.File
	gate *pairGate
}

func (f *tapFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.gate.wrote(f.Name())
	return n, err
}

// DropDirty passes a failed sync's loss on to the MemFS's file.
func (f *tapFile) DropDirty() {
	if d, ok := f.File.(vfs.DirtyDropper); ok {
		d.DropDirty()
	}
}

// pairGate orders the concurrent pair of flushes: once armed, the first data sync of a log segment holds,
// numbered but not yet done, until a write to a log segment is done (the other flush's, written while the
// first one syncs: group commit) or the test opens the gate. So the operations are numbered alike in every
// run, and the first sync, which covers the second write, can fail after it (issue 15's defect 1).
type pairGate struct {
	mu         sync.Mutex
	armed      bool
	holding    bool
	held       chan struct{} // closed when the sync holds
	release    chan struct{}
	overlapped int // pairs whose second write was done while the first sync held
}

func isSegment(path string) bool {
	return filepath.Base(filepath.Dir(path)) == "wal" && strings.HasSuffix(path, ".seg")
}

func (g *pairGate) arm() {
	g.mu.Lock()
	g.armed, g.held, g.release = true, make(chan struct{}), make(chan struct{})
	g.mu.Unlock()
}

// before runs before every operation (the Faults' hook).
func (g *pairGate) before(op vfs.Op) {
	g.mu.Lock()
	if !g.armed || op.Kind != vfs.OpDatasync || !isSegment(op.Path) {
		g.mu.Unlock()
		return
	}
	g.armed, g.holding = false, true
	held, release := g.held, g.release
	g.mu.Unlock()
	close(held)
	<-release
}

func (g *pairGate) wrote(path string) {
	if !isSegment(path) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holding {
		g.holding = false
		g.overlapped++
		close(g.release)
	}
}

func (g *pairGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = false
	if g.holding {
		g.holding = false
		close(g.release)
	}
}

// tapClock is the fake clock, telling each use: the uploader reads the time before it waits, so a test that
// waits for the uploader to have nothing due looks again then.
type tapClock struct {
	*fakeClock
	used events
}

func (c *tapClock) Now() time.Time {
	defer c.used.fire()
	return c.fakeClock.Now()
}

func (c *tapClock) At(t time.Time) (<-chan time.Time, func()) {
	defer c.used.fire()
	return c.fakeClock.At(t)
}

func (c *tapClock) Every(d time.Duration) (<-chan time.Time, func()) {
	defer c.used.fire()
	return c.fakeClock.Every(d)
}

// idle reports whether the queue's uploader has nothing to do before the clock moves (no batch in flight,
// none due at now), and when its next batch is due (zero: none queued).
func (q *queue) idle(now time.Time) (bool, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range q.lanes {
		if l.busy != nil {
			return false, time.Time{}
		}
	}
	if len(q.ready) == 0 {
		return true, time.Time{}
	}
	next := q.ready[0].key()
	return next.After(now), next
}

// lineSink keeps an instance's log, and its warnings and errors apart.
type lineSink struct {
	mu     sync.Mutex
	lines  []string
	errors []string // warnings and errors
}

func (l *lineSink) log(level Level, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, msg)
	if level <= LevelWarn {
		l.errors = append(l.errors, msg)
	}
}

// tail is the last n lines.
func (l *lineSink) tail(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[max(0, len(l.lines)-n):])
}

func (l *lineSink) warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errors)
}

// faultRun is one run of the workload, then of its end (finish).
type faultRun struct {
	t      *testing.T
	w      *matrixLoad
	cfg    *conf.Config
	mem    *vfs.MemFS
	faults *vfs.Faults
	gate   pairGate
	clock  *tapClock
	s3     *fakeS3
	sink   lineSink
	in     *Instance // nil while stopped

	acked map[int]bool // chunks Flush took
	sent  map[int]bool // chunks flushed at least once

	mu       sync.Mutex
	failures []string      // what went wrong: panics, start failing after the fault was cleared, ...
	onOp     func(vfs.Op)  // see watch
	sealing  chan struct{} // closed when seal returns; until then an upload waits to read its object

	// between runs before each step of the workload: it repairs a persistent fault.
	between func()
	dead    int  // warnings and errors logged by Close after a power cut: no process would be left to log them
	crashed bool // the power was cut, and the run went on on what survived
}

// s3Script fails every 4th call, and answers the 6th upload of a batch that its key is taken.
func s3Script(n int, key string) error {
	if n%4 == 0 {
		return fmt.Errorf("injected failure of call %d", n)
	}
	if n == 6 && !strings.Contains(key, "/digests/") {
		return &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"}
	}
	return nil
}

func newFaultRun(t *testing.T, w *matrixLoad, cfg *conf.Config) *faultRun {
	r := &faultRun{t: t, w: w, cfg: cfg, mem: vfs.NewMemFS(), clock: &tapClock{fakeClock: newFakeClock()},
		s3: &fakeS3{script: s3Script}, acked: map[int]bool{}, sent: map[int]bool{}, between: func() {}}
	// Store_Dir's parent is there, durably, as on a real disk; Store_Dir itself is the store's to make.
	parent := filepath.Dir(cfg.StoreDir)
	if err := r.mem.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	for dir := parent; ; dir = filepath.Dir(dir) {
		if err := r.mem.SyncDir(dir); err != nil {
			t.Fatal(err)
		}
		if dir == "/" {
			break
		}
	}
	r.useDisk(r.mem)
	return r
}

// useDisk puts the store on disk, through the pair gate and the Faults, whose hook also tells onOp.
func (r *faultRun) useDisk(disk *vfs.MemFS) {
	r.mem = disk
	r.faults = vfs.NewFaults(&tapFS{FS: disk, gate: &r.gate})
	r.faults.Hook(func(op vfs.Op) error {
		r.mu.Lock()
		sealing := r.sealing
		if r.onOp != nil {
			r.onOp(op)
		}
		r.mu.Unlock()
		r.gate.before(op)
		if sealing != nil && op.Kind == vfs.OpOpen && isObject(op.Path) {
			<-sealing
		}
		return nil
	})
}

// waitSealed holds an upload attempt while the test seals: a batch sealed in the log is read from the log's
// open segments, so no object's open holds it.
func (r *faultRun) waitSealed() {
	r.mu.Lock()
	sealing := r.sealing
	r.mu.Unlock()
	if sealing != nil {
		<-sealing
	}
}

func isObject(path string) bool {
	return filepath.Base(filepath.Dir(path)) == "batches" && strings.HasSuffix(path, ".json.gz")
}

// watch has f see every operation from now on, before it runs (nil: none); f runs under r.mu.
func (r *faultRun) watch(f func(vfs.Op)) {
	r.mu.Lock()
	r.onOp = f
	r.mu.Unlock()
}

func (r *faultRun) now() time.Time { return r.clock.fakeClock.Now() }

func (r *faultRun) fail(format string, args ...any) {
	r.mu.Lock()
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// caught records a panic on the test's goroutines as a failure of the run.
func (r *faultRun) caught(where string) {
	if p := recover(); p != nil {
		r.fail("%s: panic: %v\n%s", where, p, debug.Stack())
	}
}

// start starts the instance and stops its loops (the steps do their work); it reports whether it started.
func (r *faultRun) start() (ok bool) {
	defer r.caught("start")
	in, err := start(r.cfg, "matrix", r.sink.log, deps{send: r.s3, clock: r.clock, fs: r.faults, jitter: func() float64 { return 0.5 },
		attempting: r.waitSealed})
	if err != nil {
		r.sink.log(LevelError, "start: "+err.Error())
		return false
	}
	in.stopSealer()
	<-in.sealerDone
	in.stopDigests()
	<-in.digestsDone
	in.stopReloader()
	<-in.reloaderDone
	r.in = in
	r.waitIdle()
	return true
}

// waitIdle waits until the uploader has nothing due, and returns when its next batch is due. A panic in a
// loop ends the wait too: the uploader waits to start again.
func (r *faultRun) waitIdle() time.Time {
	r.t.Helper()
	var next time.Time
	waitFor(r.t, &r.clock.used, func() bool {
		var idle bool
		idle, next = r.in.queue.idle(r.now())
		return idle || panics(r.in) > 0
	}, func() string { return "the uploader never stopped:\n" + r.logTail() })
	return next
}

// panics counts the panics an instance's loops contained.
func panics(in *Instance) int64 {
	var n int64
	for i := range in.panics {
		n += in.panics[i].Load()
	}
	return n
}

func (r *faultRun) logTail() string { return strings.Join(r.sink.tail(40), "\n") }

// advance moves the clock to t (if later) and waits for the uploader to do what fell due.
func (r *faultRun) advance(t time.Time) {
	if d := t.Sub(r.now()); d > 0 {
		r.clock.Advance(d)
	}
	r.waitIdle()
}

// flush sends a chunk as Fluent Bit does, again while it returns Retry, a few times; it reports whether the
// chunk was taken.
func (r *faultRun) flush(i int) bool {
	for range 3 {
		if r.flushOnce(i) == OK {
			return true
		}
		if r.faults.Cut() {
			break
		}
	}
	return false
}

func (r *faultRun) flushOnce(i int) (res Result) {
	defer r.caught("flush")
	res = Retry
	r.sent[i] = true
	c := r.w.chunks[i]
	if res = r.in.Flush(c.data, c.tag); res == OK {
		r.acked[i] = true
	}
	return res
}

// flushPair flushes two chunks at once: the second is written while the first one's sync holds.
func (r *faultRun) flushPair(a, b int) {
	r.sent[a], r.sent[b] = true, true
	r.gate.arm()
	results := make(chan [2]int, 2)
	flush := func(i int) {
		res := Retry
		defer func() { results <- [2]int{i, int(res)} }()
		defer r.caught("flush")
		c := r.w.chunks[i]
		res = r.in.Flush(c.data, c.tag)
	}
	go flush(a)
	got := map[int]Result{}
	limit := giveUp(r.t)
	select {
	case <-r.gate.held:
	case res := <-results: // it failed before its sync: the second one runs alone
		got[res[0]] = Result(res[1])
		r.gate.open()
	case <-limit:
		r.t.Fatal("the first flush of the pair neither synced nor returned")
	}
	go flush(b)
	for len(got) < 2 {
		select {
		case res := <-results:
			got[res[0]] = Result(res[1])
			r.gate.open() // the second one returned without writing, or both are done
		case <-limit:
			r.t.Fatal("the pair of flushes did not return")
		}
	}
	for _, i := range []int{a, b} {
		if got[i] == OK {
			r.acked[i] = true
		} else if !r.faults.Cut() {
			r.flush(i)
		}
	}
}

// seal does what the sealer does at a tick, for the batches opened up to cutoff (zero: all), sealing them in
// the order of their streams: Rotate's order is a map's. sealClosed queues a round's batches one by one once
// the round is sealed; an upload that starts meanwhile waits to read its object until all are queued, so that
// the uploader takes the next ones from the whole round.
func (r *faultRun) seal(cutoff time.Time) {
	defer r.caught("seal")
	sealing := make(chan struct{})
	r.mu.Lock()
	r.sealing = sealing
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.sealing = nil
		r.mu.Unlock()
		close(sealing)
	}()
	r.in.store.Rotate(cutoff)
	closed := r.in.store.TakeClosed()
	slices.SortStableFunc(closed, func(a, b *buffer.Pending) int {
		return strings.Compare(a.Org+"/"+a.Kind, b.Org+"/"+b.Kind)
	})
	for _, p := range closed {
		r.in.store.PutBack(p)
	}
	r.in.sealClosed(time.Time{})
}

// sealDue moves the clock by Upload_Timeout and seals what was opened until then, as the sealer's tick does.
func (r *faultRun) sealDue() {
	r.advance(r.now().Add(r.cfg.UploadTimeout))
	r.seal(r.now().Add(-r.cfg.UploadTimeout))
	r.waitIdle()
}

// deliver moves the clock to each next retry, up to rounds times, until nothing is queued; it reports whether
// nothing is.
func (r *faultRun) deliver(rounds int) bool {
	for range rounds {
		next := r.waitIdle()
		if r.in.queue.len() == 0 {
			return true
		}
		if r.faults.Cut() {
			return false
		}
		r.advance(next)
	}
	return r.in.queue.len() == 0
}

// digest moves the clock past the next interval's end and runs digest rounds, at each retry, until every chain
// has its digests up to then written (or rounds are done); it reports whether they are.
func (r *faultRun) digest(rounds int) (done bool) {
	defer r.caught("digest")
	g := r.in.digests
	end := g.intervalStart(r.now()).Add(g.every)
	r.advance(end)
	for range rounds {
		g.round(context.Background(), r.now())
		due, done := r.digestsDue(end)
		if done || r.faults.Cut() {
			return done
		}
		if soon := r.now().Add(time.Second); due.Before(soon) {
			due = soon
		}
		r.advance(due)
	}
	return false
}

// digestsDue reports whether every chain has written its digests up to end, and when the next try is due.
func (r *faultRun) digestsDue(end time.Time) (due time.Time, done bool) {
	g := r.in.digests
	g.mu.Lock()
	defer g.mu.Unlock()
	done = true
	for _, c := range g.chains {
		if c.st.Pending != nil || c.st.End.Before(end) {
			done = false
			if c.due.After(due) {
				due = c.due
			}
		}
	}
	return due, done
}

// stop closes the instance: when Close waits for Shutdown_Timeout, the clock goes to each retry due before it,
// then to it.
func (r *faultRun) stop() {
	defer r.caught("close")
	if r.in == nil {
		return
	}
	in := r.in
	r.seal(time.Time{})
	deadline := r.now().Add(r.cfg.ShutdownTimeout)
	closed := make(chan struct{})
	go func() {
		defer r.clock.used.fire()
		defer close(closed)
		in.Close()
	}()
	isClosed := func() bool {
		select {
		case <-closed:
			return true
		default:
			return false
		}
	}
	for !isClosed() {
		var next time.Time
		waitFor(r.t, &r.clock.used, func() bool {
			if isClosed() {
				return true
			}
			idle := false
			idle, next = in.queue.idle(r.now())
			return (idle || panics(in) > 0) && in.queue.len() > 0 && r.clock.waitsFor(deadline)
		}, func() string { return "Close did not return:\n" + r.logTail() })
		if isClosed() {
			break
		}
		if next.IsZero() || next.After(deadline) {
			next = deadline
		}
		r.clock.Advance(next.Sub(r.now()))
	}
	if n := panics(in); n > 0 {
		r.fail("%d panics in the instance's loops (contained, logged with their stacks)", n)
	}
	r.in = nil
}

// reflush sends again the chunks sent and not taken, as Fluent Bit retries them.
func (r *faultRun) reflush() {
	for i := range r.w.chunks {
		if r.sent[i] && !r.acked[i] && !r.faults.Cut() {
			r.flush(i)
		}
	}
}

// restart starts the instance, once more if the fault made it fail.
func (r *faultRun) restart() {
	if r.start() || r.faults.Cut() {
		return
	}
	r.between()
	if !r.start() && !r.faults.Cut() {
		r.fail("start failed twice, the second time after the fault was cleared")
	}
}

func (r *faultRun) flushGroup(g int) {
	for _, i := range r.w.groups[g] {
		if !r.flush(i) && r.faults.Cut() {
			return
		}
	}
}

// run runs the workload: flushes over the organisations and kinds, one pair at once, seals, uploads with S3
// failing, a digest, a restart, more of the same, and Close. Before each step it runs between and sends again
// the chunks not taken; it stops when the power is cut, or when the instance could not start.
func (r *faultRun) run() {
	for _, step := range []struct {
		start bool // the step starts the instance; the others need it running
		do    func()
	}{
		{true, r.restart},
		{false, func() { r.flushGroup(0) }},
		{false, func() { r.flushPair(r.w.pair[0], r.w.pair[1]) }},
		{false, func() { r.sealDue(); r.deliver(4) }},
		{false, func() { r.flushGroup(1) }},
		{false, func() { r.sealDue(); r.deliver(4) }},
		{false, func() { r.digest(4) }},
		{false, r.stop},
		{true, r.restart},
		{false, func() { r.flushGroup(2) }},
		{false, func() { r.sealDue(); r.deliver(4) }},
		{false, func() { r.digest(4) }},
		{false, r.stop},
	} {
		if r.faults.Cut() {
			return
		}
		r.between()
		if !step.start {
			if r.in == nil {
				return
			}
			r.reflush()
		}
		step.do()
	}
}
