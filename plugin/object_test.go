package plugin

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestObjectEncoderLevels(t *testing.T) {
	records := [][]byte{[]byte(`{"id":1}`), []byte(`{"id":2,"s":"` + strings.Repeat("x", 100<<10) + `"}`), []byte(`{}`)}
	want := "[\n" + string(bytes.Join(records, []byte(",\n"))) + "\n]\n"
	for level := 1; level <= 9; level++ {
		enc := objectEncoder(level)
		// A failed write leaves the pooled compressor in a state the next object must not inherit.
		if err := enc(failingWriter{}, slices.Values(records)); err == nil {
			t.Fatalf("level %d: no error from a failing writer", level)
		}
		for range 2 {
			var obj bytes.Buffer
			if err := enc(&obj, slices.Values(records)); err != nil {
				t.Fatalf("level %d: %v", level, err)
			}
			zr, err := gzip.NewReader(&obj)
			if err != nil {
				t.Fatalf("level %d: %v", level, err)
			}
			got, err := io.ReadAll(zr)
			if err != nil || string(got) != want {
				t.Fatalf("level %d: got %.60q (%v), want %.60q", level, got, err, want)
			}
		}
	}
}

func TestObjectEncoderRefusesLevelsOutOfRange(t *testing.T) {
	for _, level := range []int{-2, 0, 10} {
		err := objectEncoder(level)(io.Discard, slices.Values([][]byte{[]byte(`{}`)}))
		if err == nil || !strings.Contains(err.Error(), "is not from 1 to 9") {
			t.Errorf("level %d: error %v", level, err)
		}
	}
}
