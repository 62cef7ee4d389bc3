package plugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

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

// PlatformPrincipal is the identity every customer's trust policy allows to assume their role (guide step
// 3.2.2): the base AWS credentials of this process must be it.
const PlatformPrincipal = "arn:aws:iam::613007325984:role/prod-aws-cdk-api-wf-opera-CustomerBucketSyncRole8E8-mUiiPZfuNHcc"

// explain says, in one short line, which step failed, what to check (following the delivery guide's
// troubleshooting list) and the error's own words, shortened.
func explain(err error, d conf.Destination, c *conf.Config) string {
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
		return "no AWS credentials: run as the trust policies' Principal (guide step 3.2.2), " + PlatformPrincipal + ", via an instance profile, IRSA, an ECS task role or AWS_* variables"
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
