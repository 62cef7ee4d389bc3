package upload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

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
// computes none of its own, and sum is the payload hash it signs (see put): the body is not read but to send it.
func send(ctx context.Context, p putter, c *conf.Config, d conf.Destination, b *buffer.Batch, body []byte, sum string, opts ...func(*s3.Options)) (versionID string, err error) {
	in := &s3.PutObjectInput{
		Bucket:          aws.String(d.Bucket),
		Key:             aws.String(b.Key),
		ContentMD5:      aws.String(b.ContentMD5),
		ChecksumSHA256:  aws.String(sum),
		ContentType:     aws.String("application/json"),
		ContentEncoding: aws.String("gzip"),
	}
	out, err := put(ctx, p, c, d, in, body, opts...)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.VersionId), nil
}

// put sends a PutObject of body to d with its expected bucket owner, the canned ACL and, unless switched off,
// If-None-Match: *. Its SigV4 payload hash is in's ChecksumSHA256, when given, in hex: otherwise the SDK
// reads the whole body once more to hash it over plain HTTP (over HTTPS it signs UNSIGNED-PAYLOAD). The
// context carries body to the HTTP client (see wholeBody).
func put(ctx context.Context, p putter, c *conf.Config, d conf.Destination, in *s3.PutObjectInput, body []byte, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if in.ChecksumSHA256 != nil {
		payload, err := payloadHash(*in.ChecksumSHA256)
		if err != nil {
			return nil, err
		}
		opts = append(slices.Clip(opts), payload)
	}
	if owner := d.BucketOwner(); owner != "" {
		in.ExpectedBucketOwner = aws.String(owner)
	}
	if c.CannedACL != "" {
		in.ACL = types.ObjectCannedACL(c.CannedACL)
	}
	if c.ConditionalWrites {
		in.IfNoneMatch = aws.String("*")
	}
	in.Body, in.ContentLength = bytes.NewReader(body), aws.Int64(int64(len(body)))
	// The SDK retries a request up to 3 times, each bounded by Request_Timeout, after fetching credentials.
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, bodyKey{}, body), 4*c.RequestTimeout)
	defer cancel()
	return p.PutObject(ctx, in, opts...)
}

// payloadHash is the option that gives the SigV4 signer sum, a SHA-256 in base64, as the payload hash, in hex.
// The SDK's own hashing (v4.ComputePayloadSHA256) skips a request whose payload hash is set.
func payloadHash(sum string) (func(*s3.Options), error) {
	raw, err := base64.StdEncoding.DecodeString(sum)
	if err == nil && len(raw) != sha256.Size {
		err = fmt.Errorf("%d bytes, not %d", len(raw), sha256.Size)
	}
	if err != nil {
		return nil, fmt.Errorf("SHA-256 %q of the body: %w", sum, err)
	}
	hash := hex.EncodeToString(raw)
	return s3.WithAPIOptions(func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("PayloadSHA256", func(ctx context.Context,
			in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			return next.HandleInitialize(v4.SetPayloadHash(ctx, hash), in)
		}), middleware.After)
	}), nil
}
