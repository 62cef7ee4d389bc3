package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// sink is a minimal S3 endpoint for the benchmark: it accepts every PutObject, counts objects, bytes and
// records, and answers 200. It checks no signature, ACL or condition the way S3 does, so it proves nothing but
// what the plugin costs; what the plugin delivers is proven against moto by the integration tests. moto is
// far too slow to be the other end of a measurement.
type sink struct {
	seed maphash.Seed
	srv  *http.Server
	url  string

	mu      sync.Mutex
	objects int64
	bytes   int64 // object bytes, as stored
	records int64
	sum     uint64 // of the records' hashes: equal sums mean the same records, whatever their order
	want    int64
	done    chan struct{}
	err     error
}

func startSink(seed maphash.Seed) (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{seed: seed, url: "http://" + l.Addr().String()}
	s.srv = &http.Server{Handler: s}
	go s.srv.Serve(l)
	return s, nil
}

// expect resets the counters and returns a channel closed once want records have arrived.
func (s *sink) expect(want int64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects, s.bytes, s.records, s.sum, s.err = 0, 0, 0, 0, nil
	s.want, s.done = want, make(chan struct{})
	return s.done
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		http.Error(w, "the benchmark sink takes PutObject only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, sum, err := s.count(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = errors.Join(s.err, fmt.Errorf("%s: %w", r.URL.Path, err))
	}
	s.objects++
	s.bytes += int64(len(body))
	s.records += n
	s.sum += sum
	if s.records >= s.want && s.done != nil {
		close(s.done)
		s.done = nil
	}
	w.Header().Set("ETag", `"bench"`)
}

// count reads one object: a gzipped JSON array with one record per line.
func (s *sink) count(object []byte) (int64, uint64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(object))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 64<<20)
	var n int64
	var sum uint64
	for sc.Scan() {
		line := bytes.TrimSuffix(sc.Bytes(), []byte(","))
		if len(line) == 0 || line[0] != '{' {
			continue // the array's brackets
		}
		n++
		sum += maphash.Bytes(s.seed, line)
	}
	return n, sum, sc.Err()
}

func (s *sink) totals() (objects, bytes, records int64, sum uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objects, s.bytes, s.records, s.sum, s.err
}

func (s *sink) close() { s.srv.Close() }
