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

// platformPrincipal is the identity every customer's trust policy allows to assume their role (customer guide
// step 3.2.2): the base AWS credentials of this process must be it.
const platformPrincipal = "arn:aws:iam::613007325984:role/prod-aws-cdk-api-wf-opera-CustomerBucketSyncRole8E8-mUiiPZfuNHcc"

// Problem names what a failed call means, for people and scripts: the /destinations health endpoint and the
// wivaudit command print it, and each has an item in the customer guide's troubleshooting checklist or an
// operator setting to check.
type Problem string

// Problems, from the customer's side (a guide step), then ours (the operator's), then neither.
const (
	WrongExternalID    Problem = "external-id-or-trust"         // STS refused: External ID or trust principal
	RoleRefused        Problem = "role"                         // STS refused otherwise: the role ARN
	WriteDenied        Problem = "write-denied"                 // S3 refused the PutObject: permissions or bucket policy
	BucketOwner        Problem = "bucket-owner-or-write-denied" // the same refusal, which may also mean another account owns the bucket
	NoSuchBucket       Problem = "no-such-bucket"
	WrongRegion        Problem = "wrong-region"
	KMSDenied          Problem = "kms"
	ACLsDisabled       Problem = "acls-disabled"
	NoCredentials      Problem = "no-credentials"      // this process has no AWS identity
	CredentialsRefused Problem = "credentials-refused" // this process's credentials were refused
	ConditionalWrites  Problem = "conditional-writes"  // the store does not support If-None-Match
	LocalError         Problem = "local"               // our disk, not the network's or S3's
	Corrupted          Problem = "corrupted"           // the body S3 received was not the one sent; sent again
	NetworkError       Problem = "network"
	Timeout            Problem = "timeout"
	OtherError         Problem = "other"
)

// Problems lists every Problem, for the metrics' series from the start.
var Problems = []Problem{WrongExternalID, RoleRefused, WriteDenied, BucketOwner, NoSuchBucket, WrongRegion, KMSDenied,
	ACLsDisabled, NoCredentials, CredentialsRefused, ConditionalWrites, LocalError, Corrupted, NetworkError, Timeout, OtherError}

// GuideFile is the customer guide that Advice's steps refer to.
const GuideFile = "docs/customer-guide.md"

// Advice is what to check after a failed call: the problem, the customer guide's step when the fix is on the
// customer's side ("" when it is on ours), and the check itself.
type Advice struct {
	Problem Problem
	Step    string
	Check   string
}

// Explain says, in one short line, which step failed, what to check (following the customer guide's
// troubleshooting list) and the error's own words, shortened.
func Explain(err error, d conf.Destination, c *conf.Config) string {
	in := inspect(err)
	step := "S3 PutObject to " + d.Bucket
	if in.sts {
		step = "STS AssumeRole of " + d.RoleARN
	}
	msg := step + " failed"
	if answer := in.answer(); answer != "" {
		msg += " (" + answer + ")"
	}
	if a := advise(err, in, d, c); a.Check != "" {
		msg += ": " + a.Check
		if a.Step != "" {
			msg += " (" + GuideFile + " " + a.Step + ")"
		}
	}
	return msg + "; " + shorten(cause(err, in), 100)
}

// answer is the server's answer: the HTTP status and error code, such as "403 AccessDenied", or "".
func (in inspection) answer() string {
	switch {
	case in.code != "" && in.status != 0:
		return fmt.Sprintf("%d %s", in.status, in.code)
	case in.code != "":
		return in.code
	}
	return ""
}

// Advise says what a failed AssumeRole or PutObject for d means and what to check.
func Advise(err error, d conf.Destination, c *conf.Config) Advice {
	return advise(err, inspect(err), d, c)
}

// advise tells local errors from the network's by their type, not by net.Error, which every syscall.Errno
// satisfies.
func advise(err error, in inspection, d conf.Destination, c *conf.Config) Advice {
	var pathErr *fs.PathError
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var sendErr *smithyhttp.RequestSendError
	var errno syscall.Errno
	switch {
	case in.noCredentials && d.RoleARN != "":
		return Advice{NoCredentials, "", "no AWS credentials: run as the trust policies' Principal, " + platformPrincipal + ", via an instance profile, IRSA, an ECS task role or AWS_* variables"}
	case in.noCredentials:
		return Advice{NoCredentials, "", "no AWS credentials: run as an identity allowed to write the bucket, via an instance profile, IRSA, an ECS task role or AWS_* variables"}
	case in.sts && (in.code == "AccessDenied" || in.code == "AccessDeniedException"):
		return Advice{WrongExternalID, "3.2.2", "the External ID must equal the trust policy's sts:ExternalId, and its Principal must allow this process's identity"}
	case in.sts && in.code != "":
		return Advice{RoleRefused, "3.3", "check the role_arn, STS_Endpoint and this process's AWS credentials"}
	case ownerRefusal(in, d):
		whose := "the role's"
		if d.AccountID != "" {
			whose = "the account_id"
		}
		return Advice{BucketOwner, "3.2.4 or 3.1", fmt.Sprintf("the bucket is not in account %s (%s) or s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::%s/* are not allowed (S3 answers both alike)",
			d.BucketOwner(), whose, d.Bucket)}
	case in.code == "AccessDenied" || in.code == "Forbidden" || in.status == 403 && in.code == "":
		return Advice{WriteDenied, "3.2.4", fmt.Sprintf("the role needs s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::%s/*; check bucket and KMS key policies", d.Bucket)}
	case in.code == "NoSuchBucket":
		return Advice{NoSuchBucket, "3.1", "the bucket does not exist; check the bucket_name"}
	case in.code == "PermanentRedirect" || in.code == "AuthorizationHeaderMalformed" || in.code == "IllegalLocationConstraintException":
		return Advice{WrongRegion, "3.3", fmt.Sprintf("the bucket is not in region %s; set the destination's region to the bucket's", d.Region)}
	case in.code == "AccessControlListNotSupported":
		return Advice{ACLsDisabled, "", "the bucket has ACLs disabled; set Canned_ACL bucket-owner-full-control or none"}
	case strings.HasPrefix(in.code, "KMS."):
		return Advice{KMSDenied, "3.2.4", "the bucket's KMS key must let the role encrypt (key policy)"}
	case credentialCodes[in.code] || in.code == "SignatureDoesNotMatch":
		return Advice{CredentialsRefused, "", "the credentials were refused; check this process's AWS credentials and the role_arn"}
	case in.code == "BadDigest" || in.code == "XAmzContentSHA256Mismatch":
		return Advice{Corrupted, "", "the body S3 received does not match its checksum (altered on the way); it is sent again from the intact copy in Store_Dir"}
	case in.code == "NotImplemented" && c.ConditionalWrites:
		return Advice{ConditionalWrites, "", "the store may not support If-None-Match; set Conditional_Writes off for such S3-compatible stores"}
	case in.code != "":
		return Advice{OtherError, "", ""}
	case errors.As(err, &pathErr):
		return Advice{LocalError, "", "a local error, not the network's or S3's: the batch's file is gone or unreadable"}
	case errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &sendErr):
		return Advice{NetworkError, "", "network error; check connectivity to the endpoint"}
	case errors.Is(err, context.DeadlineExceeded):
		return Advice{Timeout, "", "timed out; check connectivity to the endpoint and Request_Timeout"}
	case errors.As(err, &errno):
		return Advice{LocalError, "", "a local error, not the network's or S3's"}
	}
	return Advice{OtherError, "", ""}
}

// ownerRefusal reports whether S3 refused a PutObject that named the bucket's expected owner in a way that
// may mean another account owns the bucket. S3 answers an ExpectedBucketOwner mismatch with a bare 403
// AccessDenied, as it answers missing permissions for a caller of another account than the bucket's; for a
// caller of the bucket's own account (the customer's role) it names the policy that refused ("... is not
// authorized to perform: s3:PutObject ..."), which rules the owner out.
func ownerRefusal(in inspection, d conf.Destination) bool {
	return !in.sts && d.BucketOwner() != "" && (in.code == "AccessDenied" || in.status == 403 && in.code == "") &&
		!strings.Contains(in.message, "not authorized to perform")
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
