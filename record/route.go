package record

import (
	"bytes"
	"fmt"

	"github.com/wiv/out_wivaudit/conf"
)

// kinds are the three audit log families of the delivery guide.
var kinds = [...]string{"org", "user", "api"}

// kindOf is the kind b names, in any case, or "".
func kindOf(b []byte) string {
	for _, k := range kinds {
		if bytes.EqualFold(b, []byte(k)) {
			return k
		}
	}
	return ""
}

func unknownKind(kind []byte, from string) string {
	return fmt.Sprintf("kind %s (from %s) is not one of org, user, api", quote(kind), from)
}

func badOrg(org []byte) string {
	return fmt.Sprintf("org_id %s is not a safe organisation ID (1-%d letters, digits, '.', '_' or '-', starting with a letter or digit, no \"..\")", quote(org), conf.MaxOrgIDLen)
}

// maxOrgs bounds the organisation IDs a Decode remembers; past it, it starts again.
const maxOrgs = 1 << 14

// orgs turns organisation IDs into strings once: a chunk carries runs of the same few organisations, and a
// string per record would be most of the decoder's allocations.
type orgs struct {
	last string
	seen map[string]string // valid IDs only
}

// intern returns b as a string if it is a valid organisation ID, else "".
func (o *orgs) intern(b []byte) string {
	if string(b) == o.last && o.last != "" {
		return o.last
	}
	if s, ok := o.seen[string(b)]; ok {
		o.last = s
		return s
	}
	s := string(b)
	if !conf.ValidOrgID(s) {
		return ""
	}
	if o.seen == nil {
		o.seen = make(map[string]string)
	} else if len(o.seen) >= maxOrgs {
		clear(o.seen)
	}
	o.seen[s] = s
	o.last = s
	return s
}

// quote shows untrusted bytes safely in a reason or log line, shortened.
func quote(b []byte) string {
	const max = 80
	if len(b) > max {
		return fmt.Sprintf("%q...", b[:max])
	}
	return fmt.Sprintf("%q", b)
}
