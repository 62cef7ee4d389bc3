package backend

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Versity is a running versitygw (S3 only, no STS or IAM, data in a folder), for what moto does not check:
// it refuses a PutObject whose x-amz-expected-bucket-owner is not the bucket's owner (403 AccessDenied) or
// whose x-amz-checksum-sha256 or Content-MD5 does not match the body (400 BadDigest), and keeps the checksum
// with the object. Its accounts are users named by their access key: the root user's key is RootAccount, so
// that a bucket's owner reads as an AWS account ID.
type Versity struct {
	URL      string
	bin      string
	admin    string // the admin API's URL
	cmd      *exec.Cmd
	exited   chan struct{}
	rootCred aws.Credentials
}

// RootAccount is the versitygw root user's access key: the account that owns the buckets it creates.
const RootAccount = "111122223333"

// StartVersity runs the versitygw binary bin on free loopback ports with its state under dir, and waits until
// it answers. Like Start, it tries other ports when the ones picked free are taken before it binds them.
func StartVersity(dir, bin string) (*Versity, error) {
	var err error
	for range 5 {
		var v *Versity
		if v, err = startVersity(dir, bin); err == nil {
			return v, nil
		}
	}
	return nil, err
}

// FreePort returns a loopback port no one listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startVersity(dir, bin string) (*Versity, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, fmt.Sprintf("versitygw-%d", port))
	for _, d := range []string{"iam", "versions", "data"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o700); err != nil {
			return nil, err
		}
	}
	v := &Versity{URL: fmt.Sprintf("http://127.0.0.1:%d", port), bin: bin, admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		rootCred: aws.Credentials{AccessKeyID: RootAccount, SecretAccessKey: "versity-root-secret"}, exited: make(chan struct{})}
	v.cmd = exec.Command(bin, "-p", v.URL[len("http://"):], "--admin-port", v.admin[len("http://"):],
		"-a", v.rootCred.AccessKeyID, "-s", v.rootCred.SecretAccessKey, "--iam-dir", filepath.Join(state, "iam"),
		"--health", "/health", "-q", "posix", "--versioning-dir", filepath.Join(state, "versions"), filepath.Join(state, "data"))
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(state + ".log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("versitygw (%s): %w", bin, err)
	}
	go func() { v.cmd.Wait(); close(v.exited) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-v.exited:
			return nil, fmt.Errorf("versitygw exited at once on %s (port taken?); see %s", v.URL, logf.Name())
		default:
		}
		if resp, err := http.Get(v.URL + "/health"); err == nil {
			resp.Body.Close()
			return v, nil
		}
		if time.Now().After(deadline) {
			v.Stop()
			return nil, fmt.Errorf("versitygw did not answer on %s; see %s", v.URL, logf.Name())
		}
	}
}

// Stop ends the server.
func (v *Versity) Stop() {
	if v.cmd != nil && v.cmd.Process != nil {
		syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
		<-v.exited
	}
}

// S3 returns an S3 client with the root user's credentials, for setting up and checking what was delivered.
func (v *Versity) S3() *s3.Client {
	return s3.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.StaticCredentialsProvider{Value: v.rootCred}, BaseEndpoint: aws.String(v.URL)},
		func(o *s3.Options) { o.UsePathStyle = true })
}

// AddUser creates a user with only the rights bucket policies give it ("user" role).
func (v *Versity) AddUser(access, secret string) error {
	return v.adminRun("create-user", "-a", access, "-s", secret, "-r", "user")
}

// AddBucket creates a bucket owned by account (a user's access key, or RootAccount) and lets writer put objects
// in it, and nothing else: the guide's PutObject/PutObjectAcl-only grant, as a bucket policy.
func (v *Versity) AddBucket(ctx context.Context, bucket, account, writer string) error {
	if err := v.adminRun("create-bucket", "--owner", account, "--bucket", bucket); err != nil {
		return err
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":[%q]},"Action":["s3:PutObject","s3:PutObjectAcl"],"Resource":"arn:aws:s3:::%s/*"}]}`,
		writer, bucket)
	_, err := v.S3().PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(policy)})
	return err
}

func (v *Versity) adminRun(args ...string) error {
	out, err := exec.Command(v.bin, append([]string{"admin", "-a", v.rootCred.AccessKeyID, "-s", v.rootCred.SecretAccessKey,
		"--er", v.admin}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("versitygw admin %v: %w: %s", args, err, out)
	}
	return nil
}
