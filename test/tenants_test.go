package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/hostrun"
)

// customer is one customer's setup: bucket, role and External ID.
type customer struct {
	bucket, roleARN, externalID string
}

func (e *env) addCustomer(name string) customer {
	e.t.Helper()
	c := customer{bucket: name + "-audit-logs", externalID: fmt.Sprintf("%s-7a41c0de-%08x", name, rand.Uint32())}
	secret(c.externalID)
	var err error
	if c.roleARN, err = e.moto.AddCustomer(context.Background(), e.p, c.bucket, "wiv-"+name, c.externalID); err != nil {
		e.t.Fatal(err)
	}
	return c
}

type destEntry struct {
	Org        string `json:"org_id"`
	Bucket     string `json:"bucket_name"`
	RoleARN    string `json:"role_arn"`
	ExternalID string `json:"external_id"`
	KeyPrefix  string `json:"key_prefix,omitempty"`
}

func writeDestinations(t *testing.T, path string, entries []destEntry) {
	t.Helper()
	data, _ := json.MarshalIndent(entries, "", "  ")
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil { // replaced at once, as a config manager does
		t.Fatal(err)
	}
}

// bucketRecords returns, per event id, the keys of the bucket that hold it.
func (e *env) bucketRecords(bucket string) map[string][]string {
	e.t.Helper()
	ctx := context.Background()
	objects, err := e.moto.Objects(ctx, bucket)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, key := range backend.SortedKeys(objects) {
		if objects[key] != 1 {
			e.t.Errorf("%s/%s has %d versions", bucket, key, objects[key])
		}
		body, err := e.moto.Get(ctx, bucket, key)
		if err != nil {
			e.t.Fatal(err)
		}
		plain, err := gunzip(body)
		if err != nil {
			e.t.Fatalf("%s/%s: %v", bucket, key, err)
		}
		var recs []struct {
			ID  string `json:"id"`
			Org string `json:"org_id"`
		}
		if err := json.Unmarshal(plain, &recs); err != nil {
			e.t.Fatalf("%s/%s: %v", bucket, key, err)
		}
		for _, r := range recs {
			if !strings.Contains(strings.ToLower(key), strings.ToLower(r.Org)+"/") { // IDs match in any case
				e.t.Errorf("%s/%s holds a record of %s", bucket, key, r.Org)
			}
			out[r.ID] = append(out[r.ID], key)
		}
	}
	return out
}

// TestManyDestinations: 50 organisations in a destinations file across 10 buckets and 10 roles, each role
// allowed only its own bucket and trusting only its own External ID, plus organisations the file does not list;
// mixed concurrent traffic with Workers 4. Every record is in its own organisation's bucket and prefix, and
// nowhere else.
func TestManyDestinations(t *testing.T) {
	e := newEnv(t)
	var customers []customer
	for i := range 10 {
		customers = append(customers, e.addCustomer(fmt.Sprintf("cust%02d", i)))
	}
	var entries []destEntry
	var listed []string
	where := map[string]destEntry{}
	for i := range 50 {
		c := customers[i%10]
		d := destEntry{Org: fmt.Sprintf("org-%02d-%04x", i, rand.Uint32()&0xffff), Bucket: c.bucket, RoleARN: c.roleARN, ExternalID: c.externalID}
		if i%3 == 0 {
			d.KeyPrefix = "wiv/audit/"
		}
		entries = append(entries, d)
		listed = append(listed, d.Org)
		where[d.Org] = d
	}
	file := filepath.Join(e.dir, "destinations.json")
	writeDestinations(t, file, entries)
	unlisted := []string{"unlisted-1", "unlisted-2"}
	rng := rand.New(rand.NewPCG(13, 14))
	events := genEventsFor(t, 4000, rng, "ev-", append(listed, unlisted...))
	conf := e.config("many.conf", map[string]string{"Destinations_File": file, "Workers": "4", "Upload_Workers": "8"})
	r := e.runToEnd(conf, e.input("input.chunks", chunkEvents(events, rng, 40)))
	if r.ExitCode != 0 || r.Summary("error") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	found := map[string]string{} // event id -> bucket/key
	for _, bucket := range append([]string{e.p.Bucket}, func() (b []string) {
		for _, c := range customers {
			b = append(b, c.bucket)
		}
		return
	}()...) {
		for id, keys := range e.bucketRecords(bucket) {
			for _, k := range keys {
				if prev, dup := found[id]; dup {
					t.Errorf("%s delivered twice: %s and %s/%s", id, prev, bucket, k)
				}
				found[id] = bucket + "/" + k
			}
		}
	}
	for _, ev := range events {
		got, ok := found[ev.id]
		want := e.p.Bucket + "/" + ev.org + "/"
		if d, listed := where[ev.org]; listed {
			want = d.Bucket + "/" + d.KeyPrefix + ev.org + "/"
		}
		if !ok || !strings.HasPrefix(got, want) {
			t.Errorf("%s of %s is at %q, want under %s", ev.id, ev.org, got, want)
		}
	}
	t.Logf("%d events of %d organisations (%d listed, across %d buckets and roles) each in its own bucket and prefix", len(events), len(listed)+len(unlisted), len(listed), len(customers))
}

// TestDestinationsFileEdits: while traffic flows, the file gains an organisation, changes one's bucket,
// loses one, then is replaced by an invalid version. Each does what the README says, and nothing is lost.
func TestDestinationsFileEdits(t *testing.T) {
	e := newEnv(t)
	a, b1, b2, c, d := e.addCustomer("custa"), e.addCustomer("custb1"), e.addCustomer("custb2"), e.addCustomer("custc"), e.addCustomer("custd")
	entry := func(org string, cu customer) destEntry {
		return destEntry{Org: org, Bucket: cu.bucket, RoleARN: cu.roleARN, ExternalID: cu.externalID}
	}
	file := filepath.Join(e.dir, "destinations.json")
	writeDestinations(t, file, []destEntry{entry("org-w", a), entry("org-y", b1), entry("org-z", c)})
	conf := e.config("edits.conf", map[string]string{"Destinations_File": file, "Unlisted_Orgs": "hold",
		"Bucket": "", "Role_ARN": "", "External_ID": "", // no archive
		"Destinations_Refresh_Interval": "1s", "Hold_Retry_Interval": "1s", "Upload_Timeout": "1s"})
	p := e.start(conf, "-", false)
	rng := rand.New(rand.NewPCG(15, 16))
	orgsAll := []string{"org-w", "org-x", "org-y", "org-z"}
	send := func(prefix string, orgs []string) []genEvent {
		evs := genEventsFor(t, 40*len(orgs), rng, prefix, orgs)
		for _, ch := range chunkEvents(evs, rng, 10) {
			if err := chunks.WriteFrame(p.Stdin, ch.tag, ch.data); err != nil {
				t.Fatal(err)
			}
		}
		return evs
	}
	waitLog := func(want string) {
		t.Helper()
		if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool { return strings.Contains(r.Stderr, want) }); err != nil {
			t.Fatalf("no log line says %q: %v\n%s", want, err, tail(p.Snapshot().Stderr, 10))
		}
	}
	phase1 := send("p1-", orgsAll)
	waitFor(t, time.Minute, "phase 1 of org-w delivered", func() bool { return len(e.bucketRecords(a.bucket)) == 40 })

	// org-x added (its held records follow), org-y moves to another bucket, org-z removed.
	writeDestinations(t, file, []destEntry{entry("org-w", a), entry("org-x", d), entry("org-y", b2)})
	waitLog("Destinations_File reloaded: 3 organisations (1 added, 1 changed, 1 removed)")
	phase2 := send("p2-", orgsAll)
	waitFor(t, time.Minute, "org-x's held and new records delivered", func() bool { return len(e.bucketRecords(d.bucket)) == 80 })

	// An invalid version changes nothing.
	os.WriteFile(file, []byte(`[{"org_id":"org-w","bucket_name":"NOT A BUCKET"}]`), 0o600)
	waitLog("cannot be used, keeping the previous destinations")
	phase3 := send("p3-", []string{"org-w", "org-y"})
	waitFor(t, time.Minute, "phase 3 delivered", func() bool {
		return len(e.bucketRecords(a.bucket)) == 120 && len(e.bucketRecords(b1.bucket))+len(e.bucketRecords(b2.bucket)) == 120
	})
	p.Stdin.Close()
	p.Signal(syscall.SIGTERM)
	if r := p.Wait(time.Minute); r.ExitCode != 0 {
		t.Fatalf("exit %d", r.ExitCode)
	}

	in := map[string]map[string][]string{}
	for _, cu := range []customer{a, b1, b2, c, d} {
		in[cu.bucket] = e.bucketRecords(cu.bucket)
	}
	if n := len(e.bucketRecords(e.p.Bucket)); n != 0 {
		t.Errorf("%d records went to the default destination", n)
	}
	check := func(evs []genEvent, org string, allowed ...customer) {
		for _, ev := range evs {
			if ev.org != org {
				continue
			}
			n := 0
			for bucket, recs := range in {
				if len(recs[ev.id]) == 0 {
					continue
				}
				ok := false
				for _, cu := range allowed {
					ok = ok || cu.bucket == bucket
				}
				if !ok {
					t.Errorf("%s of %s is in %s", ev.id, org, bucket)
				}
				n += len(recs[ev.id])
			}
			if len(allowed) > 0 && n != 1 {
				t.Errorf("%s of %s delivered %d times", ev.id, org, n)
			}
		}
	}
	check(append(append(phase1, phase2...), phase3...), "org-w", a)
	check(append(phase1, phase2...), "org-x", d)
	check(phase1, "org-y", b1, b2) // in b1, or in b2 if it was still buffered when the bucket changed
	check(append(phase2, phase3...), "org-y", b2)
	check(phase1, "org-z", c) // delivered before its removal, or held
	check(phase2, "org-z")    // held: in no bucket
	t.Logf("org-y phase 1: %d records in its old bucket, %d followed it to the new one; org-z: %d delivered before removal, the rest held",
		len(in[b1.bucket]), 40-len(in[b1.bucket]), len(in[c.bucket]))
}

// tenantsRun sends events of orgCount organisations (all three kinds each) through the host with every stream
// open at once (Upload_Timeout 1h), then stops it: sealing and uploads run for the 15 s of Shutdown_Timeout and
// the rest stays on disk. It returns the host's peak RSS and how long the run took.
func tenantsRun(t *testing.T, orgCount, eventsPerStream int) (int64, time.Duration) {
	e := newEnv(t)
	orgList := make([]string, orgCount)
	for i := range orgList {
		orgList[i] = fmt.Sprintf("tenant-%05d", i)
	}
	rng := rand.New(rand.NewPCG(17, 18))
	events := genEventsFor(t, orgCount*len(kinds)*eventsPerStream, rng, "ev-", orgList)
	conf := e.config("tenants.conf", map[string]string{"Upload_Timeout": "1h", "Total_File_Size": "50M",
		"Upload_Workers": "16", "Shutdown_Timeout": "15s"})
	start := time.Now()
	r := e.runToEnd(conf, e.input("input.chunks", chunkEvents(events, rng, 300)))
	took := time.Since(start)
	if r.ExitCode != 0 || r.Summary("error") != 0 || r.Summary("retry") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	if !strings.Contains(r.Stderr, fmt.Sprintf("stopped: %d records accepted, 0 rejected", len(events))) {
		t.Fatalf("not every record was accepted:\n%s", tail(r.Stderr, 3))
	}
	// Every stream is delivered, or sealed and waiting, or still a log, sealed at the next start. An upload
	// cut off by the deadline after S3 stored it is both delivered and waiting: at least once.
	keys, err := e.moto.Keys(context.Background(), e.p.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, k := range keys {
		m := keyPattern.FindStringSubmatch(k)
		covered[m[1]+"/"+m[2]] = true
	}
	held, unsealed := storedStreams(t, filepath.Join(e.dir, "store"))
	for st := range held {
		covered[st] = true
	}
	for st := range unsealed {
		covered[st] = true
	}
	for _, org := range orgList {
		for _, k := range kinds {
			if !covered[org+"/"+k] {
				t.Errorf("stream %s/%s is neither delivered nor on disk", org, k)
			}
		}
	}
	t.Logf("%d streams: %d objects delivered within Shutdown_Timeout; on disk for the next start: %d streams with sealed batches, %d with records in the log",
		orgCount*len(kinds), len(keys), len(held), len(unsealed))
	return int64(r.Summary("peak_rss_kb")) << 10, took
}

// TestTenThousandTenants: 10,000 organisations x 3 kinds active at once. Peak RSS of the host (its VmHWM: the
// Go runtime and plugin included) stays within a bound and close to a run of as many events over 10
// organisations: no per-stream buffers, compressors or open files. WIVAUDIT_TENANTS overrides the count.
func TestTenThousandTenants(t *testing.T) {
	n := 10000
	if v := os.Getenv("WIVAUDIT_TENANTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	const perStream = 2
	base, baseTook := tenantsRun(t, 10, n*perStream/10)
	peak, took := tenantsRun(t, n, perStream)
	t.Logf("peak RSS: %d MiB with %d streams open at once (%s), %d MiB with 30 streams and as many events (%s): ratio %.2f",
		peak>>20, n*3, took.Round(time.Second), base>>20, baseTook.Round(time.Second), float64(peak)/float64(base))
	const bound = 128 << 20
	if peak > bound {
		t.Errorf("peak RSS %d MiB is over the %d MiB bound", peak>>20, bound>>20)
	}
}
