package upload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

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
		err     error
		want    Class
		hint    string
		problem Problem
	}{
		{sdkError("S3", 412, "PreconditionFailed"), KeyExists, "", OtherError},
		{sdkError("S3", 409, "ConditionalRequestConflict"), Retriable, "", OtherError},
		{sdkError("S3", 500, "InternalError"), Retriable, "", OtherError},
		{sdkError("S3", 503, "SlowDown"), Retriable, "", OtherError},
		{sdkError("S3", 400, "ExpiredToken"), Credentials, "credentials were refused", CredentialsRefused},
		{sdkError("S3", 403, "InvalidAccessKeyId"), Credentials, "credentials were refused", CredentialsRefused},
		{sdkError("S3", 403, "AccessDenied"), Misconfigured, "s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::b-1/*", WriteDenied},
		{sdkError("S3", 403, ""), Misconfigured, "s3:PutObject and s3:PutObjectAcl", WriteDenied},
		{sdkError("S3", 404, "NoSuchBucket"), Misconfigured, "(404 NoSuchBucket): the bucket does not exist", NoSuchBucket},
		{sdkError("S3", 301, "PermanentRedirect"), Misconfigured, "not in region us-east-1", WrongRegion},
		{sdkError("S3", 400, "AccessControlListNotSupported"), Misconfigured, "ACLs disabled", ACLsDisabled},
		{sdkError("S3", 400, "KMS.DisabledException"), Misconfigured, "KMS key", KMSDenied},
		{sdkError("S3", 501, "NotImplemented"), Misconfigured, "Conditional_Writes off", ConditionalWrites},
		{sdkError("S3", 400, "BadDigest"), Retriable, "(400 BadDigest): the body S3 received does not match its checksum", Corrupted},
		{sdkError("S3", 400, "XAmzContentSHA256Mismatch"), Retriable, "sent again from the intact copy", Corrupted},
		{sdkError("STS", 403, "AccessDenied"), Misconfigured, "External ID", WrongExternalID},
		{sdkError("STS", 403, "InvalidClientTokenId"), Misconfigured, "this process's AWS credentials", RoleRefused},
		{sdkError("STS", 400, "ExpiredToken"), Retriable, "this process's AWS credentials", RoleRefused},
		{sdkError("STS", 500, "InternalFailure"), Retriable, "", RoleRefused},
		{context.DeadlineExceeded, Retriable, "timed out", Timeout},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}, Retriable,
			"network error; check connectivity to the endpoint; dial tcp: connect: connection refused", NetworkError},
		{errors.New("connection reset by peer"), Retriable, "", OtherError},
		// Local errors are not the network's, although a syscall.Errno satisfies net.Error.
		{fmt.Errorf("open object: %w", &fs.PathError{Op: "open", Path: "/store/batches/a~org~1.json.gz", Err: syscall.ENOENT}), Retriable,
			"failed: a local error, not the network's or S3's: the batch's file is gone or unreadable; open /store/batches/a~org~1.json.gz: no such file or directory", LocalError},
		{syscall.EIO, Retriable, "failed: a local error, not the network's or S3's; input/output error", LocalError},
	}
	c, _ := conf.Parse(conf.Map{"Org_ID": "org-a", "Bucket": "b-1"})
	d, _ := c.Output()
	for _, tc := range cases {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %d, want %d", tc.err, got, tc.want)
		}
		if got := Advise(tc.err, d, c).Problem; got != tc.problem {
			t.Errorf("Advise(%v).Problem = %q, want %q", tc.err, got, tc.problem)
		}
		if msg := Explain(tc.err, d, c); !strings.Contains(msg, tc.hint) || len(msg) > 300 {
			t.Errorf("Explain(%v) = %q, want it to say %q in at most 300 bytes", tc.err, msg, tc.hint)
		}
	}
}

// TestBucketOwnerRefusal: S3 answers a bucket owned by another account than the expected one with a bare 403
// AccessDenied, as it does missing permissions across accounts, so when an owner was sent the line names both
// causes and the owner; a refusal that names the policy (same account) or one without an expected owner is
// about permissions only. Either way the batch is held.
func TestBucketOwnerRefusal(t *testing.T) {
	const role = "arn:aws:iam::111122223333:role/r"
	withMessage := func(msg string) error {
		err := sdkError("S3", 403, "AccessDenied")
		err.(*smithy.OperationError).Err.(*awshttp.ResponseError).Err = &smithy.GenericAPIError{Code: "AccessDenied", Message: msg}
		return err
	}
	bare, named := withMessage("Access Denied"), withMessage("User: arn:aws:sts::111122223333:assumed-role/r/wivaudit is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::b-1/k\" because no identity-based policy allows the s3:PutObject action")
	cases := []struct {
		settings conf.Map
		err      error
		problem  Problem
		hint     string
	}{
		{conf.Map{"Org_ID": "org-a", "Bucket": "b-1", "Role_ARN": role, "External_ID": "ext-1"}, bare, BucketOwner,
			"the bucket is not in account 111122223333 (the role's) or s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::b-1/* are not allowed"},
		{conf.Map{"Org_ID": "org-a", "Bucket": "b-1", "Account_ID": "444455556666"}, bare, BucketOwner, "not in account 444455556666 (the account_id)"},
		{conf.Map{"Org_ID": "org-a", "Bucket": "b-1", "Account_ID": "444455556666"}, sdkError("S3", 403, ""), BucketOwner, "(docs/customer-guide.md 3.2.4 or 3.1)"},
		{conf.Map{"Org_ID": "org-a", "Bucket": "b-1", "Role_ARN": role, "External_ID": "ext-1"}, named, WriteDenied, "(docs/customer-guide.md 3.2.4)"},
		{conf.Map{"Org_ID": "org-a", "Bucket": "b-1"}, bare, WriteDenied, "the role needs s3:PutObject"},
	}
	for _, tc := range cases {
		c, err := conf.Parse(tc.settings)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := c.Output()
		if got := Classify(tc.err); got != Misconfigured {
			t.Errorf("%v: class %d, want Misconfigured (held)", tc.settings, got)
		}
		if got := Advise(tc.err, d, c).Problem; got != tc.problem {
			t.Errorf("%v: problem %q, want %q", tc.settings, got, tc.problem)
		}
		if msg := Explain(tc.err, d, c); !strings.Contains(msg, tc.hint) || len(msg) > 320 {
			t.Errorf("%v: %q, want it to say %q in at most 320 bytes", tc.settings, msg, tc.hint)
		}
	}
}

// TestExplainIsShort: the refused-upload cause stays one short line whatever the server's message.
func TestExplainIsShort(t *testing.T) {
	c, _ := conf.Parse(conf.Map{"Org_ID": "org-a", "Bucket": "b-1"})
	d, _ := c.Output()
	err := &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 403}},
			Err: &smithy.GenericAPIError{Code: "AccessDenied", Message: strings.Repeat("Access Denied because of a long policy story. ", 20)}},
		RequestID: strings.Repeat("R", 60)}}
	msg := Explain(err, d, c)
	if len(msg) > 300 || !strings.HasPrefix(msg, "S3 PutObject to b-1 failed (403 AccessDenied): the role needs s3:PutObject") || !strings.HasSuffix(msg, "...") {
		t.Errorf("%d bytes: %q", len(msg), msg)
	}
}

// TestMissingCredentialsNameTheIdentity: with no AWS credentials at all, the real SDK's error is explained by
// the identity the plugin must run as and the ways to give it.
func TestMissingCredentialsNameTheIdentity(t *testing.T) {
	awsEnv(t, "", "")
	cl, d := clientsOf(t, conf.Map{"Org_ID": "org-a", "Bucket": "b-1", "Role_ARN": "arn:aws:iam::111122223333:role/r",
		"External_ID": "ext-1", "STS_Endpoint": "http://127.0.0.1:9", "Allow_Plain_HTTP": "on"})
	_, err := cl.session(d).cache.Retrieve(context.Background())
	if err == nil {
		t.Fatal("credentials were found")
	}
	msg := Explain(err, d, cl.cfg)
	for _, want := range []string{"STS AssumeRole of arn:aws:iam::111122223333:role/r failed: no AWS credentials", platformPrincipal,
		"instance profile, IRSA, an ECS task role or AWS_* variables"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if len(msg) > 400 {
		t.Errorf("%d bytes: %q", len(msg), msg)
	}
}
