package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Destination is where one organisation's audit logs go: the three values a customer submits in step 3.3 of
// the delivery guide, and optionally a region and key prefix.
type Destination struct {
	OrgID      string `json:"org_id"`
	Bucket     string `json:"bucket_name"`
	RoleARN    string `json:"role_arn"`
	ExternalID string `json:"external_id"`
	Region     string `json:"region,omitempty"`
	KeyPrefix  string `json:"key_prefix,omitempty"`
}

// MaxOrgIDLen bounds an organisation ID, which becomes a key prefix and a file name.
const MaxOrgIDLen = 128

// ValidOrgID reports whether id is safe as an S3 key segment and a file name: 1-128 ASCII letters, digits,
// '.', '_' or '-', starting with a letter or digit, without "..". Organisation IDs are UUIDs; anything
// outside this set (separators, control characters, look-alike Unicode) is refused rather than escaped.
func ValidOrgID(id string) bool {
	if len(id) == 0 || len(id) > MaxOrgIDLen || strings.Contains(id, "..") {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// ParseDestinations reads a destinations file: a JSON array of destinations, one per organisation. Region and
// key_prefix default to the [OUTPUT] section's. Every problem is reported with the entry and the field; an
// External ID is never shown.
func ParseDestinations(data []byte, c *Config) (map[string]Destination, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var list []Destination
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("not a JSON array of {org_id, bucket_name, role_arn, external_id[, region, key_prefix]}: %w", err)
	}
	if dec.More() {
		return nil, errors.New("unexpected data after the JSON array")
	}
	var errs []error
	out := make(map[string]Destination, len(list))
	for i, d := range list {
		fail := func(field, problem string) {
			errs = append(errs, fmt.Errorf("entry %d (org_id %q): %s: %s", i, d.OrgID, field, problem))
		}
		if d.Region == "" {
			d.Region = c.Region
		}
		if d.KeyPrefix == "" {
			d.KeyPrefix = c.KeyPrefix
		}
		if !ValidOrgID(d.OrgID) {
			fail("org_id", fmt.Sprintf("not a valid organisation ID (1-%d letters, digits, '.', '_' or '-', starting with a letter or digit)", MaxOrgIDLen))
		} else if _, dup := out[d.OrgID]; dup {
			fail("org_id", "listed twice")
		}
		for _, f := range []struct{ field, problem string }{
			{"bucket_name", bucketProblem(d.Bucket)},
			{"role_arn", roleProblem(d.RoleARN)},
			{"external_id", externalIDProblem(d.ExternalID)},
			{"region", regionProblem(d.Region)},
		} {
			if f.problem != "" {
				fail(f.field, f.problem)
			}
		}
		if d.KeyPrefix != "" {
			if p := keyPrefixProblem(d.KeyPrefix); p != "" {
				fail("key_prefix", p)
			}
		}
		out[d.OrgID] = d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
