package metrics

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// freeAddr is a loopback address with a port no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// output is an output with one counter, one organisation and the readiness given.
func output(name, org string, value float64, ready string) Output {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_total", Help: "A test counter.", ConstLabels: prometheus.Labels{"output": name}})
	c.Add(value)
	return Output{Name: name, Collector: c, Ready: func() string { return ready },
		Destinations: func() []Destination { return []Destination{{OrgID: org, State: OK}} }}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestSharedListener: two outputs on one address share its listener, each with its own series and
// organisations; a port taken by something else fails clearly; the listener lives until the last output
// leaves.
func TestSharedListener(t *testing.T) {
	addr := freeAddr(t)
	a, err := Join(addr, output("wivaudit.0", "org-a", 3, ""))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Join(addr, output("wivaudit.1", "org-b", 5, ""))
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr
	if code, body := get(t, url+"/metrics"); code != 200 || !strings.Contains(body, `test_total{output="wivaudit.0"} 3`) ||
		!strings.Contains(body, `test_total{output="wivaudit.1"} 5`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	_, body := get(t, url+"/destinations")
	var got struct{ Destinations []Destination }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Destinations) != 2 || got.Destinations[0].Output != "wivaudit.0" || got.Destinations[0].OrgID != "org-a" ||
		got.Destinations[1].Output != "wivaudit.1" || got.Destinations[1].OrgID != "org-b" {
		t.Errorf("/destinations: %s", body)
	}
	if _, body := get(t, url+"/destinations?org=ORG-B"); !strings.Contains(body, `"org_id": "org-b"`) || strings.Contains(body, "org-a") {
		t.Errorf("/destinations?org=ORG-B: %s", body)
	}
	if _, body := get(t, url+"/destinations?state=refused,held"); strings.TrimSpace(body) != "{\n  \"destinations\": []\n}" {
		t.Errorf("/destinations?state=refused,held: %s", body)
	}
	if code, body := get(t, url+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}

	c, err := Join(addr, output("wivaudit.2", "org-c", 1, ""))
	if err != nil {
		t.Fatalf("a third output on the address was refused: %v", err)
	}
	if _, err := Join("localhost:"+strings.Split(addr, ":")[1], output("wivaudit.3", "org-d", 1, "")); err == nil ||
		!strings.Contains(err.Error(), "Metrics_Listen localhost:") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a port already taken: %v", err)
	}

	a.Leave()
	if _, body := get(t, url+"/metrics"); strings.Contains(body, `output="wivaudit.0"`) {
		t.Errorf("the series of an output that left are still there:\n%s", body)
	}
	b.Leave()
	c.Leave()
	if _, err := http.Get(url + "/metrics"); err == nil {
		t.Error("the listener still answers after its last output left")
	}
	again, err := Join(addr, output("wivaudit.0", "org-a", 1, ""))
	if err != nil {
		t.Fatalf("the address cannot be taken again (a hot reload): %v", err)
	}
	again.Leave()
}

// TestHealthz: 503 with each output's reason when one does not take records.
// TestListenErrorsSayWhatToChange: a port in use asks for another port; an address that is not this
// machine's asks for one that is.
func TestListenErrorsSayWhatToChange(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for addr, want := range map[string]string{
		taken.Addr().String(): "address already in use; choose a port no other program uses",
		"192.0.2.1:2021":      "give an address of this machine: 127.0.0.1:PORT",
	} {
		if _, err := Join(addr, output("wivaudit.0", "org-a", 1, "")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Join(%s): %v, want %q", addr, err, want)
		}
	}
}

func TestHealthz(t *testing.T) {
	addr := freeAddr(t)
	a, err := Join(addr, output("wivaudit.0", "org-a", 1, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Leave()
	b, err := Join(addr, output("wivaudit.1", "org-b", 1, "shutting down"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Leave()
	if code, body := get(t, "http://"+addr+"/healthz"); code != 503 || body != "wivaudit.1: shutting down\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
}

// TestDestinationsFileFailing: a destinations file that cannot be used is in /destinations, by output, and
// in a line of /healthz of its own that leaves its status alone: 200 while the outputs take records.
func TestDestinationsFileFailing(t *testing.T) {
	addr := freeAddr(t)
	loaded, since := time.Date(2026, 1, 28, 14, 0, 0, 0, time.UTC), time.Date(2026, 1, 28, 14, 5, 0, 0, time.UTC)
	failing := output("wivaudit.1", "org-b", 1, "")
	failing.File = func() *DestinationsFile {
		return &DestinationsFile{Path: "/etc/d.json", Failing: true, LoadedAt: loaded, Organisations: 2, FailingSince: since,
			LastError: "line 3, column 7: invalid character 'x'", LastErrorAt: since, ErrorLine: 3, ErrorColumn: 7}
	}
	a, err := Join(addr, output("wivaudit.0", "org-a", 1, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Leave()
	b, err := Join(addr, failing)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Leave()
	url := "http://" + addr
	note := "wivaudit.1: Destinations_File /etc/d.json failing since 2026-01-28T14:05:00Z, delivering with the version loaded at 2026-01-28T14:00:00Z: line 3, column 7: invalid character 'x'\n"
	if code, body := get(t, url+"/healthz"); code != 200 || body != "ok\n"+note {
		t.Errorf("/healthz: %d %q", code, body)
	}
	_, body := get(t, url+"/destinations?org=none")
	var got struct {
		Files        []DestinationsFile `json:"destinations_files"`
		Destinations []Destination
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := failing.File()
	want.Output = "wivaudit.1"
	if len(got.Files) != 1 || got.Files[0] != *want || len(got.Destinations) != 0 {
		t.Errorf("/destinations?org=none: %s", body)
	}

	c, err := Join(addr, output("wivaudit.2", "org-c", 1, "shutting down"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Leave()
	if code, body := get(t, url+"/healthz"); code != 503 || body != "wivaudit.2: shutting down\n"+note {
		t.Errorf("/healthz with an output not ready: %d %q", code, body)
	}
}
