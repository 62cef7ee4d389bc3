package record

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestRefOf(t *testing.T) {
	long := `"` + strings.Repeat("x", MaxEventField) + `"`
	for _, tc := range []struct {
		name, in, id, createdAt, err string
	}{
		{"producer record", `{"id":"57c8","org_id":"o","event_data":{"id":"inner","a":[1,{"created_at":2}]},"created_at":1769611845}`, `"57c8"`, `1769611845`, ""},
		{"string time, number id", `{"created_at":"2026-01-28T14:50:45Z","id":42}`, `42`, `"2026-01-28T14:50:45Z"`, ""},
		{"fractional EventTime", `{"id":"e","created_at":1769611845.000000123}`, `"e"`, `1769611845.000000123`, ""},
		{"missing fields", `{"org_id":"o"}`, "", "", ""},
		{"empty object", ` { } `, "", "", ""},
		{"escaped key and quotes in values", `{"note":"a \"id\": \\","\u0069d":"x","created_at":null}`, `"x"`, `null`, ""},
		{"first of two keeps", `{"id":"a","id":"b"}`, `"a"`, "", ""},
		{"indented", "{\n  \"id\" : \"a\" ,\n  \"created_at\" : [1, 2]\n}\n", `"a"`, `[1, 2]`, ""},
		{"too long a value is left out", `{"id":` + long + `,"created_at":1}`, "", `1`, ""},
		{"invalid literal is left out", `{"id":tru,"created_at":1}`, "", `1`, ""},
		{"array", `[1]`, "", "", "not a JSON object"},
		{"unterminated string", `{"id":"a`, "", "", "unterminated string"},
		{"no colon", `{"id" "a"}`, "", "", "no ':'"},
		{"trailing bytes", `{"id":"a"} x`, "", "", "unexpected bytes"},
		{"unclosed", `{"id":"a",`, "", "", "no string"},
		{"deep", `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, "", "", "nested deeper"},
		{"missing value", `{"id":,"created_at":1}`, "", "", "value is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := RefOf([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(ev.ID) != tc.id || string(ev.CreatedAt) != tc.createdAt {
				t.Fatalf("got id %s created_at %s, want %s and %s", ev.ID, ev.CreatedAt, tc.id, tc.createdAt)
			}
		})
	}
}

// FuzzRefOf: no input crashes it; on a valid JSON object it agrees with encoding/json about the values kept.
func FuzzRefOf(f *testing.F) {
	for _, s := range []string{`{"id":"a","created_at":1}`, `{"x":{"id":[1,"]"]},"id":2}`, `{"id":"\"}"}`, `{}`, `[`, `{"a":1,}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ev, err := RefOf(in)
		var m map[string]json.RawMessage
		if json.Unmarshal(in, &m) != nil || m == nil { // encoding/json reads null into a map without error
			return
		}
		if err != nil {
			t.Fatalf("valid object %q: %v", in, err)
		}
		if bytes.Count(in, []byte(`"id"`)) > 1 || bytes.Count(in, []byte(`"created_at"`)) > 1 || bytes.Contains(in, []byte(`\u`)) {
			return // duplicate keys: encoding/json keeps the last, RefOf the first
		}
		for name, got := range map[string]json.RawMessage{"id": ev.ID, "created_at": ev.CreatedAt} {
			want, ok := m[name]
			if ok && len(want) <= MaxEventField && !bytes.Equal(got, want) {
				t.Fatalf("%q: %s is %s, encoding/json says %s", in, name, got, want)
			}
			if !ok && got != nil {
				t.Fatalf("%q: %s is %s, encoding/json finds none", in, name, got)
			}
		}
	})
}
