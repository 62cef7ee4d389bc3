package upload

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/wiv/out_wivaudit/conf"
)

// TestAdviseIdentity: a refused GetCallerIdentity is this process's credentials, not a step of the customer's
// guide; missing credentials keep their own advice.
func TestAdviseIdentity(t *testing.T) {
	d := conf.Destination{Bucket: "b-1", RoleARN: "arn:aws:iam::123456789012:role/r"}
	c := &conf.Config{Region: "us-east-1"}
	identity := func(status int, code string) error {
		return errors.Unwrap(sdkError("STS", status, code)) // the STS call itself, not wrapped by S3
	}
	noCreds := &smithy.OperationError{ServiceID: "STS", OperationName: "GetCallerIdentity",
		Err: &smithy.OperationError{ServiceID: "ec2imds", OperationName: "GetMetadata", Err: errors.New("no route")}}
	cases := []struct {
		err  error
		want Problem
	}{
		{identity(403, "InvalidClientTokenId"), CredentialsRefused},
		{identity(403, "AccessDenied"), CredentialsRefused},
		{identity(403, "SignatureDoesNotMatch"), CredentialsRefused},
		{noCreds, NoCredentials},
	}
	for _, tc := range cases {
		if a := AdviseIdentity(tc.err, d, c); a.Problem != tc.want || a.Step != "" {
			t.Errorf("%v: %+v, want %s and no guide step", tc.err, a, tc.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	if got := Describe(sdkError("S3", 404, "NoSuchBucket")); got != "404 NoSuchBucket: m" {
		t.Errorf("Describe = %q", got)
	}
	long := errors.New(strings.Repeat("é", 150))
	if got := Describe(long); len(got) > 203 || !strings.HasSuffix(got, "...") {
		t.Errorf("Describe of a long error: %d bytes %q", len(got), got)
	}
}
