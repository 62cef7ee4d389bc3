package record

import (
	"fmt"
	"strings"

	"github.com/wiv/out_wivaudit/conf"
)

// Kinds are the three audit log families of the delivery guide.
var Kinds = []string{"org", "user", "api"}

func tagKind(tag string) string {
	return tag[strings.LastIndexByte(tag, '.')+1:]
}

// route validates an event's organisation and kind and returns them, or the reason for refusing them.
func route(org, kind []byte, tag string, kindFromTag bool) (string, string, string) {
	if !conf.ValidOrgID(string(org)) {
		return "", "", fmt.Sprintf("org_id %s is not a safe organisation ID (1-%d letters, digits, '.', '_' or '-', starting with a letter or digit, no \"..\")", quote(org), conf.MaxOrgIDLen)
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
