package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Destination is where one organisation's audit logs go: the three values a customer submits in step 3.3 of
// the delivery guide, and optionally a region, a key prefix and the account that must own the bucket.
type Destination struct {
	OrgID      string `json:"org_id"`
	Bucket     string `json:"bucket_name"`
	RoleARN    string `json:"role_arn"`
	ExternalID string `json:"external_id"`
	Region     string `json:"region,omitempty"`
	KeyPrefix  string `json:"key_prefix,omitempty"`
	AccountID  string `json:"account_id,omitempty"` // the bucket's owner; by default the account of RoleARN
	// Digests: signed digests of what is delivered, from the entry's "digests" or else the output's Digests.
	Digests bool `json:"-"`
}

// entry is a destinations file entry as written: "digests" may be left out.
type entry struct {
	Destination
	Digests *bool `json:"digests"`
}

// BucketOwner is the AWS account that must own the bucket, sent with every PutObject as ExpectedBucketOwner:
// AccountID when set, else the account of the role (the guide has the customer create bucket and role in
// their one account), else "" (base credentials without AccountID: nothing to check against).
func (d Destination) BucketOwner() string {
	if d.AccountID != "" {
		return d.AccountID
	}
	if m := roleARNPattern.FindStringSubmatch(d.RoleARN); m != nil {
		return m[1]
	}
	return ""
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

// OrgKey is how organisation IDs are compared: case-insensitively, since a UUID may be written in either case.
func OrgKey(id string) string { return strings.ToLower(id) }

// String describes d without its External ID, so that formatting a destination never shows the secret.
func (d Destination) String() string {
	role := d.RoleARN
	if role == "" {
		role = "none: this process's credentials"
	}
	return fmt.Sprintf("s3://%s/%s%s/ (region %s, role %s)", d.Bucket, d.KeyPrefix, d.OrgID, d.Region, role)
}

// GoString keeps %#v from showing the External ID too.
func (d Destination) GoString() string { return "conf.Destination{" + d.String() + "}" }

// ParseDestinations reads a destinations file: a JSON array of destinations, one per organisation, keyed by
// OrgKey; each keeps the org_id as written, which is the spelling its object keys use. Region and key_prefix
// default to the [OUTPUT] section's. Every problem is reported with its line, the entry and the field; an
// External ID is never shown.
func ParseDestinations(data []byte, c *Config) (map[string]Destination, error) {
	var syn *json.SyntaxError
	if err := json.Unmarshal(data, new(json.RawMessage)); errors.As(err, &syn) {
		at := syn.Offset - 1 // the offending byte
		if strings.HasPrefix(syn.Error(), "unexpected end") {
			at = int64(len(data))
		}
		pos := position(data, at)
		return nil, positioned(pos, fmt.Errorf("%s: %v", pos, err))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		pos := position(data, int64(len(data)-len(bytes.TrimLeft(data, " \t\r\n"))))
		return nil, positioned(pos, fmt.Errorf("%s: not a JSON array of {org_id, bucket_name, role_arn, external_id[, region, key_prefix, account_id, digests]}", pos))
	}
	var errs problems
	out := map[string]Destination{}
	where := map[string]int{} // entry number by OrgKey, for duplicates
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err // the whole file was checked above
		}
		at := dec.InputOffset() - int64(len(raw)) // where the entry starts
		d, err := decodeEntry(raw, c)
		if err != nil {
			errs = append(errs, entryError(data, at, i, err))
			continue
		}
		fail := func(field, problem string) {
			pos := position(data, at)
			errs = append(errs, positioned(pos, fmt.Errorf("entry %d (%s, org_id %q): %s: %s", i, pos, d.OrgID, field, problem)))
		}
		if d.Region == "" {
			d.Region = c.Region
		}
		if d.KeyPrefix == "" {
			d.KeyPrefix = c.KeyPrefix
		}
		if d.Digests && c.DigestSigningKey == "" {
			fail("digests", "true, but the [OUTPUT] section has no Digest_Signing_Key to sign them; set it, or remove \"digests\"")
		}
		key := OrgKey(d.OrgID)
		if !ValidOrgID(d.OrgID) {
			fail("org_id", fmt.Sprintf("not a valid organisation ID (1-%d letters, digits, '.', '_' or '-', starting with a letter or digit)", MaxOrgIDLen))
		} else if first, dup := where[key]; dup {
			fail("org_id", fmt.Sprintf("listed twice (also entry %d; organisation IDs match case-insensitively)", first))
		}
		where[key] = i
		for _, f := range []struct{ field, problem string }{
			{"bucket_name", bucketProblem(d.Bucket)},
			{"role_arn", roleProblem(d.RoleARN)},
			{"external_id", externalIDProblem(d.ExternalID)},
			{"region", regionProblem(d.Region)},
			{"account_id", accountIDProblem(d.AccountID)},
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
		out[key] = d
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// decodeEntry reads one entry; its digests are the output's Digests unless it says otherwise.
func decodeEntry(raw []byte, c *Config) (Destination, error) {
	if field := repeatedField(raw); field != "" {
		return Destination{}, fmt.Errorf("%s is given twice (field names match without case); keep one", field)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var e entry
	if err := dec.Decode(&e); err != nil {
		return Destination{}, err
	}
	e.Destination.Digests = c.Digests
	if e.Digests != nil {
		e.Destination.Digests = *e.Digests
	}
	return e.Destination, nil
}

// repeatedField returns a top-level field an entry gives twice, or "": encoding/json would keep the last one
// without a word, and which External ID or bucket is meant must never be a guess.
func repeatedField(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok {
			return ""
		}
		if seen[strings.ToLower(name)] {
			return name
		}
		seen[strings.ToLower(name)] = true
		if dec.Decode(new(json.RawMessage)) != nil {
			return ""
		}
	}
	return ""
}

// entryError says what is wrong with the shape of entry i, which starts at byte at of data.
func entryError(data []byte, at int64, i int, err error) error {
	pos := position(data, at)
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field == "" {
			return positioned(pos, fmt.Errorf("entry %d (%s): a JSON %s where an object {org_id, bucket_name, role_arn, external_id} belongs", i, pos, typ.Value))
		}
		field, want := strings.TrimPrefix(typ.Field, "Destination."), "a string"
		if field == "digests" {
			want = "true or false"
		}
		pos = position(data, at+typ.Offset-1)
		return positioned(pos, fmt.Errorf("entry %d (%s): %s: a JSON %s where %s belongs", i, pos, field, typ.Value, want))
	}
	return positioned(pos, fmt.Errorf("entry %d (%s): %s; the fields are org_id, bucket_name, role_arn, external_id, region, key_prefix, account_id and digests",
		i, pos, strings.TrimPrefix(err.Error(), "json: ")))
}

// Position is where a problem in a destinations file is: its line and column, from 1.
type Position struct{ Line, Column int }

func (p Position) String() string { return fmt.Sprintf("line %d, column %d", p.Line, p.Column) }

// PositionError is a problem of a destinations file at the position its message names. errors.As finds the
// first of a file's problems.
type PositionError struct {
	Position
	err error
}

func (e *PositionError) Error() string { return e.err.Error() }
func (e *PositionError) Unwrap() error { return e.err }

func positioned(p Position, err error) error { return &PositionError{Position: p, err: err} }

// position is the line and column (from 1) of the byte at offset (from 0) in data.
func position(data []byte, offset int64) Position {
	before := data[:max(0, min(int64(len(data)), offset))]
	return Position{Line: bytes.Count(before, []byte{'\n'}) + 1, Column: len(before) - bytes.LastIndexByte(before, '\n')}
}
