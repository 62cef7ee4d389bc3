package backend

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
)

// atomicFront stands in front of moto and makes conditional writes atomic, as S3 documents them: of two
// concurrent PutObjects with If-None-Match: * on one key, one succeeds and the other gets 412 (or 409). moto
// checks whether the key exists and then stores the object in two steps, on a threaded server, so under load
// both can pass the check and the second overwrites the first (seen with two replicas on a loaded machine).
// The front holds a lock per key for each such request; everything else passes through untouched, the Host
// header included, so signatures still verify, but for the requests resigner signs again for moto.
type atomicFront struct {
	URL    string
	srv    *http.Server
	rp     *httputil.ReverseProxy
	signer resigner

	mu   sync.Mutex
	keys map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

func startAtomicFront(target string) (*atomicFront, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &atomicFront{URL: "http://" + l.Addr().String(), rp: httputil.NewSingleHostReverseProxy(u), keys: map[string]*keyLock{}}
	f.srv = &http.Server{Handler: f}
	go f.srv.Serve(l)
	return f, nil
}

func (f *atomicFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.signer.resign(r)
	if r.Method == http.MethodPut && r.Header.Get("If-None-Match") != "" {
		unlock := f.lock(r.URL.Path)
		defer unlock()
	}
	f.rp.ServeHTTP(w, r)
}

// lock takes the lock of one key (bucket and key: the path-style URL path), created on first use and dropped
// when no request holds or waits for it.
func (f *atomicFront) lock(path string) func() {
	f.mu.Lock()
	k := f.keys[path]
	if k == nil {
		k = &keyLock{}
		f.keys[path] = k
	}
	k.users++
	f.mu.Unlock()
	k.Lock()
	return func() {
		k.Unlock()
		f.mu.Lock()
		if k.users--; k.users == 0 {
			delete(f.keys, path)
		}
		f.mu.Unlock()
	}
}

func (f *atomicFront) close() { f.srv.Close() }
