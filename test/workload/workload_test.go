package workload_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/wiv/out_wivaudit/record"
	"github.com/wiv/out_wivaudit/test/workload"
)

func TestGenerateIsAFunctionOfTheSpec(t *testing.T) {
	spec := workload.Spec{Seed: 7, Events: 3000, Orgs: 10, ChunkBytes: 32 << 10}
	a, err := workload.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := workload.Generate(spec)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two workloads of the same spec differ")
	}
	spec.Seed = 8
	c, _ := workload.Generate(spec)
	if bytes.Equal(a.Events[0].JSON, c.Events[0].JSON) {
		t.Error("another seed made the same first event")
	}
	if avg := a.JSONBytes / int64(len(a.Events)); avg < 370 || avg > 410 {
		t.Errorf("events average %d bytes, want about 390", avg)
	}
	if n := len(a.Streams()); n != 30 {
		t.Errorf("%d streams, want 10 organisations x 3 kinds", n)
	}
}

// Each chunk holds one kind's events, in order: decoding the chunks of a tag gives that kind's events.
func TestChunksHoldTheEventsOfTheirTag(t *testing.T) {
	w, err := workload.Generate(workload.Spec{Seed: 1, Events: 5000, Orgs: 20, ChunkBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for _, ev := range w.Events {
		want["audit."+ev.Kind] = append(want["audit."+ev.Kind], string(ev.JSON))
	}
	got := map[string][]string{}
	dec := record.NewDecoder("org_id", "", 1<<20)
	for i, c := range w.Chunks {
		if len(c.Data) < w.Spec.ChunkBytes && i < len(w.Chunks)-len(workload.Kinds) {
			t.Errorf("chunk %d has %d bytes, under %d, before the end", i, len(c.Data), w.Spec.ChunkBytes)
		}
		n := 0
		dec.Decode(c.Data, c.Tag, func(ev *record.Event) {
			if ev.Reject != "" || "audit."+ev.Kind != c.Tag {
				t.Fatalf("chunk %d (%s): event of kind %q rejected: %q", i, c.Tag, ev.Kind, ev.Reject)
			}
			got[c.Tag] = append(got[c.Tag], string(ev.JSON))
			n++
		})
		if n != c.Events {
			t.Errorf("chunk %d decodes to %d events, says %d", i, n, c.Events)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("the chunks do not hold the events of their tags in order")
	}
}
