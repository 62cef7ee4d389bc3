// Package metrics serves an output's Prometheus metrics and health on Metrics_Listen: GET /metrics,
// /destinations and /healthz. The outputs of one process that name the same address share one listener, the
// first to start opens it and the last to stop closes it; each output's series carry its name in the output
// label.
package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Output is what one output gives its listener.
type Output struct {
	Name      string
	Collector prometheus.Collector
	// Destinations returns the output's organisations, each with its state, in any order.
	Destinations func() []Destination
	// Ready returns "" when the output takes records, else why it does not.
	Ready func() string
	// File returns the output's Destinations_File; nil for an output without one.
	File func() *DestinationsFile
}

// Member is an output on a listener.
type Member struct {
	l   *listener
	out Output
}

type listener struct {
	addr    string
	srv     *http.Server
	reg     *prometheus.Registry
	mu      sync.Mutex
	members []*Member
}

// listeners are the process's listeners by address, as Metrics_Listen spells it.
var listeners = struct {
	sync.Mutex
	byAddr map[string]*listener
}{byAddr: map[string]*listener{}}

// Join puts out on the listener of addr, which it opens if no output of the process did.
func Join(addr string, out Output) (*Member, error) {
	listeners.Lock()
	defer listeners.Unlock()
	l := listeners.byAddr[addr]
	if l == nil {
		var err error
		if l, err = listen(addr); err != nil {
			return nil, err
		}
		listeners.byAddr[addr] = l
	}
	m := &Member{l: l, out: out}
	if err := l.reg.Register(out.Collector); err != nil {
		l.leave(m)
		return nil, fmt.Errorf("Metrics_Listen %s: the metrics of %s: %w", addr, out.Name, err)
	}
	l.mu.Lock()
	l.members = append(l.members, m)
	l.mu.Unlock()
	return m, nil
}

// Leave takes the output off its listener, and closes the listener when it was the last.
func (m *Member) Leave() {
	listeners.Lock()
	defer listeners.Unlock()
	m.l.reg.Unregister(m.out.Collector)
	m.l.leave(m)
}

// leave forgets m and closes the listener when no member is left. The caller holds listeners' lock.
func (l *listener) leave(m *Member) {
	l.mu.Lock()
	l.members = slices.DeleteFunc(l.members, func(x *Member) bool { return x == m })
	empty := len(l.members) == 0
	l.mu.Unlock()
	if empty {
		l.srv.Close()
		delete(listeners.byAddr, l.addr)
	}
}

func listen(addr string) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("Metrics_Listen %s: %w; %s", addr, err, listenAdvice(err))
	}
	l := &listener{addr: addr, reg: prometheus.NewRegistry()}
	l.reg.MustRegister(collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(l.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /destinations", l.destinations)
	mux.HandleFunc("GET /healthz", l.healthz)
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go l.srv.Serve(ln)
	return l, nil
}

// listenAdvice says what to change when Metrics_Listen cannot be listened on.
func listenAdvice(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return "choose a port no other program uses (outputs of this process share a listener only when they spell Metrics_Listen the same way)"
	case errors.Is(err, syscall.EACCES):
		return "ports below 1024 need privileges this process lacks: choose a higher one"
	}
	return "give an address of this machine: 127.0.0.1:PORT (this machine only), :PORT (every interface) or one of its own IP addresses"
}

func (l *listener) outputs() []Output {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Output, len(l.members))
	for i, m := range l.members {
		out[i] = m.out
	}
	return out
}

// healthz answers 200 when every output on the listener takes records, else 503 with each one's reason. A
// destinations file that cannot be used is said in a line of its own and changes neither: its output
// delivers with the version it loaded last.
func (l *listener) healthz(w http.ResponseWriter, _ *http.Request) {
	var problems, notes []string
	for _, o := range l.outputs() {
		if why := o.Ready(); why != "" {
			problems = append(problems, o.Name+": "+why)
		}
		if f := fileOf(o); f != nil && f.Failing {
			notes = append(notes, fmt.Sprintf("%s: Destinations_File %s failing since %s, delivering with the version loaded at %s: %s",
				o.Name, f.Path, f.FailingSince.Format(time.RFC3339), f.LoadedAt.Format(time.RFC3339), f.LastError))
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		problems = []string{"ok"}
	}
	fmt.Fprintln(w, strings.Join(append(problems, notes...), "\n"))
}

// fileOf returns o's destinations file, named by o; nil without one.
func fileOf(o Output) *DestinationsFile {
	if o.File == nil {
		return nil
	}
	f := o.File()
	if f != nil {
		f.Output = o.Name
	}
	return f
}

// destinations answers the organisations of every output on the listener, by output and organisation;
// ?org= keeps one organisation (in any case), ?state= the states it lists (comma-separated).
func (l *listener) destinations(w http.ResponseWriter, r *http.Request) {
	org := strings.ToLower(r.URL.Query().Get("org"))
	var states []string
	if s := r.URL.Query().Get("state"); s != "" {
		states = strings.Split(s, ",")
	}
	list := []Destination{}
	var files []DestinationsFile
	for _, o := range l.outputs() {
		if f := fileOf(o); f != nil {
			files = append(files, *f)
		}
		for _, d := range o.Destinations() {
			if (org == "" || strings.ToLower(d.OrgID) == org) && (states == nil || slices.Contains(states, string(d.State))) {
				d.Output = o.Name
				list = append(list, d)
			}
		}
	}
	slices.SortFunc(list, func(a, b Destination) int {
		return strings.Compare(a.Output+"\x00"+a.OrgID, b.Output+"\x00"+b.OrgID)
	})
	slices.SortFunc(files, func(a, b DestinationsFile) int { return strings.Compare(a.Output, b.Output) })
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(struct {
		Files        []DestinationsFile `json:"destinations_files,omitempty"`
		Destinations []Destination      `json:"destinations"`
	}{files, list})
}
