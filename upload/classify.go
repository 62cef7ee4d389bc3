package upload

import (
	"errors"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// Class is what a failed upload means for its batch.
type Class int

// Failure classes.
const (
	Retriable     Class = iota // network, timeouts, 5xx, throttling, 409, a body altered on the way, local errors: back off and retry
	KeyExists                  // 412: the key is taken; move to the next free millisecond
	Credentials                // the role's credentials were refused: assume the role again
	Misconfigured              // the customer's or our setup refuses us: hold, retry slowly, log loudly
)

// Classes is the number of failure classes.
const Classes = Misconfigured + 1

// inspection is what an SDK error says: which step failed, the error code, the HTTP status and message, and
// whether the base credentials were missing (the SDK's chain ended at instance metadata and found none).
type inspection struct {
	sts, noCredentials bool
	code, message      string
	status             int
}

func inspect(err error) inspection {
	var in inspection
	for e := err; e != nil; {
		var op *smithy.OperationError
		if !errors.As(e, &op) {
			break
		}
		switch op.ServiceID {
		case "STS":
			in.sts = true
		case "ec2imds":
			in.noCredentials = true
		}
		e = op.Err
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		in.code, in.message = apiErr.ErrorCode(), apiErr.ErrorMessage()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		in.status = re.HTTPStatusCode()
	}
	return in
}

var (
	credentialCodes = map[string]bool{"ExpiredToken": true, "ExpiredTokenException": true, "InvalidToken": true,
		"TokenRefreshRequired": true, "InvalidAccessKeyId": true}
	configCodes = map[string]bool{"AccessDenied": true, "AccessDeniedException": true, "AllAccessDisabled": true,
		"AccountProblem": true, "NoSuchBucket": true, "PermanentRedirect": true, "AuthorizationHeaderMalformed": true,
		"IllegalLocationConstraintException": true, "AccessControlListNotSupported": true, "InvalidBucketName": true,
		"SignatureDoesNotMatch": true, "InvalidClientTokenId": true, "MalformedPolicyDocument": true,
		"RegionDisabledException": true, "NotImplemented": true}
)

// Classify says what a failed Put means.
func Classify(err error) Class {
	in := inspect(err)
	switch {
	case in.status == 412 || in.code == "PreconditionFailed":
		return KeyExists
	case !in.sts && credentialCodes[in.code]:
		return Credentials
	case configCodes[in.code] || strings.HasPrefix(in.code, "KMS."), in.status == 403 && in.code == "":
		return Misconfigured
	}
	return Retriable
}
