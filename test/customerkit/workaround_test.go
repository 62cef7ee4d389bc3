package customerkit

import (
	"slices"
	"strings"
	"testing"
)

func TestRequoted(t *testing.T) {
	for _, tc := range []struct {
		name, stored, want string
		needed             bool
		err                string
	}{
		{name: "JSON", stored: `{"Version": "2012-10-17"}`, want: `{"Version": "2012-10-17"}`},
		{name: "repr", stored: `{'Statement': [{'Action': ['s3:PutObject'], 'Effect': 'Allow'}]}`,
			want: `{"Statement": [{"Action": ["s3:PutObject"], "Effect": "Allow"}]}`, needed: true},
		{name: "neither", stored: `{'Enabled': True}`, err: "neither JSON nor JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, needed, err := requoted(tc.stored)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || needed != tc.needed {
				t.Errorf("requoted = %q, %v, %v; want %q, %v", got, needed, err, tc.want, tc.needed)
			}
		})
	}
}

func TestWithoutTLSOnlyDeny(t *testing.T) {
	const (
		deny  = `{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`
		allow = `{"Sid":"Read","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:user/r"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}`
		other = `{"Sid":"DenyOld","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{"Bool":{"aws:SecureTransport":"false"},"NumericLessThan":{"s3:TlsVersion":"1.2"}}}`
	)
	for _, tc := range []struct {
		name, policy, rest string
		dropped            []string
	}{
		{name: "only the TLS Deny", policy: `{"Version":"2012-10-17","Statement":[` + deny + `]}`, dropped: []string{`"DenyInsecureTransport"`}},
		{name: "one statement, not a list", policy: `{"Version":"2012-10-17","Statement":` + deny + `}`, dropped: []string{`"DenyInsecureTransport"`}},
		{name: "with another statement", policy: `{"Version":"2012-10-17","Statement":[` + allow + `,` + deny + `]}`,
			rest: `{"Statement":[` + allow + `],"Version":"2012-10-17"}`, dropped: []string{`"DenyInsecureTransport"`}},
		{name: "no TLS Deny", policy: `{"Version":"2012-10-17","Statement":[` + allow + `]}`, rest: `{"Version":"2012-10-17","Statement":[` + allow + `]}`},
		{name: "a Deny with more conditions stays", policy: `{"Statement":[` + other + `]}`, rest: `{"Statement":[` + other + `]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rest, dropped, err := withoutTLSOnlyDeny(tc.policy)
			if err != nil || rest != tc.rest || !slices.Equal(dropped, tc.dropped) {
				t.Errorf("got %s, %v, %v; want %s, %v", rest, dropped, err, tc.rest, tc.dropped)
			}
		})
	}
}
