package upload

import (
	"context"
	"crypto/md5"
	"encoding/base64"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/wiv/out_wivaudit/conf"
)

// The wivaudit command checks a destination one step at a time, with the clients, options and headers the
// uploads use: this process's identity, the role assumed with the External ID, then one small probe object.

// Identity returns the ARN of this process's base AWS identity (STS GetCallerIdentity needs no permission).
func (c *Clients) Identity(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*c.cfg.RequestTimeout)
	defer cancel()
	out, err := c.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.Arn), nil
}

// AssumeRole assumes d's role once, as an upload would, and returns the session's credentials for Probe.
func (c *Clients) AssumeRole(ctx context.Context, d conf.Destination) (aws.CredentialsProvider, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*c.cfg.RequestTimeout)
	defer cancel()
	creds, err := c.assumer(d).Retrieve(ctx)
	if err != nil {
		return nil, err
	}
	return credentials.StaticCredentialsProvider{Value: creds}, nil
}

// Probe writes body as the text object key in d's bucket, signed by creds (this process's own when nil), with
// the Content-MD5, expected bucket owner, canned ACL and If-None-Match: * of an upload.
func (c *Clients) Probe(ctx context.Context, d conf.Destination, creds aws.CredentialsProvider, key string, body []byte) error {
	var opts []func(*s3.Options)
	if creds != nil {
		opts = append(opts, func(o *s3.Options) { o.Credentials = creds })
	}
	sum := md5.Sum(body)
	_, err := put(ctx, c.s3For(d.Region), c.cfg, d, &s3.PutObjectInput{
		Bucket:      aws.String(d.Bucket),
		Key:         aws.String(key),
		ContentMD5:  aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		ContentType: aws.String("text/plain; charset=utf-8"),
	}, body, opts...)
	return err
}

// AdviseIdentity says what a failed GetCallerIdentity means. That call needs no permission, so a refusal is
// about this process's credentials, never the customer's setup.
func AdviseIdentity(err error, d conf.Destination, c *conf.Config) Advice {
	in := inspect(err)
	a := advise(err, in, d, c)
	if in.code != "" && !in.noCredentials {
		return Advice{CredentialsRefused, "", "this process's AWS credentials were refused; check them and STS_Endpoint"}
	}
	return a
}

// Describe is a failed call's answer and own words, shortened: "403 AccessDenied: User ... is not authorized".
func Describe(err error) string {
	in := inspect(err)
	words := shorten(cause(err, in), 200)
	if answer := in.answer(); answer != "" {
		return answer + ": " + words
	}
	return words
}
