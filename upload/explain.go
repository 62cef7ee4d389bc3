package upload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"syscall"
	"unicode/utf8"

	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/wiv/out_wivaudit/conf"
)

// platformPrincipal is the identity every customer's trust policy allows to assume their role (guide step
// 3.2.2): the base AWS credentials of this process must be it.
const platformPrincipal = "arn:aws:iam::613007325984:role/prod-aws-cdk-api-wf-opera-CustomerBucketSyncRole8E8-mUiiPZfuNHcc"

// Explain says, in one short line, which step failed, what to check (following the delivery guide's
// troubleshooting list) and the error's own words, shortened.
func Explain(err error, d conf.Destination, c *conf.Config) string {
	in := inspect(err)
	step := "S3 PutObject to " + d.Bucket
	if in.sts {
		step = "STS AssumeRole of " + d.RoleARN
	}
	msg := step + " failed"
	switch {
	case in.code != "" && in.status != 0:
		msg += fmt.Sprintf(" (%d %s)", in.status, in.code)
	case in.code != "":
		msg += " (" + in.code + ")"
	}
	if hint := hintFor(err, in, d, c); hint != "" {
		msg += ": " + hint
	}
	return msg + "; " + shorten(cause(err, in), 120)
}

// hintFor says what to check. Local errors are told from the network's by their type, not by net.Error,
// which every syscall.Errno satisfies.
func hintFor(err error, in inspection, d conf.Destination, c *conf.Config) string {
	var pathErr *fs.PathError
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var sendErr *smithyhttp.RequestSendError
	var errno syscall.Errno
	switch {
	case in.noCredentials && d.RoleARN != "":
		return "no AWS credentials: run as the trust policies' Principal (guide step 3.2.2), " + platformPrincipal + ", via an instance profile, IRSA, an ECS task role or AWS_* variables"
	case in.noCredentials:
		return "no AWS credentials: run as an identity allowed to write the bucket, via an instance profile, IRSA, an ECS task role or AWS_* variables"
	case in.sts && (in.code == "AccessDenied" || in.code == "AccessDeniedException"):
		return "the External ID must equal the trust policy's sts:ExternalId, and its Principal must allow this process's identity (guide step 3.2.2)"
	case in.sts && in.code != "":
		return "check the role_arn, STS_Endpoint and this process's AWS credentials"
	case in.code == "AccessDenied" || in.code == "Forbidden" || in.status == 403 && in.code == "":
		return fmt.Sprintf("the role needs s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::%s/*; check bucket and KMS key policies too (guide step 3.2.4)", d.Bucket)
	case in.code == "NoSuchBucket":
		return "the bucket does not exist; check the bucket_name"
	case in.code == "PermanentRedirect" || in.code == "AuthorizationHeaderMalformed" || in.code == "IllegalLocationConstraintException":
		return fmt.Sprintf("the bucket is not in region %s; set the destination's region to the bucket's", d.Region)
	case in.code == "AccessControlListNotSupported":
		return "the bucket has ACLs disabled; set Canned_ACL bucket-owner-full-control or none"
	case strings.HasPrefix(in.code, "KMS."):
		return "the bucket's KMS key must let the role encrypt (key policy)"
	case credentialCodes[in.code] || in.code == "SignatureDoesNotMatch":
		return "the credentials were refused; check this process's AWS credentials and the role_arn"
	case in.code == "NotImplemented" && c.ConditionalWrites:
		return "the store may not support If-None-Match; set Conditional_Writes off for such S3-compatible stores"
	case in.code != "":
		return ""
	case errors.As(err, &pathErr):
		return "a local error, not the network's or S3's: the batch's file is gone or unreadable"
	case errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &sendErr):
		return "network error; check connectivity to the endpoint"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out; check connectivity to the endpoint and Request_Timeout"
	case errors.As(err, &errno):
		return "a local error, not the network's or S3's"
	}
	return ""
}

// cause is the error's own words: the API message, or the innermost error, which carries the detail
// without the SDK's wrapping.
func cause(err error, in inspection) string {
	if in.message != "" {
		return in.message
	}
	for {
		switch err.(type) {
		case *net.OpError, *net.DNSError, *fs.PathError:
			return err.Error() // "dial tcp ...: connection refused", "open ...: no such file or directory"
		}
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// shorten cuts s to at most n bytes, at a rune boundary.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
