// Package faultproxy stands between the plugin and the S3/STS server and misbehaves on demand: 500s, 503
// SlowDown, connections reset in the middle of a request body or after the server already stored it, and
// stalls past the client's timeout. It can also shorten the lifetime of assumed-role sessions and refuse
// S3 requests signed with lapsed keys (ExpiredToken), which moto does not enforce. And it can alter one byte of a
// PutObject body on its way to the server, as a faulty network path or middlebox would.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"time"
)

// Fault is one way to misbehave.
type Fault string

// The faults the proxy injects.
const (
	Error500     Fault = "500"
	SlowDown503  Fault = "503"
	ResetMidBody Fault = "reset-mid-body"
	ResetAfter   Fault = "reset-after-forward" // the server got the request; the client never hears back
	Stall        Fault = "stall"
)

// AllFaults is every fault, for chaos.
var AllFaults = []Fault{Error500, SlowDown503, ResetMidBody, ResetAfter, Stall}

// Proxy is a running fault-injecting reverse proxy.
type Proxy struct {
	URL   string
	rp    *httputil.ReverseProxy
	srv   *http.Server
	stall time.Duration

	mu       sync.Mutex
	faulty   map[string]bool // "s3", "sts": whether that service misbehaves
	seen     map[string]int  // requests per service while faulty
	injected map[string]int  // faults injected per service, so each service meets every kind in turn
	lifetime time.Duration
	expiries map[string]time.Time
	counts   map[string]int
	changed  chan struct{}
	corrupt  int // PutObject bodies still to alter
}

// Start proxies to target on a free loopback port. Stalls last stall.
func Start(target string, stall time.Duration) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "http://" + l.Addr().String(), rp: httputil.NewSingleHostReverseProxy(u), stall: stall,
		faulty: map[string]bool{}, seen: map[string]int{}, injected: map[string]int{}, expiries: map[string]time.Time{}, counts: map[string]int{}, changed: make(chan struct{}, 1)}
	p.rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodPut {
			p.count(fmt.Sprintf("s3:PUT:%d", resp.StatusCode))
		}
		return p.rewriteSession(resp)
	}
	p.srv = &http.Server{Handler: p}
	go p.srv.Serve(l)
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }

// SetFaults switches faults on or off for service ("s3" or "sts"). While on, two requests out of three get a
// fault, taking every kind in turn, so that each kind shows up within a few requests.
func (p *Proxy) SetFaults(service string, on bool) {
	p.mu.Lock()
	p.faulty[service] = on
	p.mu.Unlock()
}

// SetSessionLifetime makes assumed-role sessions expire after d (0: as the server says) and enforces it.
func (p *Proxy) SetSessionLifetime(d time.Duration) {
	p.mu.Lock()
	p.lifetime = d
	p.mu.Unlock()
}

// CorruptPuts alters one byte in the middle of each of the next n PutObject bodies that reach the proxy, leaving
// the headers as the client signed them.
func (p *Proxy) CorruptPuts(n int) {
	p.mu.Lock()
	p.corrupt = n
	p.mu.Unlock()
}

// ExpireAll makes every session issued so far lapse now, as a revoked or clock-skewed session would.
func (p *Proxy) ExpireAll() {
	p.mu.Lock()
	for k := range p.expiries {
		p.expiries[k] = time.Now().Add(-time.Second)
	}
	p.mu.Unlock()
}

// Counts returns how many of each event happened: "<service>:<fault>", "expired", "sts:AssumeRole" (requests),
// "sts:issued:<lifetime>" (sessions handed out, counted once their expiry is recorded), "s3:PUT", "s3:PUT:<status>"
// (the server's answers), "s3:corrupted" (bodies altered).
func (p *Proxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// WaitFor waits until cond holds on the counts or the timeout passes.
func (p *Proxy) WaitFor(timeout time.Duration, cond func(map[string]int) bool) error {
	deadline := time.After(timeout)
	for !cond(p.Counts()) {
		select {
		case <-p.changed:
		case <-deadline:
			return fmt.Errorf("timed out; counts %v", p.Counts())
		}
	}
	return nil
}

func (p *Proxy) count(k string) {
	p.mu.Lock()
	p.counts[k]++
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

var accessKeyPattern = regexp.MustCompile(`Credential=([A-Z0-9]+)/`)

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// STS's query API posts forms to "/"; S3 requests are path-style /bucket/key.
	service := "s3"
	if r.Method == http.MethodPost && r.URL.Path == "/" {
		service = "sts"
		p.count("sts:AssumeRole")
	} else {
		p.count("s3:" + r.Method)
	}
	if service == "s3" {
		if m := accessKeyPattern.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
			p.mu.Lock()
			exp, known := p.expiries[m[1]]
			p.mu.Unlock()
			if known && time.Now().After(exp) {
				p.count("expired")
				xmlError(w, 400, "ExpiredToken", "The provided token has expired.")
				return
			}
		}
	}
	p.mu.Lock()
	alter := service == "s3" && r.Method == http.MethodPut && r.ContentLength > 0 && p.corrupt > 0
	if alter {
		p.corrupt--
	}
	var f Fault
	if p.faulty[service] {
		if p.seen[service]++; p.seen[service]%3 != 0 {
			f = AllFaults[p.injected[service]%len(AllFaults)]
			p.injected[service]++
		}
	}
	p.mu.Unlock()
	if f != "" {
		p.count(service + ":" + string(f))
		switch f {
		case Error500:
			xmlError(w, 500, "InternalError", "We encountered an internal error. Please try again.")
			return
		case SlowDown503:
			xmlError(w, 503, "SlowDown", "Please reduce your request rate.")
			return
		case ResetMidBody:
			io.CopyN(io.Discard, r.Body, r.ContentLength/2)
			reset(w)
			return
		case Stall:
			select {
			case <-r.Context().Done():
			case <-time.After(p.stall):
			}
			reset(w)
			return
		case ResetAfter:
			p.rp.ServeHTTP(discard{http.Header{}}, r)
			reset(w)
			return
		}
	}
	if alter {
		p.count("s3:corrupted")
		r.Body = &flipByte{r: r.Body, at: r.ContentLength / 2}
	}
	p.rp.ServeHTTP(w, r)
}

// flipByte passes a body through with the byte at offset at inverted.
type flipByte struct {
	r   io.ReadCloser
	at  int64
	off int64
}

func (f *flipByte) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if i := f.at - f.off; i >= 0 && i < int64(n) {
		b[i] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

func (f *flipByte) Close() error { return f.r.Close() }

var (
	expirationPattern = regexp.MustCompile(`<Expiration>[^<]*</Expiration>`)
	keyIDPattern      = regexp.MustCompile(`<AccessKeyId>([^<]*)</AccessKeyId>`)
)

// rewriteSession shortens the Expiration of AssumeRole answers and remembers when each key lapses.
func (p *Proxy) rewriteSession(resp *http.Response) error {
	p.mu.Lock()
	lifetime := p.lifetime
	p.mu.Unlock()
	if lifetime == 0 || resp.Request.Method != http.MethodPost || resp.Request.URL.Path != "/" || resp.StatusCode != 200 {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if m := keyIDPattern.FindSubmatch(body); m != nil {
		exp := time.Now().Add(lifetime)
		p.mu.Lock()
		p.expiries[string(m[1])] = exp
		p.mu.Unlock()
		body = expirationPattern.ReplaceAll(body, []byte("<Expiration>"+exp.UTC().Format(time.RFC3339)+"</Expiration>"))
		p.count("sts:issued:" + lifetime.String())
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
	return nil
}

func xmlError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>fault</RequestId></Error>`, code, msg)
}

// reset closes the client's connection abruptly (RST), without an answer.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("faultproxy: connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}
