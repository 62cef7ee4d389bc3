package backend

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// TestAtomicFrontSerialisesConditionalWrites: behind the front, conditional PUTs to one key never overlap,
// while those to other keys and unconditional requests still do.
func TestAtomicFrontSerialisesConditionalWrites(t *testing.T) {
	var mu sync.Mutex
	inFlight, most := map[string]int{}, map[string]int{}
	var overlapping atomic.Int32
	release := make(chan struct{})
	entered := make(chan struct{}, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight[r.URL.Path]++
		most[r.URL.Path] = max(most[r.URL.Path], inFlight[r.URL.Path])
		mu.Unlock()
		overlapping.Add(1)
		entered <- struct{}{}
		<-release
		mu.Lock()
		inFlight[r.URL.Path]--
		mu.Unlock()
	}))
	defer srv.Close()
	f, err := startAtomicFront(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()

	send := func(path string, conditional bool) {
		req, _ := http.NewRequest(http.MethodPut, f.URL+path, nil)
		if conditional {
			req.Header.Set("If-None-Match", "*")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	}
	var wg sync.WaitGroup
	for _, r := range []struct {
		path        string
		conditional bool
	}{{"/b/same", true}, {"/b/same", true}, {"/b/same", true}, {"/b/other", true}, {"/b/plain", false}, {"/b/plain", false}} {
		wg.Add(1)
		go func() { defer wg.Done(); send(r.path, r.conditional) }()
	}
	// Four requests reach the server at once: one of /b/same, /b/other and both unconditional ones.
	for range 4 {
		<-entered
	}
	close(release)
	wg.Wait()
	if most["/b/same"] != 1 || most["/b/plain"] != 2 || overlapping.Load() != 6 {
		t.Fatalf("most in flight: same key %d (want 1), unconditional %d (want 2); %d requests served (want 6)",
			most["/b/same"], most["/b/plain"], overlapping.Load())
	}
}
