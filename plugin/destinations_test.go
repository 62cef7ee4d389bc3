package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/metrics"
)

func writeDestinations(t *testing.T, path string, orgBuckets map[string]string) {
	t.Helper()
	var entries []string
	for org, bucket := range orgBuckets {
		entries = append(entries, fmt.Sprintf(`{"org_id":%q,"bucket_name":%q,"role_arn":"arn:aws:iam::111122223333:role/r-%s","external_id":"ext-%s-secret"}`, org, bucket, org, org))
	}
	if err := os.WriteFile(path, []byte("["+strings.Join(entries, ",")+"]"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// destConfig is an output with a destinations file; with Unlisted_Orgs archive, archive-bucket is the archive.
func destConfig(t *testing.T, unlisted string, file string) *conf.Config {
	archive := ""
	if unlisted == conf.UnlistedArchive {
		archive = "archive-bucket"
	}
	c, err := conf.Parse(conf.Map{"Bucket": archive, "Store_Dir": t.TempDir(), "Upload_Timeout": "1s",
		"Destinations_File": file, "Unlisted_Orgs": unlisted, "Destinations_Refresh_Interval": "1s",
		"Hold_Retry_Interval": "1s", "Shutdown_Timeout": "5s"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startRouted starts an instance with a destinations file.
func startRouted(t *testing.T, unlisted, file string, fake *fakeS3) *testInstance {
	t.Helper()
	return startTest(t, destConfig(t, unlisted, file), "test", fake, TestHooks{})
}

// reload moves the clock by Destinations_Refresh_Interval: the reloader reads the file again.
func (ti *testInstance) reload() { ti.clock.Advance(ti.cfg.DestinationsRefresh) }

// routeChunk runs one chunk through an output whose destinations file lists entries (org_id: bucket) and
// returns the bucket each organisation's records went to, and the output.
func routeChunk(t *testing.T, unlisted string, entries map[string]string, chunk []byte) (map[string]string, *testInstance) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, entries)
	in := startRouted(t, unlisted, file, &fakeS3{})
	in.Flush(chunk, "audit.org")
	in.Close()
	return in.s3.bucketsOf(), in
}

func TestDestinationsRouteEachOrganisation(t *testing.T) {
	got, in := routeChunk(t, "archive", map[string]string{"org-a": "bucket-a", "org-b": "bucket-b"},
		cat(event("org-a", "1"), event("org-b", "2"), event("org-c", "3")))
	want := map[string]string{"org-a": "bucket-a", "org-b": "bucket-b", "org-c": "archive-bucket"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	if log := in.sink.joined(); strings.Contains(log, "-secret") {
		t.Errorf("an External ID was logged:\n%s", log)
	}
}

func TestDestinationsUnlistedHoldThenListed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	in := startRouted(t, "hold", file, &fakeS3{})
	in.Flush(event("org-new", "1"), "audit.user")
	in.sealDue()
	in.waitLogged(t, "has no entry in Destinations_File yet")
	if len(in.s3.bucketsOf()) != 0 {
		t.Fatal("an unlisted organisation was delivered under Unlisted_Orgs hold")
	}
	os.WriteFile(file, []byte("not json"), 0o600)
	in.reload()
	in.waitLogged(t, "cannot be used, keeping the previous destinations")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a", "org-new": "bucket-new"})
	in.reload()
	in.waitLogged(t, "Destinations_File reloaded: 2 organisations (1 added, 0 changed, 0 removed); the file could not be used for 1s")
	in.waitRoute(t, "org-new", "bucket-new")
	in.waitLog(t, regexp.MustCompile(`organisation org-new delivers again after \d+s and \d+ attempts not ok \(last: held\)`))
}

func TestDestinationsRemovedOrgIsHeldNeverDefaulted(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	cfg := destConfig(t, "archive", file)
	fake := &fakeS3{failN: 1 << 30}
	in := startTest(t, cfg, "test", fake, TestHooks{})
	in.Flush(event("org-a", "1"), "audit.org")
	writeDestinations(t, file, map[string]string{})
	in.reload()
	in.waitLogged(t, "0 organisations (0 added, 0 changed, 1 removed)")
	in.shutDown(t)
	fake.failN = 0
	// After a restart the file no longer lists org-a, but the store remembers it was listed.
	in = startTest(t, cfg, "test", fake, TestHooks{})
	in.Flush(event("org-a", "2"), "audit.org")
	in.waitLogged(t, "organisation org-a was removed from Destinations_File")
	in.shutDown(t)
	if got := fake.bucketsOf(); len(got) != 0 {
		t.Errorf("a removed organisation's data was delivered: %v", got)
	}
}

func TestDestinationsDeadLetterPolicy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	in := startRouted(t, "deadletter", file, &fakeS3{})
	in.Flush(cat(event("org-a", "1"), event("org-x", "2")), "audit.api")
	in.Close()
	dead, _ := os.ReadFile(in.store.DeadLetterPath())
	if !strings.Contains(string(dead), `org_id \"org-x\" has no destination in Destinations_File`) || len(in.s3.bucketsOf()) != 1 {
		t.Errorf("dead letters %s, routes %v", dead, in.s3.bucketsOf())
	}
}

func TestInvalidDestinationsFileFailsStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	os.WriteFile(file, []byte(`[{"org_id":"a","bucket_name":"BAD","role_arn":"x","external_id":"y-secret"}]`), 0o600)
	_, err := start(destConfig(t, "hold", file), "test", (&logSink{}).log, deps{send: &fakeS3{}, clock: newFakeClock()})
	if err == nil || !strings.Contains(err.Error(), `Destinations_File `+file+`: entry 0 (line 1, column 2, org_id "a"): bucket_name`) || strings.Contains(err.Error(), "y-secret") {
		t.Errorf("got %v", err)
	}
}

// TestUndeliveredBatchesFollowTheirOrganisation: a batch that could not be uploaded to its organisation's
// bucket goes to the bucket the destinations file names next.
func TestUndeliveredBatchesFollowTheirOrganisation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-old"})
	in := startRouted(t, "archive", file, &fakeS3{down: "bucket-old"})
	in.Flush(event("org-a", "1"), "audit.org")
	in.sealDue()
	in.waitLogged(t, "upload of org-a/org-audit-logs-")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-new"})
	in.reload()
	in.waitLogged(t, "1 organisations (0 added, 1 changed, 0 removed)")
	in.waitRoute(t, "org-a", "bucket-new")
}

// TestReloadIsAllOrNothing: a version of the file whose organisations cannot be remembered in Store_Dir is
// not applied at all (it used to route by the new version while logging that the previous one was kept).
func TestReloadIsAllOrNothing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	cfg := destConfig(t, "hold", file)
	in := startTest(t, cfg, "test", &fakeS3{}, TestHooks{}) // the test reloads by itself
	known := filepath.Join(cfg.StoreDir, "destinations-known.json")
	if err := os.Remove(known); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(known, 0o700); err != nil { // a folder in its place: it cannot be replaced
		t.Fatal(err)
	}
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a", "org-b": "bucket-b"})
	if what, err := in.dests.reload(); err == nil {
		t.Fatalf("reload reported %q although the known organisations could not be written", what)
	}
	if dest, _ := in.dests.seal("org-b"); dest != toPending {
		t.Errorf("the failed version was applied: org-b is sealed for %q", dest)
	}
	os.Remove(known)
	if what, err := in.dests.reload(); err != nil || what != "2 organisations (1 added, 0 changed, 0 removed); the file could not be used for 0s" {
		t.Errorf("reload once Store_Dir can be written: %q, %v", what, err)
	}
	if dest, _ := in.dests.seal("org-b"); dest != toOrg {
		t.Errorf("org-b is sealed for %q after the reload", dest)
	}
}

// TestOrganisationIDsMatchInAnyCase: records reach their entry whatever the case of their org_id, and the
// key has the entry's spelling.
func TestOrganisationIDsMatchInAnyCase(t *testing.T) {
	got, in := routeChunk(t, "hold", map[string]string{"3f7539ad-7f8b": "bucket-a", "ORG-B": "bucket-b"},
		cat(event("3F7539AD-7F8B", "1"), event("org-b", "2"), event("Org-B", "3")))
	want := map[string]string{"3f7539ad-7f8b": "bucket-a", "ORG-B": "bucket-b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	if len(in.s3.objects) != 2 {
		t.Errorf("objects %v: one per organisation expected", in.s3.objects)
	}
}

// orgOutput starts an output that serves one organisation (Org_ID) with its own bucket.
func orgOutput(t *testing.T, org, bucket string, fake *fakeS3) *testInstance {
	t.Helper()
	cfg, err := conf.Parse(conf.Map{"Org_ID": org, "Bucket": bucket, "Store_Dir": t.TempDir(), "Upload_Timeout": "1s", "Shutdown_Timeout": "5s"})
	if err != nil {
		t.Fatal(err)
	}
	return startTest(t, cfg, "out-"+org, fake, TestHooks{})
}

func deadLetterReasons(t *testing.T, in *Instance) []string {
	t.Helper()
	data, err := os.ReadFile(in.store.DeadLetterPath())
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var dl struct{ Reason string }
		if line != "" && json.Unmarshal([]byte(line), &dl) == nil {
			out = append(out, dl.Reason)
		}
	}
	return out
}

// TestOrgIDOutputDeliversOnlyItsOrganisation: alone in the process, an Org_ID output delivers its
// organisation's records (in any case, under Org_ID's spelling) and keeps the others', reported, in its
// dead-letter file: they never reach its bucket.
func TestOrgIDOutputDeliversOnlyItsOrganisation(t *testing.T) {
	in := orgOutput(t, "org-a", "bucket-a", &fakeS3{})
	in.Flush(cat(event("org-a", "1"), event("ORG-A", "2"), event("org-b", "3")), "audit.user")
	in.Close()
	if got := in.s3.bucketsOf(); fmt.Sprint(got) != "map[org-a:bucket-a]" {
		t.Errorf("routes %v", got)
	}
	if reasons := deadLetterReasons(t, in.Instance); len(reasons) != 1 || !strings.Contains(reasons[0], `organisation org-b has a destination in no wivaudit output that receives tag "audit.user" (this one serves org-a)`) {
		t.Errorf("dead letters %q", reasons)
	}
	log := in.sink.joined()
	for _, want := range []string{"organisation org-b has a destination in no wivaudit output that receives tag \"audit.user\": its records are kept in",
		"stopped: 2 records accepted, 1 rejected", "records of other organisations: 0 left to the outputs that serve them, 1 kept in the dead-letter file"} {
		if !strings.Contains(log, want) {
			t.Errorf("no log line says %q:\n%s", want, log)
		}
	}
}

// TestArchiveOutputKeepsACopyOfEveryOrganisation: a destinations file output and the platform's archive
// (Unlisted_Orgs archive without a file) are handed the same chunk. The customer's bucket receives its own
// organisation only; the archive every organisation, the listed one included, without leaving any to the
// other output.
func TestArchiveOutputKeepsACopyOfEveryOrganisation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	customers := startRouted(t, "deadletter", file, &fakeS3{})
	archive := startTest(t, testConfig(t), "archive", &fakeS3{}, TestHooks{})
	chunk := cat(event("org-a", "1"), event("org-c", "2"))
	var wg sync.WaitGroup
	for _, in := range []*testInstance{customers, archive} {
		wg.Go(func() { in.Flush(chunk, "audit.user") })
	}
	wg.Wait()
	customers.Close()
	archive.Close()
	if got := customers.s3.bucketsOf(); fmt.Sprint(got) != "map[org-a:bucket-a]" {
		t.Errorf("the customers' output routes %v", got)
	}
	if got := archive.s3.bucketsOf(); fmt.Sprint(got) != "map[org-a:b-1 org-c:b-1]" {
		t.Errorf("the archive routes %v, want both organisations to b-1", got)
	}
	if log := archive.sink.joined(); strings.Contains(log, "left to the outputs that serve them") {
		t.Errorf("the archive left records to another output:\n%s", log)
	}
}

// TestOrgIDOutputsTakeOnlyTheirOwn: two Org_ID outputs are handed the same chunks at the same time, as with
// Match audit.* each. Each delivers its own organisation and leaves the other's; a third organisation, which
// neither serves, is kept once, by the output that flushed it first.
func TestOrgIDOutputsTakeOnlyTheirOwn(t *testing.T) {
	a := orgOutput(t, "org-a", "bucket-a", &fakeS3{})
	b := orgOutput(t, "org-b", "bucket-b", &fakeS3{})
	chunk := cat(event("org-a", "1"), event("org-b", "2"), event("org-c", "3"), event("ORG-C", "4"))
	var wg sync.WaitGroup
	for _, in := range []*testInstance{a, b} {
		wg.Go(func() { in.Flush(chunk, "audit.user") })
	}
	wg.Wait()
	a.Close()
	b.Close()
	if ga, gb := a.s3.bucketsOf(), b.s3.bucketsOf(); fmt.Sprint(ga) != "map[org-a:bucket-a]" || fmt.Sprint(gb) != "map[org-b:bucket-b]" {
		t.Errorf("routes: %v and %v", ga, gb)
	}
	ra, rb := deadLetterReasons(t, a.Instance), deadLetterReasons(t, b.Instance)
	for _, r := range append(ra, rb...) {
		if !regexp.MustCompile(`^organisation (org-c|ORG-C) has a destination in no wivaudit output`).MatchString(r) {
			t.Errorf("kept: %s", r)
		}
	}
	// Each output leaves the other's record; each org-c record is kept by one and left by the other.
	counters := regexp.MustCompile(`stopped: .* ([0-9]) left to the outputs that serve them, ([0-9]) kept`)
	ca, cb := counters.FindStringSubmatch(a.sink.joined()), counters.FindStringSubmatch(b.sink.joined())
	if ca == nil || cb == nil {
		t.Fatalf("no counters:\n%s\n%s", a.sink.joined(), b.sink.joined())
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	if n(ca[1])+n(cb[1]) != 4 || n(ca[2]) != len(ra) || n(cb[2]) != len(rb) || len(ra)+len(rb) != 2 {
		t.Errorf("left %s and %s, kept %s and %s (dead letters %d and %d), want 4 left and 2 kept in all", ca[1], cb[1], ca[2], cb[2], len(ra), len(rb))
	}
}

// TestOrgIDOutputWaitsOnceForAnotherToFlushATag: an output that serves an organisation but is never handed a
// tag is waited for once, up to learnWait; the records of that tag are then kept by the output that receives
// it.
func TestOrgIDOutputWaitsOnceForAnotherToFlushATag(t *testing.T) {
	a := orgOutput(t, "org-a", "bucket-a", &fakeS3{})
	orgOutput(t, "org-b", "bucket-b", &fakeS3{}) // as with Match audit.user: never handed audit.api
	first := goReturns(func() { a.Flush(event("org-b", "1"), "audit.api") })
	waitFor(t, &a.clock.set, func() bool { return a.clock.waitsFor(a.clock.Now().Add(learnWait)) }, func() string {
		return "the first flush does not wait for the output that serves org-b"
	})
	a.clock.Advance(learnWait)
	first(t, "the first flush did not return after learnWait")
	// The clock stands still now: the second flush returns only if it does not wait.
	goReturns(func() { a.Flush(event("org-b", "2"), "audit.api") })(t, "the second flush waited again")
	a.Close()
	reasons := deadLetterReasons(t, a.Instance)
	if len(reasons) != 2 || !strings.Contains(reasons[1], `organisation org-b is served by out-org-b, which had not flushed tag "audit.api" yet: kept here in case it does not receive it`) {
		t.Errorf("dead letters %q", reasons)
	}
}

func TestLeaveTo(t *testing.T) {
	lists := func(orgs ...string) func(string) (string, bool) {
		return func(org string) (string, bool) { return org, slices.Contains(orgs, org) }
	}
	a := &member{name: "a", lists: lists("org-a")}
	b := &member{name: "b", lists: lists("org-b")}
	file := &member{name: "file", lists: lists("org-f"), keepsUnlisted: true}
	archive := &member{name: "archive", lists: lists(), keepsUnlisted: true}
	cases := []struct {
		self      *member
		receivers []*member
		org, want string // want "": self keeps it
	}{
		{a, []*member{a, b}, "org-b", "b"},
		{a, []*member{a}, "org-b", ""},              // b does not receive the tag
		{a, []*member{a, b}, "org-c", ""},           // nobody serves it: a keeps it (once, by claim)
		{a, []*member{a, b, file}, "org-c", "file"}, // the file output holds unlisted organisations
		{a, []*member{a, archive}, "org-c", "archive"},
		{file, []*member{a, file}, "org-a", "a"},
		{file, []*member{a, file, archive}, "org-c", ""}, // the file output keeps its unlisted ones itself
		{archive, []*member{archive}, "org-x", ""},
	}
	for i, tc := range cases {
		got := ""
		if by := leaveTo(tc.self, tc.receivers, tc.org); by != nil {
			got = by.name
		}
		if got != tc.want {
			t.Errorf("case %d: %s leaves %s to %q, want %q", i, tc.self.name, tc.org, got, tc.want)
		}
	}
}

// TestBatchesGoOnlyToTheirOrganisation: whatever a batch was sealed for (perhaps under an earlier
// configuration), it is uploaded only to its own organisation's destination or to the archive it was sealed
// for, and keyed with the destination's spelling.
func TestBatchesGoOnlyToTheirOrganisation(t *testing.T) {
	parse := func(m conf.Map) *conf.Config {
		c, err := conf.Parse(m)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dests := func(c *conf.Config, byOrg map[string]conf.Destination, known ...string) *destinations {
		d := &destinations{cfg: c, byOrg: byOrg, known: map[string]bool{}}
		d.own, _ = c.Output()
		for _, k := range known {
			d.known[k] = true
		}
		return d
	}
	entry := conf.Destination{OrgID: "Org-L", Bucket: "bucket-l", KeyPrefix: "wiv/"}
	perOrg := dests(parse(conf.Map{"Org_ID": "Org-A", "Bucket": "bucket-a"}), nil)
	archive := dests(parse(conf.Map{"Unlisted_Orgs": "archive", "Bucket": "archive"}), nil)
	fileArchive := dests(parse(conf.Map{"Destinations_File": "/d.json", "Unlisted_Orgs": "archive", "Bucket": "archive"}), map[string]conf.Destination{"org-l": entry})
	fileHold := dests(parse(conf.Map{"Destinations_File": "/d.json"}), map[string]conf.Destination{"org-l": entry}, "org-r")
	cases := []struct {
		d               *destinations
		org, sealedFor  string
		bucket, keyOrg  string // bucket "" : held, with a reason that says hold
		reasonHasIfHeld string
	}{
		{perOrg, "org-a", toOutput, "bucket-a", "Org-A", ""},
		{perOrg, "org-b", toOutput, "", "", "is not this output's (Org_ID Org-A)"},
		{perOrg, "org-b", toOrg, "", "", "is not this output's"},
		{archive, "org-x", toOutput, "archive", "org-x", ""},
		{fileArchive, "org-x", toOutput, "archive", "org-x", ""},
		{fileArchive, "ORG-L", toOrg, "bucket-l", "Org-L", ""},
		{fileHold, "org-l", toOutput, "bucket-l", "Org-L", ""}, // sealed under an earlier default: its entry now
		{fileHold, "org-x", toOutput, "", "", "no entry in Destinations_File yet"},
		{fileHold, "org-x", toPending, "", "", "no entry in Destinations_File yet"},
		{fileHold, "ORG-R", toOrg, "", "", "was removed from Destinations_File"},
	}
	for i, tc := range cases {
		b := &buffer.Batch{Manifest: buffer.Manifest{Org: tc.org, Destination: tc.sealedFor}}
		got, hold := tc.d.resolve(b)
		if got.Bucket != tc.bucket || got.OrgID != tc.keyOrg || (tc.bucket == "") != (hold != "") || !strings.Contains(hold, tc.reasonHasIfHeld) {
			t.Errorf("case %d: %s sealed for %s goes to %v (hold %q)", i, tc.org, tc.sealedFor, got, hold)
		}
	}
}

// TestDestinationsFileFailureIsVisible: a destinations file that cannot be used (invalid, then unreadable)
// shows in the output's file status (where, since when, the version in use) and in its metrics, each failure
// counted once however often it is read again; a valid version, or the version in use put back, ends it and
// says how long it lasted. Readiness is left alone: the version in use still delivers.
func TestDestinationsFileFailureIsVisible(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	cfg := destConfig(t, "hold", file)
	cfg.DestinationsRefresh = time.Hour // the test reloads by itself
	in := startTest(t, cfg, "test", &fakeS3{}, TestHooks{})
	start := in.clock.Now().UTC()
	check := func(when string, want metrics.DestinationsFile, ok, failed float64) {
		t.Helper()
		want.Path = file
		if got, _ := in.dests.fileStatus(); got == nil || *got != want {
			t.Errorf("%s: file status\n%+v, want\n%+v", when, got, want)
		}
		m := scrape(t, in.Instance, "test")
		failing := 0.0
		if want.Failing {
			failing = 1
		}
		if m["wivaudit_destinations_reload_failing{}"] != failing || m["wivaudit_destinations_reloads_total{result=ok}"] != ok ||
			m["wivaudit_destinations_reloads_total{result=failed}"] != failed {
			t.Errorf("%s: failing %v, reloads ok %v, failed %v; want %v, %v, %v", when, m["wivaudit_destinations_reload_failing{}"],
				m["wivaudit_destinations_reloads_total{result=ok}"], m["wivaudit_destinations_reloads_total{result=failed}"], failing, ok, failed)
		}
		if why := in.ready(); why != "" {
			t.Errorf("%s: not ready: %s", when, why)
		}
		note := "; Destinations_File cannot be used since " + want.FailingSince.Format(time.RFC3339) + ", delivering with the version loaded at " +
			want.LoadedAt.Format(time.RFC3339)
		if status := in.status(in.counters(), 0); strings.HasSuffix(status, note) != want.Failing || !want.Failing && strings.Contains(status, "Destinations_File") {
			t.Errorf("%s: status line %q", when, status)
		}
	}
	reload := func(after time.Duration) (string, error) {
		in.clock.Advance(after)
		return in.dests.reload()
	}
	check("started", metrics.DestinationsFile{LoadedAt: start, Organisations: 1}, 0, 0)

	os.WriteFile(file, []byte("[\n  {\"org_id\": x}\n]"), 0o600)
	if _, err := reload(time.Minute); err == nil || !strings.Contains(err.Error(), "line 2, column 14: invalid character 'x'") {
		t.Fatalf("invalid version: %v", err)
	}
	broken := start.Add(time.Minute)
	invalid := metrics.DestinationsFile{Failing: true, LoadedAt: start, Organisations: 1, FailingSince: broken,
		LastError: "line 2, column 14: invalid character 'x' looking for beginning of value", LastErrorAt: broken, ErrorLine: 2, ErrorColumn: 14}
	check("invalid", invalid, 0, 1)
	if what, err := reload(time.Minute); what != "" || err != nil {
		t.Errorf("the invalid version read again: %q, %v", what, err)
	}
	check("the invalid version read again", invalid, 0, 1)

	os.Remove(file)
	if _, err := reload(time.Minute); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file removed: %v", err)
	}
	reload(time.Minute)
	gone := metrics.DestinationsFile{Failing: true, LoadedAt: start, Organisations: 1, FailingSince: broken,
		LastError: "open " + file + ": no such file or directory", LastErrorAt: start.Add(3 * time.Minute)}
	check("removed", gone, 0, 2)

	writeDestinations(t, file, map[string]string{"org-a": "bucket-a", "org-b": "bucket-b"})
	if what, err := reload(time.Minute); err != nil || what != "2 organisations (1 added, 0 changed, 0 removed); the file could not be used for 4m0s" {
		t.Errorf("fixed: %q, %v", what, err)
	}
	fixed := gone
	fixed.Failing, fixed.FailingSince, fixed.LoadedAt, fixed.Organisations = false, time.Time{}, start.Add(5*time.Minute), 2
	check("fixed", fixed, 1, 2)

	valid, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(`[{"org_id":"a","bucket_name":"BAD","role_arn":"x","external_id":"y-secret"}]`), 0o600)
	if _, err := reload(time.Minute); err == nil {
		t.Fatal("a bucket name refused: no error")
	}
	os.WriteFile(file, valid, 0o600)
	if what, err := reload(30 * time.Second); err != nil || what != "the version in use is back in place; the file could not be used for 30s" {
		t.Errorf("the version in use put back: %q, %v", what, err)
	}
	status, _ := in.dests.fileStatus()
	if status.Failing || status.ErrorLine != 1 || status.ErrorColumn != 2 || !strings.Contains(status.LastError, "bucket_name") ||
		strings.Contains(status.LastError, "y-secret") || !status.LoadedAt.Equal(start.Add(5*time.Minute)) {
		t.Errorf("the version in use put back: %+v", status)
	}
	check("put back", *status, 2, 3)
}
