package customerkit

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Policy is the part of an IAM or bucket policy document that the kit's checks and workarounds look at.
type Policy struct {
	Statement []Statement
}

// Statement is one statement of a policy.
type Statement struct {
	Sid       string
	Effect    string
	Principal Principal
	Action    StringList
	Resource  StringList
	Condition map[string]map[string]string
}

// Principal is a policy's Principal: {"AWS": ARN} or "*".
type Principal struct{ AWS string }

func (p *Principal) UnmarshalJSON(b []byte) error {
	if string(b) == `"*"` {
		p.AWS = "*"
		return nil
	}
	return json.Unmarshal(b, (*struct{ AWS string })(p))
}

// StringList is a policy field that may be one string or a list of them.
type StringList []string

func (l *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*l = StringList{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(l))
}

// PlainPolicy undoes the URL encoding IAM returns documents in.
func PlainPolicy(doc string) string {
	if plain, err := url.QueryUnescape(doc); err == nil && strings.HasPrefix(plain, "{") {
		return plain
	}
	return doc
}

// ParsePolicy reads a policy document as IAM or S3 returns it.
func ParsePolicy(doc string) (Policy, error) {
	var p Policy
	if err := json.Unmarshal([]byte(PlainPolicy(doc)), &p); err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", doc, err)
	}
	return p, nil
}

// tlsOnlyDeny reports whether s refuses every request made without TLS: the kit's DenyInsecureTransport.
func (s Statement) tlsOnlyDeny() bool {
	return s.Effect == "Deny" && s.Condition["Bool"]["aws:SecureTransport"] == "false" && len(s.Condition) == 1
}
