package plugin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/wiv/out_wivaudit/conf"
)

// sdkError builds the error the SDK returns for an HTTP answer with an API error code.
func sdkError(service string, status int, code string) error {
	var api error
	if code != "" {
		api = &smithy.GenericAPIError{Code: code, Message: "m"}
	}
	resp := &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: api}}
	op := &smithy.OperationError{ServiceID: service, OperationName: "Op", Err: resp}
	if service == "STS" { // as the S3 call reports a failed role assumption
		return &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: op}
	}
	return op
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want failure
		hint string
	}{
		{sdkError("S3", 412, "PreconditionFailed"), keyExists, ""},
		{sdkError("S3", 409, "ConditionalRequestConflict"), retriable, ""},
		{sdkError("S3", 500, "InternalError"), retriable, ""},
		{sdkError("S3", 503, "SlowDown"), retriable, ""},
		{sdkError("S3", 400, "ExpiredToken"), credentials, "credentials were refused"},
		{sdkError("S3", 403, "InvalidAccessKeyId"), credentials, "credentials were refused"},
		{sdkError("S3", 403, "AccessDenied"), misconfigured, "s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::b-1/*"},
		{sdkError("S3", 403, ""), misconfigured, "s3:PutObject and s3:PutObjectAcl"},
		{sdkError("S3", 404, "NoSuchBucket"), misconfigured, `bucket "b-1" does not exist`},
		{sdkError("S3", 301, "PermanentRedirect"), misconfigured, "not in region us-east-1"},
		{sdkError("S3", 400, "AccessControlListNotSupported"), misconfigured, "ACLs disabled"},
		{sdkError("S3", 400, "KMS.DisabledException"), misconfigured, "KMS key"},
		{sdkError("S3", 501, "NotImplemented"), misconfigured, "Conditional_Writes off"},
		{sdkError("STS", 403, "AccessDenied"), misconfigured, "External ID"},
		{sdkError("STS", 403, "InvalidClientTokenId"), misconfigured, "base AWS credentials"},
		{sdkError("STS", 400, "ExpiredToken"), retriable, "base AWS credentials"},
		{sdkError("STS", 500, "InternalFailure"), retriable, ""},
		{context.DeadlineExceeded, retriable, "network error or timeout"},
		{errors.New("connection reset by peer"), retriable, ""},
	}
	c, _ := conf.Parse(conf.Map{"Bucket": "b-1"})
	d, _ := c.Default()
	for _, tc := range cases {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %d, want %d", tc.err, got, tc.want)
		}
		if msg := explain(tc.err, d, c); !strings.Contains(msg, tc.hint) {
			t.Errorf("explain(%v) = %q, want it to say %q", tc.err, msg, tc.hint)
		}
	}
}

func TestInvalidateIsLimitedPerDestination(t *testing.T) {
	c, _ := conf.Parse(conf.Map{"Bucket": "b-1"})
	cl, err := newClients(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	a := conf.Destination{Bucket: "b-a", RoleARN: "arn:aws:iam::111122223333:role/a", ExternalID: "ext-a"}
	b := conf.Destination{Bucket: "b-b", RoleARN: "arn:aws:iam::444455556666:role/b", ExternalID: "ext-b"}
	now := time.Now()
	if !cl.invalidate(a, now) || cl.invalidate(a, now.Add(time.Second)) {
		t.Error("a's session: first drop allowed, a second within 30 s refused")
	}
	if !cl.invalidate(b, now.Add(time.Second)) {
		t.Error("b's session was refused because of a's")
	}
	if !cl.invalidate(a, now.Add(reassumeEvery)) {
		t.Error("a's session could not be dropped again after 30 s")
	}
	if cl.invalidate(conf.Destination{Bucket: "b-1"}, now) {
		t.Error("a destination without a role has no session to drop")
	}
}
