package customerkit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/wiv/out_wivaudit/test/backend"
)

// NoncurrentVersionExpirationDays is the kit's default for how long a noncurrent version stays (the template's
// NoncurrentVersionExpirationDays, the module's noncurrent_version_expiration_days).
const NoncurrentVersionExpirationDays = 90

// bucketSetting is one setting of the template's AWS::S3::Bucket that moto's CloudFormation does not apply:
// its property name, how to tell a bucket lacks it, and how to put it as the kit does (with its defaults).
type bucketSetting struct {
	property string
	missing  func(ctx context.Context, sc *s3.Client, bucket string) (bool, error)
	put      func(ctx context.Context, sc *s3.Client, bucket string) error
	as       string // what put sets, for the workaround's description
}

// ignoredBucketSettings are the template's bucket properties moto 5.2.1 ignores (its FakeBucket's
// create_from_cloudformation_json applies BucketName, BucketEncryption and Tags only); LoggingConfiguration
// too, but the kit turns it on only with an AccessLogBucket, which the trial does not give.
var ignoredBucketSettings = []bucketSetting{
	{
		property: "VersioningConfiguration",
		missing: func(ctx context.Context, sc *s3.Client, bucket string) (bool, error) {
			v, err := sc.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(bucket)})
			return err == nil && v.Status != s3types.BucketVersioningStatusEnabled, err
		},
		put: func(ctx context.Context, sc *s3.Client, bucket string) error {
			_, err := sc.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
				VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
			return err
		},
		as: "versioning Enabled",
	},
	{
		property: "PublicAccessBlockConfiguration",
		missing: func(ctx context.Context, sc *s3.Client, bucket string) (bool, error) {
			_, err := sc.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(bucket)})
			return notFound(err, "NoSuchPublicAccessBlockConfiguration")
		},
		put: func(ctx context.Context, sc *s3.Client, bucket string) error {
			_, err := sc.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: aws.String(bucket),
				PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{BlockPublicAcls: aws.Bool(true),
					BlockPublicPolicy: aws.Bool(true), IgnorePublicAcls: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true)}})
			return err
		},
		as: "every public access blocked",
	},
	{
		property: "OwnershipControls",
		missing: func(ctx context.Context, sc *s3.Client, bucket string) (bool, error) {
			_, err := sc.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: aws.String(bucket)})
			return notFound(err, "OwnershipControlsNotFoundError")
		},
		put: func(ctx context.Context, sc *s3.Client, bucket string) error {
			_, err := sc.PutBucketOwnershipControls(ctx, &s3.PutBucketOwnershipControlsInput{Bucket: aws.String(bucket),
				OwnershipControls: &s3types.OwnershipControls{Rules: []s3types.OwnershipControlsRule{
					{ObjectOwnership: s3types.ObjectOwnershipBucketOwnerEnforced}}}})
			return err
		},
		as: "object ownership BucketOwnerEnforced",
	},
	{
		property: "LifecycleConfiguration",
		missing: func(ctx context.Context, sc *s3.Client, bucket string) (bool, error) {
			_, err := sc.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(bucket)})
			return notFound(err, "NoSuchLifecycleConfiguration")
		},
		put: func(ctx context.Context, sc *s3.Client, bucket string) error {
			_, err := sc.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: aws.String(bucket),
				LifecycleConfiguration: &s3types.BucketLifecycleConfiguration{Rules: []s3types.LifecycleRule{{
					ID: aws.String("audit-logs-retention"), Status: s3types.ExpirationStatusEnabled, Filter: &s3types.LifecycleRuleFilter{},
					NoncurrentVersionExpiration: &s3types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(NoncurrentVersionExpirationDays)},
				}}}})
			return err
		},
		as: fmt.Sprintf("the lifecycle rule audit-logs-retention (noncurrent versions expire after %d days)", NoncurrentVersionExpirationDays),
	},
}

// notFound reports whether err is S3's answer that a bucket has no such configuration (code), and returns any
// other error.
func notFound(err error, code string) (bool, error) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == code {
		return true, nil
	}
	return false, err
}

// PutIgnoredBucketSettings works around moto's CloudFormation creating an AWS::S3::Bucket with only its name,
// encryption and tags, and no AWS::S3::BucketPolicy at all: it puts each setting of ignoredBucketSettings the
// bucket lacks through the S3 API, as the kit sets it by default, so that the stack's bucket is versioned (the
// ledger's VERSION column) like the Terraform module's. The bucket policy is not put: its only statement is the
// TLS-only Deny, which DropTLSOnlyDeny removes from the module's bucket too. A bucket that lacks none (the
// module's) is left alone (nil).
func PutIgnoredBucketSettings(ctx context.Context, m *backend.Moto, bucket string) (*Workaround, error) {
	sc := m.S3()
	var put []string
	for _, s := range ignoredBucketSettings {
		missing, err := s.missing(ctx, sc, bucket)
		if err != nil {
			return nil, fmt.Errorf("bucket %s %s: %w", bucket, s.property, err)
		}
		if !missing {
			continue
		}
		if err := s.put(ctx, sc, bucket); err != nil {
			return nil, fmt.Errorf("bucket %s %s: %w", bucket, s.property, err)
		}
		put = append(put, s.as)
	}
	if len(put) == 0 {
		return nil, nil
	}
	return &Workaround{
		Behaviour: "moto's CloudFormation applies only an AWS::S3::Bucket's name, encryption and tags, and ignores AWS::S3::BucketPolicy, so the stack's bucket " +
			"lacks what AWS gives it: versioning, the public access block, BucketOwnerEnforced ownership, the lifecycle rule and the TLS-only bucket policy",
		Change: fmt.Sprintf("put on bucket %s through the S3 API, as the template sets them: %s; not the TLS-only bucket policy, which moto cannot honour "+
			"(removed from the Terraform bucket's policy too)", bucket, strings.Join(put, ", ")),
	}, nil
}
