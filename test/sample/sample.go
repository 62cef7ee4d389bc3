// Package sample is the local world of make demo and make trial: the two organisations of the sample events
// (examples/events), what each customer submits for its destination, the destinations file listing them, and
// the events as Fluent Bit chunks in the test host's framing.
package sample

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/test/chunks"
)

// Org is one organisation of the sample events and what its customer chose in the guide's steps 3.1 to 3.3.
type Org struct {
	Name, ID                            string
	Slug                                string // a short name for files and commands
	Bucket, Role, ExternalID, KeyPrefix string
}

// Orgs are the organisations of examples/events; the second delivers under a key prefix, as in
// examples/destinations.json.
var Orgs = []Org{
	{Name: "Your Organization", ID: "3f7539ad-7f8b-4688-aee0-b9dbf2db728e", Slug: "your-company",
		Bucket: "your-company-audit-logs", Role: "wiv-audit-logs-sync", ExternalID: "681d1539-fd63-4e6e-9426-fccdfdae1862"},
	{Name: "Acme Corp", ID: "9b2d6c1e-41a7-4f0e-8c55-2f1e7a0d3b64", Slug: "acme-corp",
		Bucket: "acme-corp-audit-logs", Role: "acme-wiv-audit-logs-sync", ExternalID: "0c8e5b1a-3f2d-4c6e-9a7b-5d4e3f2a1b0c",
		KeyPrefix: "wiv/"},
}

// Entry is one entry of a destinations file.
type Entry struct {
	Org        string `json:"org_id"`
	Bucket     string `json:"bucket_name"`
	RoleARN    string `json:"role_arn"`
	ExternalID string `json:"external_id"`
	Region     string `json:"region,omitempty"`
	KeyPrefix  string `json:"key_prefix,omitempty"`
}

// WriteDestinations writes a destinations file, readable by its owner only (it holds External IDs).
func WriteDestinations(path string, entries []Entry) error {
	data, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

// EventFiles returns the <tag>.jsonl files of dir by tag.
func EventFiles(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no <tag>.jsonl file in %s", dir)
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), ".jsonl")] = f
	}
	return out, nil
}

// Frames turns JSON as Fluent Bit's http input takes it (objects one after another, or arrays of objects) into
// chunks of up to per events stamped now, in the host's framing, and returns how many events they hold.
func Frames(tag string, body []byte, per int, now time.Time) ([]byte, int, error) {
	var out, chunk bytes.Buffer
	n := 0
	flush := func() error {
		if chunk.Len() == 0 {
			return nil
		}
		err := chunks.WriteFrame(&out, tag, chunk.Bytes())
		chunk.Reset()
		return err
	}
	add := func(record json.RawMessage) error {
		if !bytes.HasPrefix(bytes.TrimSpace(record), []byte("{")) {
			return fmt.Errorf("record %d is not a JSON object: %.40s", n+1, record)
		}
		body, err := chunks.FromJSON(record)
		if err != nil {
			return fmt.Errorf("record %d: %w", n+1, err)
		}
		chunk.Write(chunks.V2(chunks.EventTime(now), body))
		if n++; n%per == 0 {
			return flush()
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("after %d records: %w", n, err)
		}
		records := []json.RawMessage{v}
		if bytes.HasPrefix(v, []byte("[")) {
			if err := json.Unmarshal(v, &records); err != nil {
				return nil, 0, err
			}
		}
		for _, r := range records {
			if err := add(r); err != nil {
				return nil, 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, 0, err
	}
	return out.Bytes(), n, nil
}

// WriteInput turns every <tag>.jsonl file of dir into chunks of up to three events, as an input plugin would,
// in the host's input file out, and returns how many events it holds.
func WriteInput(dir, out string) (int, error) {
	files, err := EventFiles(dir)
	if err != nil {
		return 0, err
	}
	var all bytes.Buffer
	total := 0
	for _, tag := range slices.Sorted(maps.Keys(files)) {
		path := files[tag]
		data, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		frames, n, err := Frames(tag, data, 3, time.Now())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		all.Write(frames)
		total += n
	}
	return total, os.WriteFile(out, all.Bytes(), 0o600)
}

// IDs returns the event ids of every <tag>.jsonl file of dir by organisation, skipping lines without both.
func IDs(dir string) (map[string][]string, error) {
	files, err := EventFiles(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		for line := range bytes.Lines(data) {
			var e struct {
				ID  string `json:"id"`
				Org string `json:"org_id"`
			}
			if json.Unmarshal(line, &e) == nil && e.ID != "" && e.Org != "" {
				out[e.Org] = append(out[e.Org], e.ID)
			}
		}
	}
	return out, nil
}
