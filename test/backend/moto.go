// Package backend runs a local moto server (S3, STS and IAM on one port) set up the way a customer follows the
// delivery guide: a bucket, a role whose trust policy requires an External ID, and a policy that grants only
// s3:PutObject and s3:PutObjectAcl.
package backend

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Account is moto's default account.
const Account = "123456789012"

// Moto is a running moto server.
type Moto struct {
	URL       string // the front (atomicFront): what the tests and the plugin talk to
	Server    string // moto's own address, behind the front
	cmd       *exec.Cmd
	recording string
	admin     aws.Credentials
	exited    <-chan struct{} // closed when the server process has ended
	front     *atomicFront
}

// Start launches moto on a free loopback port with request recording on, and waits until it answers. The
// answer must come from this server: a port picked free can be taken again before moto binds it (by another
// test's server), so a server that exits at once is started again on another port.
func Start(dir string) (*Moto, error) {
	if err := exec.Command("python3", "-c", "import moto.server").Run(); err != nil {
		return nil, errors.New("python3 with moto is required (moto 5.2.1: pip install 'moto[server]==5.2.1')")
	}
	var err error
	for range 5 {
		var m *Moto
		if m, err = start(dir); err == nil {
			return m, nil
		}
	}
	return nil, err
}

func start(dir string) (*Moto, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &Moto{URL: fmt.Sprintf("http://127.0.0.1:%d", port), recording: filepath.Join(dir, "moto-recording.jsonl")}
	m.cmd = exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	m.cmd.Env = append(os.Environ(), "MOTO_ENABLE_RECORDING=true", "MOTO_RECORDER_FILEPATH="+m.recording)
	logf, err := os.Create(filepath.Join(dir, "moto.log"))
	if err != nil {
		return nil, err
	}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	// Its own process group, so that Stop ends every process it starts and none keeps the port.
	if m.exited, err = StartChild(m.cmd); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-m.exited:
			return nil, fmt.Errorf("moto exited at once on %s (port taken?); see %s", m.URL, logf.Name())
		default:
		}
		resp, err := http.Get(m.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			// Still running after answering: the answer was its own, not another server's on a reused port.
			select {
			case <-m.exited:
				return nil, fmt.Errorf("moto exited at once on %s (port taken?); see %s", m.URL, logf.Name())
			case <-time.After(time.Second):
			}
			if m.front, err = startAtomicFront(m.URL); err != nil {
				m.Stop()
				return nil, err
			}
			m.Server, m.URL = m.URL, m.front.URL
			return m, nil
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("moto did not answer on %s: %w", m.URL, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends the server and every process it started.
func (m *Moto) Stop() {
	if m.front != nil {
		m.front.close()
	}
	if m.cmd != nil && m.cmd.Process != nil {
		syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.exited
	}
}

// Platform is the identity our plugin runs as, and the customer destination it delivers to.
type Platform struct {
	AccessKey, SecretKey string // the platform's IAM user; the only base credentials the plugin gets
	UserARN              string
	Bucket               string
	RoleARN              string
	ExternalID           string
}

// Env is the environment the plugin process needs: the platform's keys and nothing from this machine's AWS
// configuration.
func (p *Platform) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + p.AccessKey, "AWS_SECRET_ACCESS_KEY=" + p.SecretKey,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
	}
}

func (m *Moto) clientConfig(creds aws.Credentials) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.StaticCredentialsProvider{Value: creds},
		BaseEndpoint: aws.String(m.URL),
	}
}

// S3 returns an S3 client with the administrator's credentials, for checking what was delivered.
func (m *Moto) S3() *s3.Client {
	return s3.NewFromConfig(m.clientConfig(m.admin), func(o *s3.Options) { o.UsePathStyle = true })
}

// IAM returns an IAM client with the administrator's credentials.
func (m *Moto) IAM() *iam.Client { return iam.NewFromConfig(m.clientConfig(m.admin)) }

// Setup creates, while authentication is still off, an administrator, the platform's IAM user (allowed only
// sts:AssumeRole), the customer's bucket (versioned), and the customer's role as the guide's steps 3.1-3.2
// describe; then it switches signature and IAM checks on and starts a fresh request recording.
func (m *Moto) Setup(ctx context.Context, bucket, externalID string) (*Platform, error) {
	return m.setup(ctx, bucket, externalID)
}

// SetupPlatform is Setup without a customer: the administrator and the platform's IAM user, then IAM checks
// on. Customers are then added with the administrator's credentials (AddCustomer, or the setup kit).
func (m *Moto) SetupPlatform(ctx context.Context) (*Platform, error) { return m.setup(ctx, "", "") }

// setup is Setup, and SetupPlatform when bucket is "".
func (m *Moto) setup(ctx context.Context, bucket, externalID string) (*Platform, error) {
	boot := aws.Credentials{AccessKeyID: "bootstrap", SecretAccessKey: "bootstrap"}
	cfg := m.clientConfig(boot)
	ic := iam.NewFromConfig(cfg)
	sc := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })

	admin, _, err := m.user(ctx, ic, "admin", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)
	if err != nil {
		return nil, err
	}
	m.admin = admin
	platform, userARN, err := m.user(ctx, ic, "wiv-platform", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}`)
	if err != nil {
		return nil, err
	}
	p := &Platform{AccessKey: platform.AccessKeyID, SecretKey: platform.SecretAccessKey, UserARN: userARN,
		Bucket: bucket, ExternalID: externalID}
	if bucket != "" {
		if err := m.customer(ctx, ic, sc, p, "wiv-audit-logs-sync"); err != nil {
			return nil, err
		}
	}
	if err := m.post("/moto-api/reset-auth", "0"); err != nil {
		return nil, err
	}
	return p, m.post("/moto-api/recorder/reset-recording", "")
}

func (m *Moto) user(ctx context.Context, ic *iam.Client, name, policy string) (aws.Credentials, string, error) {
	u, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)})
	if err != nil {
		return aws.Credentials{}, "", fmt.Errorf("create user %s: %w", name, err)
	}
	if _, err := ic.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name),
		PolicyName: aws.String(name + "-policy"), PolicyDocument: aws.String(policy)}); err != nil {
		return aws.Credentials{}, "", fmt.Errorf("user policy %s: %w", name, err)
	}
	k, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		return aws.Credentials{}, "", fmt.Errorf("access key %s: %w", name, err)
	}
	m.front.signer.add(*k.AccessKey.AccessKeyId, *k.AccessKey.SecretAccessKey)
	return aws.Credentials{AccessKeyID: *k.AccessKey.AccessKeyId, SecretAccessKey: *k.AccessKey.SecretAccessKey}, *u.User.Arn, nil
}

// AddCustomer sets up one more customer as the guide asks (bucket, role trusting the platform with its own
// External ID, PutObject-only policy on its own bucket), with the administrator's credentials. It returns the
// role's ARN.
func (m *Moto) AddCustomer(ctx context.Context, p *Platform, bucket, role, externalID string) (string, error) {
	c := &Platform{UserARN: p.UserARN, Bucket: bucket, ExternalID: externalID}
	if err := m.customer(ctx, m.IAM(), m.S3(), c, role); err != nil {
		return "", err
	}
	return c.RoleARN, nil
}

// customer does what the guide asks of the customer: bucket, trust policy with the External ID, and the
// PutObject/PutObjectAcl-only permissions policy.
func (m *Moto) customer(ctx context.Context, ic *iam.Client, sc *s3.Client, p *Platform, role string) error {
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(p.Bucket)}); err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	if _, err := sc.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(p.Bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		return fmt.Errorf("bucket versioning: %w", err)
	}
	trust := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":%q},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":%q}}}]}`,
		p.UserARN, p.ExternalID)
	r, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		return fmt.Errorf("create role: %w", err)
	}
	p.RoleARN = *r.Role.Arn
	perms := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:PutObject","s3:PutObjectAcl"],"Resource":"arn:aws:s3:::%s/*"}]}`, p.Bucket)
	_, err = ic.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role),
		PolicyName: aws.String("audit-logs-write"), PolicyDocument: aws.String(perms)})
	if err != nil {
		return fmt.Errorf("role policy: %w", err)
	}
	return nil
}

func (m *Moto) post(path, body string) error {
	resp, err := http.Post(m.URL+path, "text/plain", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %s %s", path, resp.Status, b)
	}
	return nil
}

// Request is one request the server received.
type Request struct {
	Method, Path, Query string
	Action              string // the Query API action (STS, IAM) from the query or form body
	AccessKey           string // from the SigV4 Authorization header
	Header              http.Header
}

// Operation names the request the way IAM policies do, for the calls this project can make; anything else is
// reported by method and path.
func (r Request) Operation() string {
	switch {
	case r.Action != "":
		return r.Action
	case r.Method == http.MethodPut && strings.Count(strings.Trim(r.Path, "/"), "/") >= 1 && !hasSubresource(r.Query):
		return "PutObject"
	}
	return r.Method + " " + r.Path + "?" + r.Query
}

func hasSubresource(q string) bool {
	v, _ := url.ParseQuery(q)
	for k := range v {
		if k != "x-id" {
			return true
		}
	}
	return false
}

// ByAdmin reports whether the test's own administrator made the request (to check what was delivered).
func (m *Moto) ByAdmin(r Request) bool { return r.AccessKey == m.admin.AccessKeyID }

// Requests returns what the server received since Setup, in order.
func (m *Moto) Requests() ([]Request, error) {
	f, err := os.Open(m.recording)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// moto's threads write an entry and its newline separately, so newlines can interleave: read a stream
	// of JSON values rather than lines.
	var out []Request
	dec := json.NewDecoder(f)
	for {
		var e struct {
			Method      string            `json:"method"`
			URL         string            `json:"url"`
			Headers     map[string]string `json:"headers"`
			Body        string            `json:"body"`
			BodyEncoded bool              `json:"body_encoded"`
		}
		if err := dec.Decode(&e); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		u, err := url.Parse(e.URL)
		if err != nil {
			return nil, err
		}
		r := Request{Method: e.Method, Path: u.Path, Query: u.RawQuery, Header: http.Header{}}
		for k, v := range e.Headers {
			r.Header.Set(k, v)
		}
		if _, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
			r.AccessKey, _, _ = strings.Cut(cred, "/")
		}
		r.Action = u.Query().Get("Action")
		if r.Action == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			body := []byte(e.Body)
			if e.BodyEncoded {
				body, _ = base64.StdEncoding.DecodeString(e.Body)
			}
			form, _ := url.ParseQuery(string(body))
			r.Action = form.Get("Action")
		}
		out = append(out, r)
	}
}

// AddReader creates an IAM user allowed only s3:ListBucket and s3:GetObject on bucket, as a customer reading
// their own bucket, and returns the environment that gives a process its keys.
func (m *Moto) AddReader(ctx context.Context, name, bucket string) ([]string, error) {
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::%s"},{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/*"}]}`, bucket, bucket)
	creds, _, err := m.user(ctx, m.IAM(), name, policy)
	if err != nil {
		return nil, err
	}
	p := Platform{AccessKey: creds.AccessKeyID, SecretKey: creds.SecretAccessKey}
	return p.Env(), nil
}

// Objects lists every key in the bucket with how many versions it has.
func (m *Moto) Objects(ctx context.Context, bucket string) (map[string]int, error) {
	out := map[string]int{}
	p := s3.NewListObjectVersionsPaginator(m.S3(), &s3.ListObjectVersionsInput{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, v := range page.Versions {
			out[*v.Key]++
		}
	}
	return out, nil
}

// Keys lists the bucket's keys (ListObjectsV2; moto refuses the signature of ListObjectVersions' later
// pages).
func (m *Moto) Keys(ctx context.Context, bucket string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(m.S3(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
		}
	}
	return keys, nil
}

// Get downloads an object.
func (m *Moto) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	o, err := m.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer o.Body.Close()
	return io.ReadAll(o.Body)
}

// SortedKeys returns the keys of a map in order.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
