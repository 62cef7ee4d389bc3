package test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wiv/out_wivaudit/metrics"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/hostrun"
)

// freePort is a loopback address no one listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// httpGet returns the status and body of a GET, or status 0 while nothing answers.
func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// scrapeMetrics reads /metrics as Prometheus would and returns every series' value by name{labels} (labels
// sorted; a histogram as name_count and name_sum).
func scrapeMetrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != 200 {
		return nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics: %v\n%s", err, body)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(labels)
			key := "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[name+key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name+key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[name+"_count"+key] = float64(m.Histogram.GetSampleCount())
				out[name+"_sum"+key] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

// TestMetricsAndDestinations: three organisations through the real plugin and host against moto: one
// healthy, one whose role refuses to be assumed (the destinations file has a wrong External ID), one held
// (unlisted, Unlisted_Orgs hold); plus two records with an unsafe org_id. /metrics, /destinations, /healthz
// and the status line say what happened to each, with the counts the test sent.
func TestMetricsAndDestinations(t *testing.T) {
	e := newEnv(t)
	healthy, refusing := e.addCustomer("healthy"), e.addCustomer("refusing")
	const wrong = "wrong-4e6e-9426-fccdfdae1862"
	secret(wrong)
	const orgOK, orgRefused, orgHeld = "org-healthy", "org-refused", "org-held"
	file := filepath.Join(e.dir, "destinations.json")
	writeDestinations(t, file, []destEntry{
		{Org: orgOK, Bucket: healthy.bucket, RoleARN: healthy.roleARN, ExternalID: healthy.externalID},
		{Org: orgRefused, Bucket: refusing.bucket, RoleARN: refusing.roleARN, ExternalID: wrong},
	})
	addr := freePort(t)
	base := "http://" + addr
	conf := e.config("metrics.conf", map[string]string{"Destinations_File": file, "Unlisted_Orgs": "hold",
		"Bucket": "", "Role_ARN": "", "External_ID": "", "Metrics_Listen": addr, "Metrics_Per_Org": "on",
		"Upload_Timeout": "1s", "Hold_Retry_Interval": "1s", "Status_Interval": "1s"})
	p := e.start(conf, "-", false)
	defer p.Signal(syscall.SIGKILL)

	// One chunk per kind: each organisation's stream of a kind arrives in one append, so its records make
	// one batch: 3 batches of 10 records per organisation.
	rng := rand.New(rand.NewPCG(31, 32))
	events := genEventsFor(t, 90, rng, "ev-", []string{orgOK, orgRefused, orgHeld})
	for _, ch := range chunkEvents(events, rng, 1000) {
		if err := chunks.WriteFrame(p.Stdin, ch.tag, ch.data); err != nil {
			t.Fatal(err)
		}
	}
	var bad []byte
	for i := range 2 {
		body, err := chunks.FromJSON(fmt.Appendf(nil, `{"id":"bad-%d","org_id":"../escape"}`, i))
		if err != nil {
			t.Fatal(err)
		}
		bad = append(bad, chunks.V2(chunks.EventTime(time.Now()), body)...)
	}
	if err := chunks.WriteFrame(p.Stdin, "audit.org", bad); err != nil {
		t.Fatal(err)
	}

	out := `output=wivaudit.0`
	var m map[string]float64
	waitFor(t, 60*time.Second, "the metrics to show the delivered, refused and held organisations", func() bool {
		m = scrapeMetrics(t, base)
		return m[`wivaudit_records_delivered_total{org=`+orgOK+`,`+out+`}`] == 30 &&
			m[`wivaudit_uploads_total{org=`+orgRefused+`,outcome=refused,`+out+`}`] >= 3 &&
			m[`wivaudit_records_waiting{org=`+orgHeld+`,`+out+`}`] == 30 &&
			m[`wivaudit_destinations{`+out+`,state=held}`] == 1
	})
	want := map[string]float64{
		`wivaudit_records_accepted_total{` + out + `}`:                            90,
		`wivaudit_records_rejected_total{` + out + `,reason=bad_org_id}`:          2,
		`wivaudit_records_rejected_total{` + out + `,reason=malformed}`:           0,
		`wivaudit_records_dead_lettered_total{` + out + `}`:                       2,
		`wivaudit_records_discarded_total{` + out + `}`:                           0,
		`wivaudit_uploads_total{org=` + orgOK + `,outcome=delivered,` + out + `}`: 3,
		`wivaudit_records_delivered_total{org=` + orgOK + `,` + out + `}`:         30,
		`wivaudit_batches_waiting{org=` + orgOK + `,` + out + `}`:                 0,
		`wivaudit_records_waiting{org=` + orgOK + `,` + out + `}`:                 0,
		`wivaudit_oldest_undelivered_age_seconds{org=` + orgOK + `,` + out + `}`:  0,
		`wivaudit_batches_waiting{org=` + orgRefused + `,` + out + `}`:            3,
		`wivaudit_records_waiting{org=` + orgRefused + `,` + out + `}`:            30,
		`wivaudit_batches_waiting{org=` + orgHeld + `,` + out + `}`:               3,
		`wivaudit_records_waiting{org=` + orgHeld + `,` + out + `}`:               30,
		`wivaudit_role_assumptions_total{` + out + `,result=ok}`:                  1, // the healthy role, once for its three uploads
		`wivaudit_destinations{` + out + `,state=ok}`:                             1,
		`wivaudit_destinations{` + out + `,state=refused}`:                        1,
		`wivaudit_destinations{` + out + `,state=retrying}`:                       0,
		`wivaudit_batches_quarantined_total{` + out + `}`:                         0,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present: %v), want %v", k, got, ok, v)
		}
	}
	refusedAttempts := m[`wivaudit_uploads_total{org=`+orgRefused+`,outcome=refused,`+out+`}`]
	if got := m[`wivaudit_upload_errors_total{class=external-id-or-trust,org=`+orgRefused+`,`+out+`}`]; got != refusedAttempts {
		t.Errorf("%v external-id-or-trust errors for %v refused attempts", got, refusedAttempts)
	}
	// Concurrent uploads of one role share its AssumeRole call: at least one was refused.
	if got := m[`wivaudit_role_assumptions_total{`+out+`,result=failed}`]; got < 1 {
		t.Errorf("%v failed AssumeRole calls for %v refused attempts", got, refusedAttempts)
	}
	if got := m[`wivaudit_upload_duration_seconds_count{`+out+`}`]; got < 3+refusedAttempts {
		t.Errorf("%v upload latencies observed, want at least the %v attempts counted before", got, 3+refusedAttempts)
	}
	for k, v := range m {
		if strings.Contains(k, "org="+orgHeld) && strings.HasPrefix(k, "wivaudit_uploads_total") && v != 0 {
			t.Errorf("the held organisation was uploaded: %s = %v", k, v)
		}
	}
	if v, ok := m[`wivaudit_uploads_total{org=`+orgHeld+`,outcome=delivered,`+out+`}`]; !ok || v != 0 {
		t.Errorf("the held organisation's uploads: %v (present %v), want a series at 0", v, ok)
	}

	code, body := httpGet(t, base+"/destinations")
	var got struct{ Destinations []metrics.Destination }
	if err := json.Unmarshal(body, &got); code != 200 || err != nil {
		t.Fatalf("/destinations: %d %v\n%s", code, err, body)
	}
	for _, s := range []string{wrong, healthy.externalID, refusing.externalID, e.p.SecretKey} {
		if strings.Contains(string(body), s) {
			t.Errorf("/destinations shows a secret")
		}
	}
	byOrg := map[string]metrics.Destination{}
	for _, d := range got.Destinations {
		byOrg[d.OrgID] = d
	}
	if len(byOrg) != 3 {
		t.Errorf("/destinations lists %d organisations, want 3:\n%s", len(byOrg), body)
	}
	ok, ref, held := byOrg[orgOK], byOrg[orgRefused], byOrg[orgHeld]
	if ok.Output != "wivaudit.0" || ok.State != metrics.OK || ok.Bucket != healthy.bucket || ok.LastSuccess.IsZero() ||
		ok.RecordsDelivered != 30 || ok.BatchesWaiting != 0 || ok.LastError != "" {
		t.Errorf("%s: %+v", orgOK, ok)
	}
	if ref.State != metrics.Refused || ref.ErrorClass != "external-id-or-trust" || ref.GuideStep != "3.2.2" ||
		ref.LastAttempt.IsZero() || !ref.LastSuccess.IsZero() || !strings.Contains(ref.LastError, "AccessDenied") ||
		ref.BatchesWaiting != 3 || ref.RecordsWaiting != 30 || ref.OldestUndelivered.IsZero() || ref.RoleARN != refusing.roleARN {
		t.Errorf("%s: %+v", orgRefused, ref)
	}
	if held.State != metrics.Held || !strings.Contains(held.HeldReason, "no entry in Destinations_File yet") ||
		!held.LastAttempt.IsZero() || held.BatchesWaiting != 3 || held.RecordsWaiting != 30 || held.BytesWaiting == 0 ||
		held.OldestUndelivered.IsZero() {
		t.Errorf("%s: %+v", orgHeld, held)
	}
	if code, body := httpGet(t, base+"/healthz"); code != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if delivered := e.bucketRecords(healthy.bucket); len(delivered) != 30 {
		t.Errorf("%d records in the healthy organisation's bucket, want 30", len(delivered))
	}
	if n := len(e.bucketRecords(refusing.bucket)); n != 0 {
		t.Errorf("%d records in the bucket of the refusing role", n)
	}

	if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool {
		return strings.Contains(r.Stderr, "; not ok: "+orgHeld+" (held), "+orgRefused+" (refused: external-id-or-trust)")
	}); err != nil {
		t.Errorf("no status line names the organisations that are not ok: %v\n%s", err, tail(p.Snapshot().Stderr, 10))
	}
	p.Stdin.Close()
	p.Signal(syscall.SIGTERM)
	if r := p.Wait(time.Minute); r.ExitCode != 0 {
		t.Fatalf("host exit %d:\n%s", r.ExitCode, tail(r.Stderr, 20))
	}
	counted := m[`wivaudit_role_assumptions_total{`+out+`,result=ok}`] + m[`wivaudit_role_assumptions_total{`+out+`,result=failed}`]
	if calls := e.onlyAllowedCalls()["AssumeRole"]; float64(calls) < counted {
		t.Errorf("the server saw %d AssumeRole calls, the metrics counted %v", calls, counted)
	}
}

// TestMetricsListenerShared: two [OUTPUT]s with the same Metrics_Listen share one listener, each with its own
// series, until the process stops.
func TestMetricsListenerShared(t *testing.T) {
	e := newEnv(t)
	addr := freePort(t)
	conf := e.configN("shared-metrics.conf",
		map[string]string{"Store_Dir": filepath.Join(e.dir, "store-a"), "Metrics_Listen": addr},
		map[string]string{"Store_Dir": filepath.Join(e.dir, "store-b"), "Metrics_Listen": addr, "Key_Prefix": "copy/"})
	p := e.start(conf, "-", false)
	defer p.Signal(syscall.SIGKILL)
	_, cs := smallInput(t, 60)
	for _, ch := range cs {
		if err := chunks.WriteFrame(p.Stdin, ch.tag, ch.data); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "both outputs' counts on the shared listener", func() bool {
		m := scrapeMetrics(t, "http://"+addr)
		return m[`wivaudit_records_accepted_total{output=wivaudit.0}`] == 60 && m[`wivaudit_records_accepted_total{output=wivaudit.1}`] == 60
	})
	if code, body := httpGet(t, "http://"+addr+"/healthz"); code != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	p.Stdin.Close()
	p.Signal(syscall.SIGTERM)
	if r := p.Wait(time.Minute); r.ExitCode != 0 {
		t.Fatalf("host exit %d:\n%s", r.ExitCode, tail(r.Stderr, 20))
	}
}

// TestMetricsListenPortTaken: a Metrics_Listen port another program holds fails Init with a line that names
// the setting.
func TestMetricsListenPortTaken(t *testing.T) {
	e := &env{t: t, dir: t.TempDir()}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	p, err := host.Start(e.bareConfig(map[string]string{"Org_ID": "org-a", "Bucket": "b-ok", "Store_Dir": e.dir + "/store",
		"Endpoint": "http://127.0.0.1:9", "Allow_Plain_HTTP": "on", "Metrics_Listen": addr}), "", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Wait(time.Minute)
	if r.ExitCode == 0 || r.Count("init-failed") != 1 {
		t.Fatalf("Init did not fail: exit %d, %v", r.ExitCode, r.Stdout)
	}
	if want := "[output:wivaudit:wivaudit.0] cannot start: Metrics_Listen " + addr + ": listen tcp " + addr + ": bind: address already in use; choose a port"; !strings.Contains(r.Stderr, want) {
		t.Errorf("no line says %q:\n%s", want, r.Stderr)
	}
}

// destinationsState reads /destinations: the output's destinations file and its organisations by ID.
func destinationsState(t *testing.T, base string) (metrics.DestinationsFile, map[string]metrics.Destination) {
	t.Helper()
	code, body := httpGet(t, base+"/destinations")
	var got struct {
		Files        []metrics.DestinationsFile `json:"destinations_files"`
		Destinations []metrics.Destination
	}
	if err := json.Unmarshal(body, &got); code != 200 || err != nil || len(got.Files) != 1 {
		t.Fatalf("/destinations: %d %v\n%s", code, err, body)
	}
	byOrg := map[string]metrics.Destination{}
	for _, d := range got.Destinations {
		byOrg[d.OrgID] = d
	}
	return got.Files[0], byOrg
}

// TestDestinationsFileFailureAndRecoveryAreVisible: through the real plugin and host against moto, an
// organisation whose entry has a wrong External ID is refused; then the destinations file is broken:
// /destinations names the failure with its line and column and since when, /metrics has it in
// wivaudit_destinations_reload_failing and wivaudit_destinations_reloads_total, /healthz says it and stays
// 200. The file is then fixed (with the right External ID): every endpoint shows the recovery, the log says
// how long the file could not be used, and the organisation's one recovery line says for how long and over
// how many attempts it was not ok. Every counter vector had its series from the first scrape.
func TestDestinationsFileFailureAndRecoveryAreVisible(t *testing.T) {
	e := newEnv(t)
	cust := e.addCustomer("recovering")
	const wrong = "wrong-7c1d-4b7e-9a35-0d6f1e2a9b4c"
	secret(wrong)
	const org = "org-recovering"
	file := filepath.Join(e.dir, "destinations.json")
	writeDestinations(t, file, []destEntry{{Org: org, Bucket: cust.bucket, RoleARN: cust.roleARN, ExternalID: wrong}})
	addr := freePort(t)
	base := "http://" + addr
	conf := e.config("visible.conf", map[string]string{"Destinations_File": file, "Unlisted_Orgs": "hold",
		"Bucket": "", "Role_ARN": "", "External_ID": "", "Metrics_Listen": addr,
		"Destinations_Refresh_Interval": "1s", "Upload_Timeout": "1s", "Hold_Retry_Interval": "1s"})
	p := e.start(conf, "-", false)
	defer p.Signal(syscall.SIGKILL)
	const out = `output=wivaudit.0`

	var m map[string]float64
	waitFor(t, 30*time.Second, "the first scrape", func() bool { m = scrapeMetrics(t, base); return m != nil })
	for _, series := range []string{
		`wivaudit_upload_errors_total{class=external-id-or-trust,` + out + `}`, `wivaudit_upload_errors_total{class=network,` + out + `}`,
		`wivaudit_digests_total{outcome=failed,` + out + `}`, `wivaudit_digests_total{outcome=written,` + out + `}`,
		`wivaudit_uploads_total{outcome=refused,` + out + `}`, `wivaudit_destinations_reloads_total{` + out + `,result=failed}`,
		`wivaudit_destinations_reloads_total{` + out + `,result=ok}`, `wivaudit_destinations_reload_failing{` + out + `}`,
	} {
		if v, ok := m[series]; !ok || v != 0 {
			t.Errorf("first scrape: %s = %v (present %v), want 0", series, v, ok)
		}
	}

	rng := rand.New(rand.NewPCG(41, 42))
	events := genEventsFor(t, 30, rng, "ev-", []string{org})
	for _, ch := range chunkEvents(events, rng, 1000) {
		if err := chunks.WriteFrame(p.Stdin, ch.tag, ch.data); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "the organisation refused", func() bool {
		_, byOrg := destinationsState(t, base)
		return byOrg[org].State == metrics.Refused
	})
	started, _ := destinationsState(t, base)
	if started.Path != file || started.Failing || started.Organisations != 1 || started.LoadedAt.IsZero() || started.LastError != "" {
		t.Errorf("the file as started: %+v", started)
	}

	broken := time.Now()
	if err := os.WriteFile(file, []byte("[\n  {\"org_id\": \""+org+"\",\n   \"bucket_name\": oops}\n]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var failing metrics.DestinationsFile
	waitFor(t, 30*time.Second, "/destinations to show the file failing", func() bool {
		failing, _ = destinationsState(t, base)
		return failing.Failing
	})
	if failing.ErrorLine != 3 || failing.ErrorColumn != 19 || !strings.Contains(failing.LastError, "line 3, column 19: invalid character 'o'") ||
		failing.FailingSince.Before(broken.Add(-time.Second)) || !failing.LastErrorAt.Equal(failing.FailingSince) ||
		!failing.LoadedAt.Equal(started.LoadedAt) || failing.Organisations != 1 {
		t.Errorf("the file failing: %+v", failing)
	}
	m = scrapeMetrics(t, base)
	if m[`wivaudit_destinations_reload_failing{`+out+`}`] != 1 || m[`wivaudit_destinations_reloads_total{`+out+`,result=failed}`] != 1 ||
		m[`wivaudit_destinations_reloads_total{`+out+`,result=ok}`] != 0 {
		t.Errorf("metrics with the file failing: failing %v, reloads failed %v, ok %v", m[`wivaudit_destinations_reload_failing{`+out+`}`],
			m[`wivaudit_destinations_reloads_total{`+out+`,result=failed}`], m[`wivaudit_destinations_reloads_total{`+out+`,result=ok}`])
	}
	code, body := httpGet(t, base+"/healthz")
	if want := "ok\nwivaudit.0: Destinations_File " + file + " failing since " + failing.FailingSince.Format(time.RFC3339) +
		", delivering with the version loaded at " + started.LoadedAt.Format(time.RFC3339) + ": line 3, column 19: invalid character 'o'"; code != 200 ||
		!strings.HasPrefix(string(body), want) {
		t.Errorf("/healthz with the file failing: %d %q, want 200 %q...", code, body, want)
	}

	writeDestinations(t, file, []destEntry{{Org: org, Bucket: cust.bucket, RoleARN: cust.roleARN, ExternalID: cust.externalID}})
	var fixed metrics.DestinationsFile
	var byOrg map[string]metrics.Destination
	waitFor(t, time.Minute, "the organisation delivered after the fix", func() bool {
		fixed, byOrg = destinationsState(t, base)
		return byOrg[org].RecordsDelivered == 30
	})
	if fixed.Failing || !fixed.FailingSince.IsZero() || !fixed.LoadedAt.After(started.LoadedAt) || fixed.LastError != failing.LastError ||
		fixed.ErrorLine != 3 || byOrg[org].State != metrics.OK {
		t.Errorf("after the fix: file %+v, organisation %+v", fixed, byOrg[org])
	}
	m = scrapeMetrics(t, base)
	if m[`wivaudit_destinations_reload_failing{`+out+`}`] != 0 || m[`wivaudit_destinations_reloads_total{`+out+`,result=failed}`] != 1 ||
		m[`wivaudit_destinations_reloads_total{`+out+`,result=ok}`] != 1 || m[`wivaudit_upload_errors_total{class=external-id-or-trust,`+out+`}`] < 1 {
		t.Errorf("metrics after the fix: failing %v, reloads failed %v, ok %v", m[`wivaudit_destinations_reload_failing{`+out+`}`],
			m[`wivaudit_destinations_reloads_total{`+out+`,result=failed}`], m[`wivaudit_destinations_reloads_total{`+out+`,result=ok}`])
	}
	if code, body := httpGet(t, base+"/healthz"); code != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz after the fix: %d %q", code, body)
	}
	reloaded := regexp.MustCompile(`Destinations_File reloaded: 1 organisations \(0 added, 1 changed, 0 removed\); the file could not be used for \d+(\.\d+)?m?s`)
	recovered := regexp.MustCompile(`organisation ` + org + ` delivers again after \d+(\.\d+)?m?s and (\d+) attempts not ok \(last: refused, external-id-or-trust\)`)
	if err := p.WaitFor(30*time.Second, func(r *hostrun.Result) bool {
		return reloaded.MatchString(r.Stderr) && recovered.MatchString(r.Stderr)
	}); err != nil {
		t.Errorf("no lines say the file and the organisation recovered: %v\n%s", err, tail(p.Snapshot().Stderr, 20))
	}
	p.Stdin.Close()
	p.Signal(syscall.SIGTERM)
	r := p.Wait(time.Minute)
	if r.ExitCode != 0 {
		t.Fatalf("host exit %d:\n%s", r.ExitCode, tail(r.Stderr, 20))
	}
	if n := strings.Count(r.Stderr, "delivers again"); n != 1 {
		t.Errorf("%d lines say the organisation delivers again, want one", n)
	}
	if attempts := recovered.FindStringSubmatch(r.Stderr); attempts != nil {
		t.Logf("recovery: %s", attempts[0])
	}
	if n := len(e.bucketRecords(cust.bucket)); n != 30 {
		t.Errorf("%d records in the customer's bucket, want 30", n)
	}
}
