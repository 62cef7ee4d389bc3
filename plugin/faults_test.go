package plugin

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/digest"
	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/vfs"
)

// The fault matrix (SQLite's "fail the N-th I/O operation for every N"): the workload of faultload_test.go is
// run clean to count its file operations, T; then for each N and each fault kind it runs with that fault at
// operation N, the fault is cleared, the instance is started again on what the disk holds, the records not
// taken are sent again, everything is sealed and delivered and a last digest written, and the invariants are
// checked. WIVAUDIT_FAULTS chooses the N: "all" (make faults), a list such as "12,40-45", or, unset, a sample
// (matrixSample). One case reruns alone with
//
//	WIVAUDIT_FAULTS=<N> go test ./plugin/ -run 'TestFaultMatrix/^<kind>$/^N=<N>$' -v
//
// WIVAUDIT_FAULTS_REPORT names a file the summary line is appended to (make unit prints it).

// faultKind is one column of the matrix.
type faultKind struct {
	name string
	// arm sets the fault at operation n, and returns what runs before each step of the workload.
	arm   func(f *vfs.Faults, n int64) func()
	crash *vfs.CrashOptions // power loss: the disk that survives
}

func faultKinds() []faultKind {
	var kinds []faultKind
	for _, fault := range []vfs.Fault{vfs.EIO, vfs.ENOSPC, vfs.EROFS, vfs.EDQUOT, vfs.ShortWrite} {
		kinds = append(kinds, faultKind{name: fault.String() + "-once", arm: func(f *vfs.Faults, n int64) func() {
			f.FailAt(n, fault)
			return func() {}
		}}, faultKind{name: fault.String() + "-persistent", arm: func(f *vfs.Faults, n int64) func() {
			f.FailFrom(n, fault)
			return func() { // until the next step of the workload
				if f.Ops() >= n {
					f.Repair()
				}
			}
		}})
	}
	// A failed operation, then the power cut at the next step: what a failed fsync dropped is gone (fsyncgate).
	kinds = append(kinds, faultKind{name: "EIO-then-power", crash: &vfs.CrashOptions{}, arm: func(f *vfs.Faults, n int64) func() {
		f.FailAt(n, vfs.EIO)
		return func() {
			if f.Ops() >= n {
				f.PowerCut(n)
			}
		}
	}})
	for _, torn := range []bool{false, true} {
		name := "power"
		if torn {
			name = "power-torn"
		}
		kinds = append(kinds, faultKind{name: name, crash: &vfs.CrashOptions{TornTail: torn}, arm: func(f *vfs.Faults, n int64) func() {
			f.PowerCut(n)
			return func() {}
		}})
	}
	return kinds
}

// matrixSample is the N run for the i-th fault kind, T operations: WIVAUDIT_FAULTS's choice, or by default the
// first and last matrixEnds and every matrixStride-th in between, shifted by i so that the kinds together
// cover more N.
func matrixSample(t *testing.T, total int64, i int) []int64 {
	spec := os.Getenv("WIVAUDIT_FAULTS")
	var ns []int64
	switch spec {
	case "all":
		for n := int64(1); n <= total; n++ {
			ns = append(ns, n)
		}
	case "":
		for n := int64(1); n <= total; n++ {
			if n <= matrixEnds || n > total-matrixEnds || (n+int64(i))%matrixStride == 0 {
				ns = append(ns, n)
			}
		}
	default:
		for _, part := range strings.Split(spec, ",") {
			from, to, isRange := strings.Cut(part, "-")
			a, err := strconv.ParseInt(from, 10, 64)
			b := a
			if err == nil && isRange {
				b, err = strconv.ParseInt(to, 10, 64)
			}
			if err != nil || a < 1 || b < a {
				t.Fatalf("WIVAUDIT_FAULTS=%q: want all, or N and N-M separated by commas", spec)
			}
			for n := a; n <= b; n++ {
				ns = append(ns, n)
			}
		}
	}
	return ns
}

// The default sample: with T about 950, some 43 cases per kind, 560 in all, which take about 5 s, and 50 s with
// -race, on 2 cores (a case takes some 10 ms, 85 ms with -race; every N, 12,400 cases, about 2 minutes). The 13
// kinds together try a third of the N in the middle.
const (
	matrixEnds   = 10
	matrixStride = 40
)

// maxFaultErrors bounds the warnings and errors a case may log beyond those of the clean run.
const maxFaultErrors = 20

// caseResult is what one case found.
type caseResult struct {
	problems   []string
	duplicates int // records delivered more than once
	taken      int // uploads S3 refused because the key was stored already
}

// cleanRun runs the workload without a fault and returns it, with the operations it numbered, by number.
func cleanRun(t *testing.T, w *matrixLoad, cfg *conf.Config) (*faultRun, []string) {
	r := newFaultRun(t, w, cfg)
	var ops []string
	r.watch(func(op vfs.Op) {
		for int64(len(ops)) < op.Index {
			ops = append(ops, "")
		}
		ops[op.Index-1] = opName(cfg.StoreDir, op)
	})
	r.run()
	r.watch(nil)
	return r, ops
}

// opName is an operation as the matrix reports it: its kind and path in Store_Dir.
func opName(storeDir string, op vfs.Op) string {
	path, _ := filepath.Rel(storeDir, op.Path)
	return op.Kind.String() + " " + path
}

func TestFaultMatrix(t *testing.T) {
	began := time.Now()
	w := newMatrixLoad()
	cfg, pub := matrixConfig(t, conf.DefaultStoreDir)

	clean, ops := cleanRun(t, w, cfg)
	total := int64(len(ops))
	breakdown := clean.faults.Breakdown()
	cleanErrors := len(clean.sink.warnings())
	clean.finish(nil)
	if res := clean.check(pub, cleanErrors+maxFaultErrors); len(res.problems) > 0 || len(clean.failures) > 0 {
		t.Fatalf("the clean run fails: %s\n%s", strings.Join(append(clean.failures, res.problems...), "\n"), clean.logTail())
	}
	if len(w.chunks) != len(clean.acked) {
		t.Fatalf("the clean run took %d of %d chunks", len(clean.acked), len(w.chunks))
	}
	if clean.gate.overlapped != 1 {
		t.Fatalf("in the clean run, %d pairs of flushes wrote while the other synced, want 1", clean.gate.overlapped)
	}
	if _, again := cleanRun(t, w, cfg); !slices.Equal(ops, again) {
		i := 0
		for i < min(len(ops), len(again)) && ops[i] == again[i] {
			i++
		}
		t.Fatalf("two clean runs differ from operation %d on (%d and %d operations): %q vs %q", i+1, len(ops), len(again),
			ops[i:min(i+5, len(ops))], again[i:min(i+5, len(again))])
	}
	t.Logf("T=%d operations: %s; %d warnings and errors logged", total, breakdown, cleanErrors)

	var mu sync.Mutex
	cases, failed := map[string]int{}, map[string][]int64{}
	duplicates, dupCases, taken := 0, 0, 0
	kinds := faultKinds()
	for i, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, n := range matrixSample(t, total, i) {
				t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
					op := "past the end"
					want := ""
					if n <= total {
						op, want = ops[n-1], ops[n-1]
					}
					res := runCase(t, w, cfg, pub, kind, n, want, cleanErrors+maxFaultErrors)
					if res.duplicates > 0 {
						t.Logf("%s at operation %d (%s): %d records delivered more than once", kind.name, n, op, res.duplicates)
					}
					mu.Lock()
					cases[kind.name]++
					duplicates += res.duplicates
					taken += res.taken
					if res.duplicates > 0 {
						dupCases++
					}
					if len(res.problems) > 0 {
						failed[kind.name] = append(failed[kind.name], n)
					}
					mu.Unlock()
					if len(res.problems) > 0 {
						t.Errorf("%s at operation %d (%s):\n%s\nrerun: WIVAUDIT_FAULTS=%d go test ./plugin/ -run 'TestFaultMatrix/^%s$/^N=%d$' -v",
							kind.name, n, op, strings.Join(res.problems, "\n"), n, kind.name, n)
					}
				})
			}
		})
	}

	var perKind, failures []string
	all, nFailed := 0, 0
	for _, kind := range kinds {
		perKind = append(perKind, fmt.Sprintf("%s %d", kind.name, cases[kind.name]))
		all += cases[kind.name]
		if f := failed[kind.name]; len(f) > 0 {
			nFailed += len(f)
			failures = append(failures, kind.name+" "+ranges(f))
		}
	}
	summary := fmt.Sprintf("fault matrix: T=%d operations (%s); %d cases (%s); %d failed%s; %d records delivered more than once in %d cases; %d uploads refused as already stored; %s",
		total, breakdown, all, strings.Join(perKind, ", "), nFailed, listOrNothing(failures), duplicates, dupCases, taken, time.Since(began).Round(time.Millisecond))
	t.Log(summary)
	fmt.Println(summary)
	if path := os.Getenv("WIVAUDIT_FAULTS_REPORT"); path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintln(f, summary)
			f.Close()
		}
	}
}

// ranges writes sorted numbers as runs: "3 7-9 12".
func ranges(ns []int64) string {
	var parts []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if parts = append(parts, strconv.FormatInt(ns[i], 10)); j > i {
			parts[len(parts)-1] += "-" + strconv.FormatInt(ns[j], 10)
		}
		i = j + 1
	}
	return strings.Join(parts, " ")
}

func listOrNothing(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return " (" + strings.Join(items, "; ") + ")"
}

// runCase runs the workload with the fault at operation n, then finishes it and checks the invariants.
// want is the clean run's operation n ("" past its end): the case's must be the same, or the harness is not
// deterministic.
func runCase(t *testing.T, w *matrixLoad, cfg *conf.Config, pub ed25519.PublicKey, kind faultKind, n int64, want string, maxErrors int) caseResult {
	r := newFaultRun(t, w, cfg)
	var got string
	r.watch(func(op vfs.Op) {
		if op.Index == n {
			got = opName(cfg.StoreDir, op)
		}
	})
	r.between = kind.arm(r.faults, n)
	r.run()
	r.watch(nil)
	if got != want {
		r.fail("harness: operation %d is %q, in the clean run %q", n, got, want)
	}
	var crash *vfs.CrashOptions
	if kind.crash != nil {
		if r.faults.Cut() {
			crash = kind.crash
		} else {
			r.faults.PowerCut(0) // past the end: a clean run
		}
	}
	r.finish(crash)
	res := r.check(pub, maxErrors)
	r.mu.Lock()
	res.problems = append(r.failures, res.problems...)
	r.mu.Unlock()
	if len(res.problems) > 0 {
		res.problems = append(res.problems, "warnings and errors logged:\n"+strings.Join(r.sink.warnings(), "\n"))
	}
	return res
}

// finish ends a run: the instance is closed; after a power cut the disk is what survives it, otherwise the
// fault is cleared; the instance is started again, the chunks not taken are sent again, and everything is
// sealed, delivered and listed in a digest, and the instance is closed.
func (r *faultRun) finish(crash *vfs.CrashOptions) {
	before := len(r.sink.warnings())
	r.stop()
	if crash != nil {
		r.dead = len(r.sink.warnings()) - before // Close without a disk, which the power cut would have spared
		r.crashed = true
		r.useDisk(r.mem.Crash(*crash))
	}
	r.faults.Repair()
	if !r.start() {
		r.fail("start failed after the fault was cleared")
		return
	}
	for i := range r.w.chunks {
		if r.sent[i] && !r.acked[i] && !r.flush(i) {
			r.fail("chunk %d was never taken after the fault was cleared", i)
		}
	}
	r.seal(time.Time{})
	if !r.deliver(40) {
		r.fail("%d batches still queued after 40 rounds of retries", r.in.queue.len())
	}
	if _, ok := r.in.store.OldestPending(); ok {
		r.fail("records still unsealed at the end")
	}
	if !r.digest(8) {
		r.fail("the last digests were not written")
	}
	r.stop()
}

// check checks the invariants on what S3, the ledger and the log hold at the end of a run.
func (r *faultRun) check(pub ed25519.PublicKey, maxErrors int) caseResult {
	var res caseResult
	problem := func(format string, args ...any) { res.problems = append(res.problems, fmt.Sprintf(format, args...)) }
	objects, buckets, sums := map[string][]byte{}, map[string]string{}, map[string]string{}
	r.s3.mu.Lock()
	for key, body := range r.s3.objects {
		if !strings.Contains(key, "/digests/") {
			objects[key], buckets[key] = body, r.s3.buckets[key]
			sum := sha256.Sum256(body)
			sums[key] = hex.EncodeToString(sum[:])
		}
	}
	res.taken = r.s3.taken
	r.s3.mu.Unlock()

	// Every object holds records flushed, intact, of its own organisation and kind, in its organisation's bucket.
	seen := map[string]int{}
	for key, body := range objects {
		org, rest, _ := strings.Cut(key, "/")
		kind, _, _ := strings.Cut(rest, "-audit-logs-")
		if buckets[key] != matrixBucket(org) {
			problem("%s is in bucket %s", key, buckets[key])
		}
		recs, err := objectRecords(body)
		if err != nil {
			problem("%s: %v", key, err)
			continue
		}
		for _, raw := range recs {
			var id struct {
				ID string `json:"id"`
			}
			json.Unmarshal(raw, &id)
			want, ok := r.w.records[id.ID]
			switch {
			case !ok:
				problem("%s holds a record never flushed: %s", key, raw)
			case want.org != org || want.kind != kind:
				problem("%s holds a record of %s, kind %s: %s", key, want.org, want.kind, raw)
			case string(raw) != want.json:
				problem("%s holds %s altered: %s", id.ID, want.json, raw)
			}
			seen[id.ID]++
		}
	}
	lost := 0
	for i := range r.w.chunks {
		for _, id := range r.w.chunks[i].ids {
			if r.acked[i] && seen[id] == 0 {
				if lost++; lost <= 5 {
					problem("acknowledged record %s (chunk %d) was not delivered", id, i)
				}
			}
		}
	}
	if lost > 5 {
		problem("... %d acknowledged records in all were not delivered", lost)
	}
	for _, n := range seen {
		if n > 1 {
			res.duplicates++
		}
	}

	// Every object is in the ledger as delivered, with the SHA-256 of what S3 holds, and so is nothing else. After
	// a power cut between S3's 200 and the ledger line, the next start finds the key taken: the line then says
	// unconfirmed, with the same SHA-256.
	entries := map[string][]ledger.Entry{}
	for e, err := range ledger.Read(r.mem, filepath.Join(r.cfg.StoreDir, ledger.Folder), ledger.Filter{}) {
		if err != nil {
			problem("ledger: %v", err)
			continue
		}
		entries[e.Key] = append(entries[e.Key], e)
	}
	for key, sum := range sums {
		found := slices.ContainsFunc(entries[key], func(e ledger.Entry) bool {
			return e.SHA256 == sum && e.Bucket == buckets[key] && (e.Status == ledger.Delivered || r.crashed && e.Status == ledger.Unconfirmed)
		})
		if !found {
			problem("%s (SHA-256 %s) is not in the ledger as delivered to %s: %+v", key, sum, buckets[key], entries[key])
		}
	}
	for key, es := range entries {
		for _, e := range es {
			if e.Status == ledger.Delivered && sums[key] != e.SHA256 {
				problem("the ledger says %s was delivered with SHA-256 %s; S3 holds %q", key, e.SHA256, sums[key])
			}
		}
	}

	// Every object is listed, with its SHA-256, in a signed digest of its organisation (the last interval ended).
	listed := map[string]string{}
	r.s3.mu.Lock()
	for key, body := range r.s3.objects {
		if !strings.Contains(key, "/digests/") {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(r.s3.meta[key][digest.MetadataSignature])
		var doc digest.Document
		if err == nil && !ed25519.Verify(pub, body, sig) {
			err = errors.New("its signature does not verify")
		}
		if err == nil {
			err = json.Unmarshal(body, &doc)
		}
		if org, _, _ := strings.Cut(key, "/"); err == nil && doc.OrgID != org {
			err = fmt.Errorf("it is %s's", doc.OrgID)
		}
		if err != nil {
			problem("digest %s: %v", key, err)
			continue
		}
		for _, o := range doc.Objects {
			listed[o.Key] = o.SHA256
		}
	}
	r.s3.mu.Unlock()
	for key, sum := range sums {
		if listed[key] != sum {
			problem("%s is in no digest (listed with SHA-256 %q)", key, listed[key])
		}
	}

	if n := len(r.sink.warnings()) - r.dead; n > maxErrors {
		problem("%d warnings and errors logged, more than %d", n, maxErrors)
	}
	return res
}

// objectRecords reads an object: a gzip of a JSON array.
func objectRecords(body []byte) ([]json.RawMessage, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var recs []json.RawMessage
	return recs, json.Unmarshal(plain, &recs)
}

// TestFaultMatrixInvariants: the matrix's check finds each way S3, the ledger and the log can be wrong, on the
// outcome of a clean run altered one way at a time.
func TestFaultMatrixInvariants(t *testing.T) {
	w := newMatrixLoad()
	cfg, pub := matrixConfig(t, conf.DefaultStoreDir)
	r, _ := cleanRun(t, w, cfg)
	r.finish(nil)
	if res := r.check(pub, 100); len(res.problems) > 0 {
		t.Fatalf("the clean run fails: %s", strings.Join(res.problems, "\n"))
	}
	objects := maps.Clone(r.s3.objects)
	// An object, and one of its records.
	var key string
	for k := range objects {
		if !strings.Contains(k, "/digests/") && (key == "" || k < key) {
			key = k
		}
	}
	recs, err := objectRecords(objects[key])
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(recs []json.RawMessage) []byte {
		var plain bytes.Buffer
		plain.WriteString("[\n")
		for i, rec := range recs {
			if i > 0 {
				plain.WriteString(",\n")
			}
			plain.Write(rec)
		}
		plain.WriteString("\n]\n")
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(plain.Bytes())
		zw.Close()
		return z.Bytes()
	}
	org, _, _ := strings.Cut(key, "/")
	other := map[string]string{"org-a": "org-b", "org-b": "org-c", "org-c": "org-a"}[org]
	for _, tc := range []struct {
		name  string
		alter func(objects map[string][]byte, sink *lineSink)
		want  []string
	}{
		{"a record lost", func(o map[string][]byte, _ *lineSink) { o[key] = rewrite(recs[1:]) },
			[]string{"was not delivered", "is not in the ledger as delivered", "the ledger says", "is in no digest"}},
		{"a record altered", func(o map[string][]byte, _ *lineSink) {
			o[key] = rewrite(append([]json.RawMessage{json.RawMessage(strings.Replace(string(recs[0]), `"id"`, `"id" `, 1))}, recs[1:]...))
		}, []string{"altered"}},
		{"a record invented", func(o map[string][]byte, _ *lineSink) {
			o[key] = rewrite(append([]json.RawMessage{json.RawMessage(`{"org_id":"` + org + `","id":"never"}`)}, recs...))
		}, []string{"holds a record never flushed"}},
		{"tenants mixed", func(o map[string][]byte, _ *lineSink) {
			o[other+"/"+strings.TrimPrefix(key, org+"/")] = o[key]
		}, []string{"holds a record of " + org, "is not in the ledger", "is in no digest"}},
		{"a digest lost", func(o map[string][]byte, _ *lineSink) {
			for k := range o {
				if strings.HasPrefix(k, org+"/digests/") {
					delete(o, k)
				}
			}
		}, []string{key + " is in no digest"}},
		{"a digest forged", func(o map[string][]byte, _ *lineSink) {
			for k, body := range o {
				if strings.HasPrefix(k, org+"/digests/") {
					o[k] = bytes.Replace(body, []byte(`"sequence":`), []byte(`"sequence": `), 1)
				}
			}
		}, []string{"its signature does not verify"}},
		{"the log flooded", func(_ map[string][]byte, sink *lineSink) {
			for range 101 {
				sink.log(LevelWarn, "again")
			}
		}, []string{"warnings and errors logged, more than 100"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			altered := &faultRun{t: t, w: w, cfg: cfg, mem: r.mem, acked: r.acked,
				s3: &fakeS3{objects: maps.Clone(objects), buckets: maps.Clone(r.s3.buckets), meta: r.s3.meta}}
			altered.s3.buckets[other+"/"+strings.TrimPrefix(key, org+"/")] = matrixBucket(other)
			tc.alter(altered.s3.objects, &altered.sink)
			got := strings.Join(altered.check(pub, 100).problems, "\n")
			for _, want := range tc.want {
				if !strings.Contains(got, want) {
					t.Errorf("no problem says %q:\n%s", want, got)
				}
			}
		})
	}
}
