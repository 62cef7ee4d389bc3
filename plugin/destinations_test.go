package plugin

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/conf"
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

func destConfig(t *testing.T, unlisted string, file string) *conf.Config {
	c, err := conf.Parse(conf.Map{"Bucket": "default-bucket", "Store_Dir": t.TempDir(), "Upload_Timeout": "1s",
		"Destinations_File": file, "Unlisted_Orgs": unlisted, "Destinations_Refresh_Interval": "1s",
		"Hold_Retry_Interval": "1s", "Shutdown_Timeout": "5s"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startRouted starts an instance with a destinations file and a fake that records each key's bucket.
func startRouted(t *testing.T, unlisted, file string, fake *fakeS3) (*Instance, *logSink) {
	t.Helper()
	if fake.objects == nil {
		fake.objects, fake.buckets = map[string][]byte{}, map[string]string{}
	}
	sink := &logSink{}
	in, err := start(destConfig(t, unlisted, file), "test", sink.log, fake, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in, sink
}

// waitRoute waits until org's records reached bucket; uploads run on their own clock.
func waitRoute(t *testing.T, fake *fakeS3, org, bucket string) {
	t.Helper()
	waitUntil(t, func() bool { return bucketsOf(fake)[org] == bucket }, func() string {
		return fmt.Sprintf("%s's records did not reach %s: %v", org, bucket, bucketsOf(fake))
	})
}

// waitUntil polls cond for up to 10 s, and fails the test with why() if it never holds.
func waitUntil(t *testing.T, cond func() bool, why func() string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(why())
		}
	}
}

func bucketsOf(f *fakeS3) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for key, bucket := range f.buckets {
		out[strings.SplitN(key, "/", 2)[0]] = bucket
	}
	return out
}

func TestDestinationsRouteEachOrganisation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a", "org-b": "bucket-b"})
	fake := &fakeS3{}
	in, sink := startRouted(t, "default", file, fake)
	in.Flush(cat(event("org-a", "1"), event("org-b", "2"), event("org-c", "3")), "audit.org")
	in.Close()
	want := map[string]string{"org-a": "bucket-a", "org-b": "bucket-b", "org-c": "default-bucket"}
	if got := bucketsOf(fake); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	if log := strings.Join(sink.lines, "\n"); strings.Contains(log, "-secret") {
		t.Errorf("an External ID was logged:\n%s", log)
	}
}

func TestDestinationsUnlistedHoldThenListed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	fake := &fakeS3{}
	in, sink := startRouted(t, "hold", file, fake)
	defer in.Close()
	in.Flush(event("org-new", "1"), "audit.user")
	waitLog(t, sink, "has no entry in Destinations_File yet")
	if len(bucketsOf(fake)) != 0 {
		t.Fatal("an unlisted organisation was delivered under Unlisted_Orgs hold")
	}
	os.WriteFile(file, []byte("not json"), 0o600)
	waitLog(t, sink, "cannot be used, keeping the previous destinations")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a", "org-new": "bucket-new"})
	waitLog(t, sink, "Destinations_File reloaded: 2 organisations (1 added, 0 changed, 0 removed)")
	waitRoute(t, fake, "org-new", "bucket-new")
}

func TestDestinationsRemovedOrgIsHeldNeverDefaulted(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	cfg := destConfig(t, "default", file)
	fake := &fakeS3{objects: map[string][]byte{}, buckets: map[string]string{}, failN: 1 << 30}
	sink := &logSink{}
	in, err := start(cfg, "test", sink.log, fake, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.Flush(event("org-a", "1"), "audit.org")
	writeDestinations(t, file, map[string]string{})
	waitLog(t, sink, "0 organisations (0 added, 0 changed, 1 removed)")
	in.Close()
	fake.failN = 0
	// After a restart the file no longer lists org-a, but the store remembers it was listed.
	in, err = start(cfg, "test", sink.log, fake, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.Flush(event("org-a", "2"), "audit.org")
	waitLog(t, sink, "organisation org-a was removed from Destinations_File")
	in.Close()
	if got := bucketsOf(fake); len(got) != 0 {
		t.Errorf("a removed organisation's data was delivered: %v", got)
	}
}

func TestDestinationsDeadLetterPolicy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	fake := &fakeS3{}
	in, _ := startRouted(t, "deadletter", file, fake)
	in.Flush(cat(event("org-a", "1"), event("org-x", "2")), "audit.api")
	in.Close()
	dead, _ := os.ReadFile(in.store.DeadLetterPath())
	if !strings.Contains(string(dead), `org_id \"org-x\" has no destination in Destinations_File`) || len(bucketsOf(fake)) != 1 {
		t.Errorf("dead letters %s, routes %v", dead, bucketsOf(fake))
	}
}

func TestInvalidDestinationsFileFailsStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	os.WriteFile(file, []byte(`[{"org_id":"a","bucket_name":"BAD","role_arn":"x","external_id":"y-secret"}]`), 0o600)
	_, err := start(destConfig(t, "default", file), "test", (&logSink{}).log, &fakeS3{}, nil)
	if err == nil || !strings.Contains(err.Error(), `Destinations_File `+file+`: entry 0 (org_id "a"): bucket_name`) || strings.Contains(err.Error(), "y-secret") {
		t.Errorf("got %v", err)
	}
}

// waitLog waits for a log line; the reloader and uploader run on their own clocks.
func waitLog(t *testing.T, sink *logSink, want string) {
	t.Helper()
	waitLogMatch(t, sink, regexp.MustCompile(regexp.QuoteMeta(want)))
}

// waitLogMatch waits for a log line that matches want and returns its submatches.
func waitLogMatch(t *testing.T, sink *logSink, want *regexp.Regexp) []string {
	t.Helper()
	var m []string
	waitUntil(t, func() bool { m = want.FindStringSubmatch(sink.joined()); return m != nil }, func() string {
		return fmt.Sprintf("no log line says %q:\n%s", want, sink.joined())
	})
	return m
}

func TestUndeliveredBatchesFollowTheirOrganisation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-old"})
	fake := &fakeS3{down: "bucket-old"}
	in, sink := startRouted(t, "default", file, fake)
	defer in.Close()
	in.Flush(event("org-a", "1"), "audit.org")
	waitLog(t, sink, "upload of org-a/org-audit-logs-")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-new"})
	waitLog(t, sink, "1 organisations (0 added, 1 changed, 0 removed)")
	waitRoute(t, fake, "org-a", "bucket-new")
}

// TestReloadIsAllOrNothing: a version of the file whose organisations cannot be remembered in Store_Dir is
// not applied at all (it used to route by the new version while logging that the previous one was kept).
func TestReloadIsAllOrNothing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	cfg := destConfig(t, "hold", file)
	cfg.DestinationsRefresh = time.Hour // the test reloads by itself
	in, err := start(cfg, "test", (&logSink{}).log, &fakeS3{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
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
	if what, err := in.dests.reload(); err != nil || what != "2 organisations (1 added, 0 changed, 0 removed)" {
		t.Errorf("reload once Store_Dir can be written: %q, %v", what, err)
	}
	if dest, _ := in.dests.seal("org-b"); dest != toOrg {
		t.Errorf("org-b is sealed for %q after the reload", dest)
	}
}
