package plugin

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wiv/out_wivaudit/metrics"
	"github.com/wiv/out_wivaudit/record"
	"github.com/wiv/out_wivaudit/upload"
)

func TestStateAfter(t *testing.T) {
	cases := []struct {
		a     action
		state metrics.State
		says  bool
	}{
		{send, "", false},
		{moveKey, "", false},
		{done, metrics.OK, true},
		{retry, metrics.Retrying, true},
		{nextKey, "", false},
		{reassume, metrics.Retrying, true},
		{hold, metrics.Held, true},
		{refused, metrics.Refused, true},
		{quarantine, metrics.Quarantined, true},
		{drop, "", false},
	}
	for _, c := range cases {
		if s, ok := stateAfter(c.a); s != c.state || ok != c.says {
			t.Errorf("action %d: %q %v, want %q %v", c.a, s, ok, c.state, c.says)
		}
	}
}

func TestStateNow(t *testing.T) {
	cases := []struct {
		last metrics.State
		held string
		want metrics.State
	}{
		{"", "", metrics.OK},                                         // never tried
		{"", "not in Destinations_File", metrics.Held},               // records waiting, never tried
		{metrics.OK, "removed from Destinations_File", metrics.Held}, // delivered before, held now
		{metrics.Held, "", metrics.OK},                               // listed since its last look
		{metrics.Refused, "", metrics.Refused},
		{metrics.Retrying, "", metrics.Retrying},
		{metrics.Quarantined, "", metrics.Quarantined},
		{metrics.Refused, "removed from Destinations_File", metrics.Held},
	}
	for _, c := range cases {
		if got := stateNow(c.last, c.held); got != c.want {
			t.Errorf("last %q, held %q: %q, want %q", c.last, c.held, got, c.want)
		}
	}
}

func TestNotOKNamesAFew(t *testing.T) {
	list := []metrics.Destination{{OrgID: "org-ok", State: metrics.OK, ErrorClass: "network"}}
	if got := notOK(list); got != "" {
		t.Errorf("all ok: %q", got)
	}
	list = append(list, metrics.Destination{OrgID: "org-r", State: metrics.Refused, ErrorClass: "external-id-or-trust"},
		metrics.Destination{OrgID: "org-h", State: metrics.Held, ErrorClass: "network"})
	if got, want := notOK(list), "; not ok: org-h (held), org-r (refused: external-id-or-trust)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for i := range 5 {
		list = append(list, metrics.Destination{OrgID: fmt.Sprintf("org-%d", i), State: metrics.Retrying, ErrorClass: "timeout"})
	}
	if got, want := notOK(list), "; not ok: org-0 (retrying: timeout), org-1 (retrying: timeout), org-2 (retrying: timeout), org-3 (retrying: timeout), org-4 (retrying: timeout) and 2 more"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// scrape collects the instance's metrics as Prometheus would (a pedantic registry checks that they match
// their descriptions) and returns each series' value by name{labels}, the output label left out.
func scrape(t *testing.T, in *Instance, name string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(in, name))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if l.GetName() == "output" {
					if l.GetValue() != metricsName(name) {
						t.Errorf("%s: output label %q", f.GetName(), l.GetValue())
					}
					continue
				}
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

// TestDestinationsHealth: three organisations of a destinations file output: org-a delivered, org-b whose
// role refuses to be assumed, org-c unlisted and held. /destinations, the metrics (with and without
// Metrics_Per_Org) and the status line each say so, with the counts of what was sent.
func TestDestinationsHealth(t *testing.T) {
	for _, perOrg := range []bool{false, true} {
		t.Run(fmt.Sprintf("Metrics_Per_Org %v", perOrg), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "destinations.json")
			writeDestinations(t, file, map[string]string{"org-a": "bucket-a", "org-b": "bucket-b"})
			cfg := destConfig(t, "hold", file)
			cfg.MetricsPerOrg = perOrg
			fake := &fakeS3{refused: "bucket-b"}
			in := startTest(t, cfg, "output:wivaudit:wivaudit.3", fake, TestHooks{})
			start := in.clock.Now()
			chunk := cat(event("org-a", "a1"), event("org-a", "a2"), event("org-a", "a3"), event("org-b", "b1"), event("org-b", "b2"),
				event("org-c", "c1"), event("org-c", "c2"), event("org-c", "c3"), event("org-c", "c4"), event("../bad", "x"))
			if got := in.Flush(chunk, "audit.org"); got != OK {
				t.Fatalf("Flush = %v", got)
			}
			in.sealDue()
			in.waitDelivered(t, 3)
			in.waitLogged(t, "refused, attempt 1")
			in.waitLogged(t, "holding org-c/")
			in.waitQueued(t, 2) // org-b's and org-c's batches; org-a's has left
			now := in.clock.Now()

			byOrg := map[string]metrics.Destination{}
			for _, d := range in.destinations() {
				byOrg[d.OrgID] = d
			}
			if len(byOrg) != 3 {
				t.Fatalf("organisations %v", byOrg)
			}
			a, b, c := byOrg["org-a"], byOrg["org-b"], byOrg["org-c"]
			if a.State != metrics.OK || a.Bucket != "bucket-a" || !a.LastSuccess.Equal(now) || !a.LastAttempt.Equal(now) ||
				a.RecordsDelivered != 3 || a.BatchesWaiting != 0 || a.LastError != "" || !a.OldestUndelivered.IsZero() {
				t.Errorf("org-a: %+v", a)
			}
			if b.State != metrics.Refused || b.ErrorClass != "external-id-or-trust" || b.GuideStep != "3.2.2" ||
				!strings.Contains(b.LastError, "STS AssumeRole of arn:aws:iam::111122223333:role/r-org-b failed (AccessDenied): the External ID must equal") ||
				strings.Contains(b.LastError, "secret") || !strings.HasSuffix(b.LastError, "with ExternalId [redacted]") || !b.LastErrorAt.Equal(now) || !b.LastSuccess.IsZero() ||
				b.BatchesWaiting != 1 || b.RecordsWaiting != 2 || !b.OldestUndelivered.Equal(start) || b.OldestAgeSeconds != now.Sub(start).Seconds() {
				t.Errorf("org-b: %+v", b)
			}
			if c.State != metrics.Held || !strings.Contains(c.HeldReason, "organisation org-c has no entry in Destinations_File yet") ||
				!c.LastAttempt.IsZero() || c.BatchesWaiting != 1 || c.RecordsWaiting != 4 || c.BytesWaiting != int64(4*len(`{"org_id":"org-c","id":"c1"}`)) ||
				c.Bucket != "" {
				t.Errorf("org-c: %+v", c)
			}

			got := scrape(t, in.Instance, "output:wivaudit:wivaudit.3")
			want := map[string]float64{
				"wivaudit_records_accepted_total{}":                  9,
				"wivaudit_records_rejected_total{reason=bad_org_id}": 1,
				"wivaudit_records_rejected_total{reason=malformed}":  0,
				"wivaudit_records_dead_lettered_total{}":             1,
				"wivaudit_destinations{state=ok}":                    1,
				"wivaudit_destinations{state=refused}":               1,
				"wivaudit_destinations{state=held}":                  1,
				"wivaudit_upload_duration_seconds{}":                 2,
				"wivaudit_role_assumptions_total{result=failed}":     0, // the fake S3 has no role sessions
			}
			if perOrg {
				for k, v := range map[string]float64{
					"wivaudit_records_delivered_total{org=org-a}":                        3,
					"wivaudit_uploads_total{org=org-a,outcome=delivered}":                1,
					"wivaudit_uploads_total{org=org-b,outcome=refused}":                  1,
					"wivaudit_upload_errors_total{class=external-id-or-trust,org=org-b}": 1,
					"wivaudit_batches_waiting{org=org-b}":                                1,
					"wivaudit_records_waiting{org=org-c}":                                4,
					"wivaudit_records_waiting{org=org-a}":                                0,
					"wivaudit_oldest_undelivered_age_seconds{org=org-c}":                 now.Sub(start).Seconds(),
				} {
					want[k] = v
				}
			} else {
				for k, v := range map[string]float64{
					"wivaudit_records_delivered_total{}":                       3,
					"wivaudit_uploads_total{outcome=delivered}":                1,
					"wivaudit_uploads_total{outcome=refused}":                  1,
					"wivaudit_uploads_total{outcome=retriable}":                0,
					"wivaudit_upload_errors_total{class=external-id-or-trust}": 1,
					"wivaudit_batches_waiting{}":                               2,
					"wivaudit_records_waiting{}":                               6,
					"wivaudit_oldest_undelivered_age_seconds{}":                now.Sub(start).Seconds(),
				} {
					want[k] = v
				}
			}
			for k, v := range want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
				}
			}
			perOrgSeries := []string{"wivaudit_records_delivered_total{", "wivaudit_uploads_total{", "wivaudit_upload_errors_total{",
				"wivaudit_batches_waiting{", "wivaudit_records_waiting{", "wivaudit_bytes_waiting{", "wivaudit_oldest_undelivered_age_seconds{"}
			for k := range got {
				isPerOrg := slices.ContainsFunc(perOrgSeries, func(p string) bool { return strings.HasPrefix(k, p) })
				if strings.Contains(k, "org=") != (perOrg && isPerOrg) {
					t.Errorf("Metrics_Per_Org %v, yet %s", perOrg, k)
				}
			}
			if status := in.status(in.counters(), in.queue.len()); !strings.HasSuffix(status, "; not ok: org-b (refused: external-id-or-trust), org-c (held)") {
				t.Errorf("status line: %s", status)
			}
		})
	}
}

// TestReadiness: ready once started, not while Store_Dir is gone (until a flush creates it again), nor
// over 95% of Store_Dir_Limit_Size as it stands, nor once Close started.
func TestReadiness(t *testing.T) {
	cfg := testConfig(t)
	cfg.StoreDirLimitSize = 10_000
	// Uploads fail, so that nothing frees space while the flushes below fill the store: with uploads racing
	// them, the store took minutes to reach 95 % on a loaded machine.
	in := startTest(t, cfg, "test", &fakeS3{down: "b-1"}, TestHooks{})
	if why := in.ready(); why != "" {
		t.Errorf("a started instance is not ready: %s", why)
	}
	os.RemoveAll(in.cfg.StoreDir)
	if why := in.ready(); !strings.Contains(why, "was removed") {
		t.Errorf("Store_Dir removed: %q", why)
	}
	in.Flush(event("org-a", "1"), "audit.org")
	if why := in.ready(); why != "" {
		t.Errorf("Store_Dir created again by a flush: %q", why)
	}
	in.usageLevel.Store(2) // the level logged at the last flush, over 95% then: the store holds far less now
	if why := in.ready(); why != "" {
		t.Errorf("Store_Dir almost empty: %q", why)
	}
	for i := 0; in.ready() == ""; i++ {
		if in.Flush(event("org-a", strconv.Itoa(i)), "audit.org") != OK {
			used, limit := in.store.Usage()
			t.Fatalf("a flush was refused before readiness said why: %d of %d bytes", used, limit)
		}
	}
	if why := in.ready(); !strings.Contains(why, "of 10000 bytes (Store_Dir_Limit_Size), over 95%") {
		t.Errorf("Store_Dir full: %q", why)
	}
	in.closing.Store(true)
	if why := in.ready(); why != "shutting down" {
		t.Errorf("closing: %q", why)
	}
	in.closing.Store(false)
}

func TestRecoveryLine(t *testing.T) {
	cases := []struct {
		last     metrics.State
		class    upload.Problem
		spell    time.Duration
		attempts int64
		want     string
	}{
		{metrics.Retrying, upload.NetworkError, 10*time.Minute + 400*time.Millisecond, 2, "organisation org-a delivers again after 10m0s and 2 attempts not ok (last: retrying, network)"},
		{metrics.Refused, upload.WrongExternalID, 90 * time.Second, 7, "organisation org-a delivers again after 1m30s and 7 attempts not ok (last: refused, external-id-or-trust)"},
		{metrics.Held, upload.WrongExternalID, 3 * time.Second, 3, "organisation org-a delivers again after 3s and 3 attempts not ok (last: held)"},
		{metrics.Retrying, "", 250 * time.Millisecond, 1, "organisation org-a delivers again after 250ms and 1 attempts not ok (last: retrying)"},
		{metrics.Quarantined, upload.WriteDenied, time.Hour, 40, "organisation org-a delivers again after 1h0m0s and 40 attempts not ok (last: quarantined, write-denied)"},
	}
	for _, c := range cases {
		if got := recoveryLine("org-a", c.last, c.class, c.spell, c.attempts); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

// TestRecoveryIsLoggedOnce: a destination whose uploads failed logs one line when it delivers again, saying
// for how long and over how many attempts it failed, and nothing at the deliveries after it.
func TestRecoveryIsLoggedOnce(t *testing.T) {
	fake := &fakeS3{down: "b-1"}
	in := startTest(t, testConfig(t), "test", fake, TestHooks{})
	in.Flush(event("org-a", "1"), "audit.org")
	in.sealDue()
	failed := in.clock.Now()
	in.waitPuts(t, 1)
	in.clock.Advance(in.waitRetry(t).Sub(in.clock.Now()))
	in.waitPuts(t, 2)
	due := in.waitRetry(t)
	fake.setDown("")
	in.clock.Advance(due.Sub(in.clock.Now()))
	in.waitDelivered(t, 1)
	in.Flush(event("org-a", "2"), "audit.org")
	in.sealDue()
	in.waitDelivered(t, 2)
	want := fmt.Sprintf("organisation org-a delivers again after %s and 2 attempts not ok (last: retrying, other)", rounded(due.Sub(failed)))
	if got := in.sink.count("delivers again"); got != 1 || in.sink.count(want) != 1 {
		t.Errorf("%d lines say the destination delivers again, want one that says %q:\n%s", got, want, in.sink.joined())
	}
}

// TestEverySeriesFromTheStart: before anything happened, every counter vector has a series for each value
// of its labels (0), so that rate() and increase() see the first event; with Metrics_Per_Org, each listed
// organisation has its records delivered and its uploads by outcome.
func TestEverySeriesFromTheStart(t *testing.T) {
	for _, perOrg := range []bool{false, true} {
		t.Run(fmt.Sprintf("Metrics_Per_Org %v", perOrg), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "destinations.json")
			writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
			cfg := destConfig(t, "hold", file)
			cfg.MetricsPerOrg = perOrg
			in := startTest(t, cfg, "test", &fakeS3{}, TestHooks{})
			got := scrape(t, in.Instance, "test")
			var want []string
			add := func(metric string, labels ...string) {
				for _, l := range labels {
					want = append(want, metric+"{"+l+"}")
				}
			}
			org := ""
			if perOrg {
				org = "org=org-a,"
			}
			for _, o := range outcomeNames {
				add("wivaudit_uploads_total", org+"outcome="+o)
			}
			add("wivaudit_records_delivered_total", strings.TrimSuffix(org, ","))
			if !perOrg {
				for _, p := range upload.Problems {
					add("wivaudit_upload_errors_total", "class="+string(p))
				}
			}
			for r := record.Malformed; r < record.Reasons; r++ {
				add("wivaudit_records_rejected_total", "reason="+r.String())
			}
			for _, l := range loopLabels {
				add("wivaudit_panics_total", "loop="+l)
			}
			add("wivaudit_role_assumptions_total", "result=ok", "result=failed")
			add("wivaudit_digests_total", "outcome=written", "outcome=failed")
			add("wivaudit_destinations_reloads_total", "result=ok", "result=failed")
			add("wivaudit_destinations_reload_failing", "")
			for _, k := range want {
				if v, ok := got[k]; !ok || v != 0 {
					t.Errorf("%s = %v (present %v), want 0 from the start", k, v, ok)
				}
			}
		})
	}
}

// TestMetricsAreDocumented: docs/operations.md names every metric an output serves, and every class of
// wivaudit_upload_errors_total in its row.
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "destinations.json")
	writeDestinations(t, file, map[string]string{"org-a": "bucket-a"})
	in := startTest(t, destConfig(t, "hold", file), "test", &fakeS3{}, TestHooks{})
	names := map[string]bool{}
	for series := range scrape(t, in.Instance, "test") {
		names[series[:strings.IndexByte(series, '{')]] = true
	}
	for name := range names {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("docs/operations.md has no row for %s", name)
		}
	}
	row := regexp.MustCompile("(?m)^\\| `wivaudit_upload_errors_total` \\|.*$").Find(doc)
	for _, p := range upload.Problems {
		if !strings.Contains(string(row), "`"+string(p)+"`") {
			t.Errorf("the row of wivaudit_upload_errors_total does not name the class %s: %s", p, row)
		}
	}
}
