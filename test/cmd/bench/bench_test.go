package main

import (
	"bytes"
	"hash/maphash"
	"math"
	"reflect"
	"testing"

	"github.com/klauspost/compress/gzip"
)

func TestParseBenchmarks(t *testing.T) {
	out := `goos: linux
pkg: github.com/wiv/out_wivaudit/plugin
BenchmarkDecode-2        172     635080 ns/op    92.27 MB/s   369705 B/op    5627 allocs/op
BenchmarkSealObject-2      4  311197117 ns/op   252.23 MB/s   1.160 cpu-s/1M-events   9.183 ratio   317852 B/op   904 allocs/op
--- FAIL: BenchmarkBroken
PASS
pkg: github.com/wiv/out_wivaudit/buffer
BenchmarkAppendAll/orgs=200-16   10   5000 ns/op   1 allocs/op
`
	want := []row{
		{name: "plugin BenchmarkDecode", nsPerOp: "635080", mbPerS: "92.27", allocs: "5627"},
		{name: "plugin BenchmarkSealObject", nsPerOp: "311197117", mbPerS: "252.23", ratio: "9.183", allocs: "904"},
		{name: "buffer BenchmarkAppendAll/orgs=200", nsPerOp: "5000", allocs: "1"},
	}
	if got := parseBenchmarks(out); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestSinkCountsTheRecordsOfAnObject(t *testing.T) {
	seed := maphash.MakeSeed()
	s := &sink{seed: seed}
	var obj bytes.Buffer
	zw := gzip.NewWriter(&obj)
	zw.Write([]byte("[\n{\"a\":1},\n{\"b\":\"x,\"}\n]\n"))
	zw.Close()
	n, sum, err := s.count(obj.Bytes())
	want := maphash.Bytes(seed, []byte(`{"a":1}`)) + maphash.Bytes(seed, []byte(`{"b":"x,"}`))
	if err != nil || n != 2 || sum != want {
		t.Errorf("count: %d records, sum %x (want 2, %x), %v", n, sum, want, err)
	}
	if _, _, err := s.count([]byte("not gzip")); err == nil {
		t.Error("no error for an object that is not gzip")
	}
}

func TestPerObjectRow(t *testing.T) {
	few := &workloadResult{label: "100 orgs x 3", orgs: 100, events: 200_000, out: cpu{user: 2, sys: 1}, objects: 600}
	many := &workloadResult{label: "10000 orgs x 3", orgs: 10000, events: 100_000, out: cpu{user: 4, sys: 2.5}, objects: 30_000}
	// many less few's per event times many's events: user 4 - 2/2 = 3 s, sys 2.5 - 1/2 = 2 s; over 30,000 objects.
	want := row{name: "CPU per delivered object, ms: 10000 orgs x 3 less 100 orgs x 3's per event", perObject: &cpu{user: 0.1, sys: 2.0 / 30}}
	for _, results := range [][]*workloadResult{{few, many}, {many, few}} {
		got, ok := perObjectRow(results)
		if !ok || got.name != want.name || !near(got.perObject.user, want.perObject.user) || !near(got.perObject.sys, want.perObject.sys) {
			t.Errorf("%+v, %v (%+v); want %+v (%+v)", got, ok, got.perObject, want, want.perObject)
		}
	}
	none := *many
	none.objects = 0
	for _, results := range [][]*workloadResult{nil, {many}, {few, &none}} {
		if got, ok := perObjectRow(results); ok {
			t.Errorf("%d workloads: a row %+v", len(results), got)
		}
	}
	var tb table
	got, _ := perObjectRow([]*workloadResult{few, many})
	tb.add(got)
	if c := tb.rows[0]; c[1] != "0.100 ms" || c[2] != "0.067 ms" || c[3] != "" {
		t.Errorf("cells %q; want user and sys in ms, no CPU-s per 1M events", c)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
