package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
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

// sender uploads sealed batches to their destinations.
type sender interface {
	put(ctx context.Context, d conf.Destination, b *buffer.Batch) error
	// invalidate drops the cached role session of d, so that the next upload assumes the role again; it
	// reports false when d has no role or its session was dropped less than reassumeEvery ago.
	invalidate(d conf.Destination, now time.Time) bool
}

// session is one destination's cached role credentials.
type session struct {
	cache   *aws.CredentialsCache
	dropped time.Time
}

// maxSessions bounds the cached role sessions: memory does not grow with the number of customers. An evicted
// session is assumed again when its destination next uploads.
const maxSessions = 4096

// clients reach S3 and STS. Base credentials come from the SDK's default chain and are only used to assume
// each destination's role with its External ID; that role's session, cached per (role, External ID) and
// renewed Credential_Refresh_Window (less up to Credential_Refresh_Jitter) before it expires, signs the
// destination's uploads, and no other.
type clients struct {
	cfg  *conf.Config
	base aws.Config
	sts  *sts.Client

	mu       sync.Mutex
	byRegion map[string]*s3.Client
	sessions *lru[*session]
}

func newClients(ctx context.Context, c *conf.Config) (*clients, error) {
	base, err := config.LoadDefaultConfig(ctx, config.WithRegion(c.Region),
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(c.RequestTimeout)))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return &clients{cfg: c, base: base, byRegion: map[string]*s3.Client{}, sessions: newLRU[*session](maxSessions),
		sts: sts.NewFromConfig(base, func(o *sts.Options) {
			if c.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(c.STSEndpoint)
			}
		})}, nil
}

func (c *clients) s3For(region string) *s3.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	client := c.byRegion[region]
	if client == nil {
		client = s3.NewFromConfig(c.base, func(o *s3.Options) {
			o.Region = region
			if c.cfg.Endpoint != "" {
				o.BaseEndpoint = aws.String(c.cfg.Endpoint)
				o.UsePathStyle = true
			}
		})
		c.byRegion[region] = client
	}
	return client
}

func sessionKey(d conf.Destination) string { return d.RoleARN + "\x00" + d.ExternalID }

func (c *clients) session(d conf.Destination) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sessions.get(sessionKey(d)); ok {
		return s
	}
	provider := stscreds.NewAssumeRoleProvider(c.sts, d.RoleARN, func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String(d.ExternalID)
		o.RoleSessionName = c.cfg.RoleSessionName
		o.Duration = c.cfg.SessionDuration
	})
	s := &session{cache: aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = c.cfg.RefreshWindow
		o.ExpiryWindowJitterFrac = float64(c.cfg.RefreshJitter) / float64(c.cfg.RefreshWindow)
	})}
	c.sessions.put(sessionKey(d), s)
	return s
}

func (c *clients) put(ctx context.Context, d conf.Destination, b *buffer.Batch) error {
	var opts []func(*s3.Options)
	if d.RoleARN != "" {
		s := c.session(d)
		opts = append(opts, func(o *s3.Options) { o.Credentials = s.cache })
	}
	return send(ctx, c.s3For(d.Region), c.cfg, d, b, opts...)
}

func (c *clients) invalidate(d conf.Destination, now time.Time) bool {
	if d.RoleARN == "" {
		return false
	}
	s := c.session(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(s.dropped) < reassumeEvery {
		return false
	}
	s.dropped = now
	s.cache.Invalidate()
	return true
}

// send uploads one sealed batch with PutObject: gzip-encoded JSON, its Content-MD5, the canned ACL and, unless
// switched off, If-None-Match: * so that an existing object is never overwritten.
func send(ctx context.Context, p putter, c *conf.Config, d conf.Destination, b *buffer.Batch, opts ...func(*s3.Options)) error {
	f, err := b.OpenObject()
	if err != nil {
		return err
	}
	defer f.Close()
	in := &s3.PutObjectInput{
		Bucket:          aws.String(d.Bucket),
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
	if c.ConditionalWrites {
		in.IfNoneMatch = aws.String("*")
	}
	// The SDK retries a request up to 3 times, each bounded by Request_Timeout, after fetching credentials.
	ctx, cancel := context.WithTimeout(ctx, 4*c.RequestTimeout)
	defer cancel()
	_, err = p.PutObject(ctx, in, opts...)
	return err
}

// failure classes decide what happens to a batch after a failed attempt.
type failure int

const (
	retriable     failure = iota // network, timeouts, 5xx, throttling, 409: back off and retry
	keyExists                    // 412: the key is taken; move to the next free millisecond
	credentials                  // the role's credentials were refused: assume the role again
	misconfigured                // the customer's or our setup refuses us: hold, retry slowly, log loudly
)

// inspection is what an SDK error says: which step failed, the error code and the HTTP status.
type inspection struct {
	sts    bool
	code   string
	status int
}

func inspect(err error) inspection {
	var in inspection
	for e := err; e != nil; {
		var op *smithy.OperationError
		if !errors.As(e, &op) {
			break
		}
		if op.ServiceID == "STS" {
			in.sts = true
		}
		e = op.Err
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		in.code = apiErr.ErrorCode()
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

func classify(err error) failure {
	in := inspect(err)
	switch {
	case in.status == 412 || in.code == "PreconditionFailed":
		return keyExists
	case !in.sts && credentialCodes[in.code]:
		return credentials
	case configCodes[in.code] || strings.HasPrefix(in.code, "KMS."), in.status == 403 && in.code == "":
		return misconfigured
	}
	return retriable
}

// explain says which step failed and what to check, following the delivery guide's troubleshooting list.
func explain(err error, d conf.Destination, c *conf.Config) string {
	in := inspect(err)
	step := "S3 PutObject to bucket " + d.Bucket
	if in.sts {
		step = "STS AssumeRole of " + d.RoleARN
	}
	var netErr net.Error
	hint := ""
	switch {
	case in.sts && (in.code == "AccessDenied" || in.code == "AccessDeniedException"):
		hint = "check that the External ID (External_ID, or external_id in Destinations_File) equals the sts:ExternalId in the role's trust policy and that the trust policy's Principal allows this platform's identity (guide step 3.2.2)"
	case in.sts && in.code != "":
		hint = "check the role_arn the customer submitted, STS_Endpoint and the base AWS credentials of this process"
	case in.code == "AccessDenied" || in.code == "Forbidden" || in.status == 403 && in.code == "":
		hint = fmt.Sprintf("check that the role's permissions policy allows s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::%s/*, that no bucket policy denies it, and that a KMS key used for bucket encryption lets the role encrypt (guide step 3.2.4)", d.Bucket)
	case in.code == "NoSuchBucket":
		hint = fmt.Sprintf("bucket %q does not exist; check it against the customer's bucket_name", d.Bucket)
	case in.code == "PermanentRedirect" || in.code == "AuthorizationHeaderMalformed" || in.code == "IllegalLocationConstraintException":
		hint = fmt.Sprintf("the bucket is not in region %s; set the destination's region to the bucket's", d.Region)
	case in.code == "AccessControlListNotSupported":
		hint = "the bucket has ACLs disabled; set Canned_ACL to bucket-owner-full-control or none"
	case strings.HasPrefix(in.code, "KMS."):
		hint = "the bucket's KMS key does not let the role encrypt; the customer must allow the role in the key policy"
	case credentialCodes[in.code] || in.code == "SignatureDoesNotMatch":
		hint = "the credentials were refused; check the base AWS credentials of this process and the role_arn"
	case in.code == "NotImplemented" && c.ConditionalWrites:
		hint = "the store may not support conditional writes; set Conditional_Writes off for S3-compatible stores without If-None-Match"
	case errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded):
		hint = "network error or timeout; check connectivity to the endpoint"
	}
	msg := step + " failed"
	if in.code != "" {
		msg += " (" + in.code + ")"
	}
	if hint != "" {
		msg += ": " + hint
	}
	return msg + "; error: " + err.Error()
}
