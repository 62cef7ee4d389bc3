package plugin

import (
	"fmt"
	"strings"
)

// Kinds are the three audit log families of the delivery guide.
var Kinds = []string{"org", "user", "api"}

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

func tagKind(tag string) string {
	return tag[strings.LastIndexByte(tag, '.')+1:]
}

// route validates an event's organisation and kind and returns them, or the reason for refusing them.
func route(org, kind []byte, tag string, kindFromTag bool) (string, string, string) {
	if !ValidOrgID(string(org)) {
		return "", "", fmt.Sprintf("org_id %s is not a safe organisation ID (1-%d letters, digits, '.', '_' or '-', starting with a letter or digit, no \"..\")", quote(org), MaxOrgIDLen)
	}
	k := strings.ToLower(string(kind))
	for _, known := range Kinds {
		if k == known {
			return string(org), k, ""
		}
	}
	from := "record field"
	if kindFromTag {
		from = fmt.Sprintf("the last part of tag %s", quote([]byte(tag)))
	}
	return "", "", fmt.Sprintf("kind %s (from %s) is not one of org, user, api", quote(kind), from)
}

// quote shows untrusted bytes safely in a reason or log line, shortened.
func quote(b []byte) string {
	const max = 80
	if len(b) > max {
		return fmt.Sprintf("%q...", b[:max])
	}
	return fmt.Sprintf("%q", b)
}
