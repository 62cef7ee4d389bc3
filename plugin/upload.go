package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
)

// putter is the one S3 call this plugin makes.
type putter interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Assumed-role credentials are renewed this long before they expire, spread by jitter so that many
// instances do not renew at once.
const (
	credentialExpiryWindow = 5 * time.Minute
	credentialJitter       = 0.5
	attemptTimeout         = 2 * time.Minute
)

// newS3 builds the S3 client. Base credentials come from the SDK's default chain; with Role_ARN they are only
// used to assume the customer's role with its External ID, and the role's credentials sign the uploads.
func newS3(ctx context.Context, c *conf.Config) (*s3.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(c.Region))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if c.RoleARN != "" {
		stsClient := sts.NewFromConfig(cfg, func(o *sts.Options) {
			if c.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(c.STSEndpoint)
			}
		})
		provider := stscreds.NewAssumeRoleProvider(stsClient, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.ExternalID = aws.String(c.ExternalID)
			o.RoleSessionName = c.RoleSessionName
		})
		cfg.Credentials = aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = credentialExpiryWindow
			o.ExpiryWindowJitterFrac = credentialJitter
		})
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
			o.UsePathStyle = true
		}
	}), nil
}

// put uploads one sealed batch with PutObject: gzip-encoded JSON, its Content-MD5 and the canned ACL.
func put(ctx context.Context, client putter, c *conf.Config, b *buffer.Batch) error {
	f, err := b.OpenObject()
	if err != nil {
		return err
	}
	defer f.Close()
	in := &s3.PutObjectInput{
		Bucket:          aws.String(c.Bucket),
		Key:             aws.String(b.Key),
		Body:            f,
		ContentLength:   aws.Int64(b.ObjectBytes),
		ContentMD5:      aws.String(b.ContentMD5),
		ContentType:     aws.String("application/json"),
		ContentEncoding: aws.String("gzip"),
	}
	if c.CannedACL != "" {
		in.ACL = types.ObjectCannedACL(c.CannedACL)
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	_, err = client.PutObject(ctx, in)
	return err
}

// explain says which step failed and what to check, following the delivery guide's troubleshooting list.
func explain(err error, c *conf.Config) string {
	step, code := "S3 PutObject", ""
	for e := err; e != nil; {
		var op *smithy.OperationError
		if !errors.As(e, &op) {
			break
		}
		if op.ServiceID == "STS" {
			step = "STS AssumeRole of " + c.RoleARN
		}
		e = op.Err
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	var netErr net.Error
	hint := ""
	switch {
	case step != "S3 PutObject" && (code == "AccessDenied" || code == "AccessDeniedException"):
		hint = "check that External_ID equals the sts:ExternalId in the role's trust policy and that the trust policy's Principal allows this platform's identity (guide step 3.2.2)"
	case step != "S3 PutObject":
		hint = "check Role_ARN (the role_arn the customer submitted), STS_Endpoint and the base AWS credentials of this process"
	case code == "AccessDenied" || code == "Forbidden":
		hint = fmt.Sprintf("check that the role's permissions policy allows s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::%s/*, that no bucket policy denies it, and that a KMS key used for bucket encryption lets the role encrypt (guide step 3.2.4)", c.Bucket)
	case code == "NoSuchBucket":
		hint = fmt.Sprintf("bucket %q does not exist; check Bucket against the customer's bucket_name", c.Bucket)
	case code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" || code == "IllegalLocationConstraintException":
		hint = fmt.Sprintf("the bucket is not in region %s; set Region to the bucket's region", c.Region)
	case code == "AccessControlListNotSupported":
		hint = "the bucket has ACLs disabled; set Canned_ACL to bucket-owner-full-control or none"
	case len(code) > 4 && code[:4] == "KMS.":
		hint = "the bucket's KMS key does not let the role encrypt; the customer must allow the role in the key policy"
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "ExpiredToken" || code == "InvalidToken":
		hint = "the credentials were refused; check the base AWS credentials of this process and Role_ARN"
	case errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded):
		hint = "network error or timeout; check connectivity to the S3 endpoint"
	}
	msg := step + " failed"
	if code != "" {
		msg += " (" + code + ")"
	}
	if hint != "" {
		msg += ": " + hint
	}
	return msg + "; error: " + err.Error()
}
