package upload

import (
	"bytes"
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
)

// putter is the one S3 call this package makes.
type putter interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// send uploads one sealed batch with PutObject and returns the version S3 gave it ("" unversioned): body, its
// gzip-encoded JSON object as read and checked against its manifest, with the Content-MD5 (which Object Lock
// buckets require) from the seal and sum, the body's full-object SHA-256 (base64), which S3 checks the body
// against and keeps with the object; the account that must own the bucket, the canned ACL and, unless switched
// off, If-None-Match: * so that an existing object is never overwritten. With a checksum given, the SDK
// computes none of its own.
func send(ctx context.Context, p putter, c *conf.Config, d conf.Destination, b *buffer.Batch, body []byte, sum string, opts ...func(*s3.Options)) (versionID string, err error) {
	in := &s3.PutObjectInput{
		Bucket:          aws.String(d.Bucket),
		Key:             aws.String(b.Key),
		Body:            bytes.NewReader(body),
		ContentLength:   aws.Int64(int64(len(body))),
		ContentMD5:      aws.String(b.ContentMD5),
		ChecksumSHA256:  aws.String(sum),
		ContentType:     aws.String("application/json"),
		ContentEncoding: aws.String("gzip"),
	}
	out, err := put(ctx, p, c, d, in, opts...)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.VersionId), nil
}

// put sends a PutObject to d with its expected bucket owner, the canned ACL and, unless switched off,
// If-None-Match: *.
func put(ctx context.Context, p putter, c *conf.Config, d conf.Destination, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if owner := d.BucketOwner(); owner != "" {
		in.ExpectedBucketOwner = aws.String(owner)
	}
	if c.CannedACL != "" {
		in.ACL = types.ObjectCannedACL(c.CannedACL)
	}
	if c.ConditionalWrites {
		in.IfNoneMatch = aws.String("*")
	}
	// The SDK retries a request up to 3 times, each bounded by Request_Timeout, after fetching credentials.
	ctx, cancel := context.WithTimeout(ctx, 4*c.RequestTimeout)
	defer cancel()
	return p.PutObject(ctx, in, opts...)
}
