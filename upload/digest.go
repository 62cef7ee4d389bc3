package upload

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wiv/out_wivaudit/conf"
)

// PutDigest uploads a signed digest to d, as a batch goes: d's role session, the expected bucket owner, the
// canned ACL and If-None-Match. The body is plain JSON (no Content-Encoding); the signature travels in the
// user metadata under metaKey.
func (c *Clients) PutDigest(ctx context.Context, d conf.Destination, key string, body []byte, metaKey, signature string) error {
	return sendDigest(ctx, c.s3For(d.Region), c.cfg, d, key, body, metaKey, signature, c.signedBy(d)...)
}

func sendDigest(ctx context.Context, p putter, c *conf.Config, d conf.Destination, key string, body []byte, metaKey, signature string, opts ...func(*s3.Options)) error {
	md := md5.Sum(body)
	sum := sha256.Sum256(body)
	in := &s3.PutObjectInput{
		Bucket:         aws.String(d.Bucket),
		Key:            aws.String(key),
		ContentMD5:     aws.String(base64.StdEncoding.EncodeToString(md[:])),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		ContentType:    aws.String("application/json"),
		Metadata:       map[string]string{metaKey: signature},
	}
	_, err := put(ctx, p, c, d, in, body, opts...)
	return err
}
