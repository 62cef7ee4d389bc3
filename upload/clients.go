// Package upload puts sealed batches into S3: the S3 and STS clients, each destination's role session, and
// what a failed upload means (Classify) and says (Explain).
package upload

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/lru"
)

// reassumeEvery is how often, at most, a destination's refused credentials are dropped and its role assumed
// again.
const reassumeEvery = 30 * time.Second

// session is one destination's cached role credentials.
type session struct {
	cache   *aws.CredentialsCache
	dropped time.Time
}

// maxSessions bounds the cached role sessions: memory does not grow with the number of customers. An evicted
// session is assumed again when its destination next uploads.
const maxSessions = 4096

// Clients reach S3 and STS. Base credentials come from the SDK's default chain and are only used to assume
// each destination's role with its External ID; that role's session, cached per (role, External ID) and
// renewed Credential_Refresh_Window (less up to Credential_Refresh_Jitter) before it expires, signs the
// destination's uploads, and no other. Safe for concurrent use.
type Clients struct {
	cfg  *conf.Config
	base aws.Config
	sts  *sts.Client

	mu       sync.Mutex
	byRegion map[string]*s3.Client
	sessions *lru.Cache[*session]

	// Roles counts the AssumeRole calls of every destination's session.
	Roles RoleCounts
}

// RoleCounts counts AssumeRole calls: those that returned credentials, those that failed, and the renewals
// among the first (a session's credentials replaced before they expired, or after they were refused).
type RoleCounts struct {
	Assumed, Failed, Renewed atomic.Int64
}

// counted is an AssumeRole provider that counts its calls.
type counted struct {
	provider aws.CredentialsProvider
	counts   *RoleCounts
	had      atomic.Bool // it returned credentials before
}

func (c *counted) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := c.provider.Retrieve(ctx)
	switch {
	case err != nil:
		c.counts.Failed.Add(1)
		return creds, err
	case c.had.Swap(true):
		c.counts.Renewed.Add(1)
	}
	c.counts.Assumed.Add(1)
	return creds, nil
}

// New loads the base AWS configuration (region, credentials chain, Request_Timeout) for the clients of c.
func New(ctx context.Context, c *conf.Config) (*Clients, error) {
	// The SDK's own logger writes to stderr, outside Fluent Bit's log format (e.g. "WARN falling back to IMDSv1"
	// while it looks for credentials); what a failure means reaches the log through Explain instead.
	client := awshttp.NewBuildableClient().WithTimeout(c.RequestTimeout).WithTransportOptions(func(tr *http.Transport) {
		keepConnections(tr, c.UploadWorkers)
	})
	base, err := config.LoadDefaultConfig(ctx, config.WithRegion(c.Region), config.WithLogger(logging.Nop{}),
		config.WithHTTPClient(client))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return &Clients{cfg: c, base: base, byRegion: map[string]*s3.Client{}, sessions: lru.New[*session](maxSessions),
		sts: sts.NewFromConfig(base, func(o *sts.Options) {
			if c.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(c.STSEndpoint)
			}
		})}, nil
}

// writeBuffer is each connection's write buffer (net/http's default: 4 KiB): a request of up to this size,
// headers and body, goes out from it in one write. Of a larger body, net/http copies the rest through a buffer
// it allocates per request.
const writeBuffer = 64 << 10

// keepConnections keeps a connection open between uploads for every upload worker, and every digest worker,
// to one endpoint: the SDK's default keeps 10 a host, and the rest would be opened (with TLS) anew each time.
func keepConnections(tr *http.Transport, workers int) {
	tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, 2*workers)
	tr.MaxIdleConns = max(tr.MaxIdleConns, 2*workers)
	tr.WriteBufferSize = writeBuffer
}

// bodyKey is the context key of the body put sends, []byte.
type bodyKey struct{}

// wholeBody is the S3 clients' HTTP client. The SDK hands net/http the body in a wrapper net/http does not know
// to be in memory, so that it writes the headers on their own and copies the body through a buffer it
// allocates per request (net's genericReadFrom, or io.Copy to a TLS connection). Given the body itself (put's,
// as long as the SDK passes it on unchanged: of its length), it sends headers and body in one write from the
// connection's buffer (writeBuffer).
type wholeBody struct{ aws.HTTPClient }

func (c wholeBody) Do(req *http.Request) (*http.Response, error) {
	if body, ok := req.Context().Value(bodyKey{}).([]byte); ok && req.Body != nil && req.ContentLength == int64(len(body)) {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	return c.HTTPClient.Do(req)
}

// s3For is region's S3 client. Each has its own connections (s3.NewFromConfig copies the HTTP client), kept
// open per endpoint: with Endpoint, the one server; else each bucket's host (bucket.s3.region.amazonaws.com).
func (c *Clients) s3For(region string) *s3.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	client := c.byRegion[region]
	if client == nil {
		client = s3.NewFromConfig(c.base, func(o *s3.Options) {
			o.HTTPClient = wholeBody{o.HTTPClient}
			o.EndpointResolverV2 = newEndpoints(o.EndpointResolverV2)
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

func (c *Clients) session(d conf.Destination) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sessions.Get(sessionKey(d)); ok {
		return s
	}
	s := &session{cache: aws.NewCredentialsCache(&counted{provider: c.assumer(d), counts: &c.Roles}, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = c.cfg.RefreshWindow
		o.ExpiryWindowJitterFrac = float64(c.cfg.RefreshJitter) / float64(c.cfg.RefreshWindow)
	})}
	c.sessions.Put(sessionKey(d), s)
	return s
}

// assumer assumes d's role with its External ID, Role_Session_Name and Role_Session_Duration.
func (c *Clients) assumer(d conf.Destination) *stscreds.AssumeRoleProvider {
	return stscreds.NewAssumeRoleProvider(c.sts, d.RoleARN, func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String(d.ExternalID)
		o.RoleSessionName = c.cfg.RoleSessionName
		o.Duration = c.cfg.SessionDuration
	})
}

// Put uploads one sealed batch to d, body its object as read and checked and sum its SHA-256 (base64), signed
// by d's role session when d has a role, and returns the object's version ("" in an unversioned bucket).
func (c *Clients) Put(ctx context.Context, d conf.Destination, b *buffer.Batch, body []byte, sum string) (string, error) {
	return send(ctx, c.s3For(d.Region), c.cfg, d, b, body, sum, c.signedBy(d)...)
}

// signedBy are the options that sign d's requests with d's role session, when d has a role.
func (c *Clients) signedBy(d conf.Destination) []func(*s3.Options) {
	if d.RoleARN == "" {
		return nil
	}
	s := c.session(d)
	return []func(*s3.Options){func(o *s3.Options) { o.Credentials = s.cache }}
}

// MayReassume reports whether d's role session may be dropped at now: d has a role, and its session was not
// dropped in the last 30 s.
func (c *Clients) MayReassume(d conf.Destination, now time.Time) bool {
	return c.reassume(d, now, false)
}

// Reassume drops d's role session, so that the next upload assumes the role again. It reports false, and
// drops nothing, when MayReassume is false (perhaps because another upload dropped it just now).
func (c *Clients) Reassume(d conf.Destination, now time.Time) bool { return c.reassume(d, now, true) }

func (c *Clients) reassume(d conf.Destination, now time.Time, drop bool) bool {
	if d.RoleARN == "" {
		return false
	}
	s := c.session(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(s.dropped) < reassumeEvery {
		return false
	}
	if drop {
		s.dropped = now
		s.cache.Invalidate()
	}
	return true
}
