package main

import (
	"bytes"
	"hash/maphash"
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
