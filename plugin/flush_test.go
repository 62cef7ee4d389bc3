package plugin

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"
)

// TestDeadLetterLines pins the one format of the dead-letter file, as the README documents it.
func TestDeadLetterLines(t *testing.T) {
	now := time.Date(2026, 1, 28, 14, 50, 45, 123000000, time.FixedZone("CET", 3600))
	cases := []struct {
		line deadLetterLine
		want string
	}{
		{deadLetterLine{Tag: "audit.user", Reason: "kind \"x\" is not one of org, user, api", Record: []byte(`{"id":"1"}`)},
			`{"time":"2026-01-28T13:50:45.123Z","tag":"audit.user","reason":"kind \"x\" is not one of org, user, api","record":{"id":"1"}}`},
		{deadLetterLine{Tag: "audit.user", Reason: "malformed msgpack", Msgpack: []byte{0x81, 0xa1, 'a'}},
			`{"time":"2026-01-28T13:50:45.123Z","tag":"audit.user","reason":"malformed msgpack","msgpack_base64":"gaFh"}`},
		{deadLetterLine{Reason: "damaged in the log", Buffer: []byte{0, 1}},
			`{"time":"2026-01-28T13:50:45.123Z","tag":"","reason":"damaged in the log","buffer_base64":"AAE="}`},
	}
	for _, tc := range cases {
		if got := string(tc.line.append([]byte("before\n"), now)); got != "before\n"+tc.want+"\n" {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

// TestFlushKeepsNothingOfItsChunk: Fluent Bit frees a chunk once the flush returns, and Flush reads it in
// place. Overwriting the chunk after Flush changes nothing that is delivered or kept in the dead-letter file.
func TestFlushKeepsNothingOfItsChunk(t *testing.T) {
	fake := &fakeS3{}
	in := startTest(t, testConfig(t), "test", fake, TestHooks{})
	chunk := cat(event("org-a", "1"), event("org-b", "2"), []byte{0x92, 0xc1})
	kept := slices.Clone(chunk)
	if r := in.Flush(chunk, "audit.user"); r != OK {
		t.Fatalf("flush: %v", r)
	}
	for i := range chunk {
		chunk[i] = 0xc1
	}
	in.sealDue()
	in.waitDelivered(t, 2)
	if seen := fake.deliveredIDs(t); seen["1"] != 1 || seen["2"] != 1 || len(seen) != 2 {
		t.Errorf("delivered %v, want records 1 and 2 once", seen)
	}
	data, err := os.ReadFile(in.store.DeadLetterPath())
	if err != nil {
		t.Fatal(err)
	}
	var line struct {
		Msgpack []byte `json:"msgpack_base64"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(data), &line); err != nil || !bytes.Equal(line.Msgpack, kept[len(kept)-2:]) {
		t.Errorf("dead-letter line %s (%v), want the malformed bytes %x", data, err, kept[len(kept)-2:])
	}
}
