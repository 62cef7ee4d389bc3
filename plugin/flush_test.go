package plugin

import (
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
