package backend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// CloudFormation returns a CloudFormation client with the administrator's credentials, to deploy the customer
// setup kit's template.
func (m *Moto) CloudFormation() *cloudformation.Client {
	return cloudformation.NewFromConfig(m.clientConfig(m.admin))
}

// STS returns an STS client with the platform's credentials: the identity customers' trust policies allow.
func (m *Moto) STS(p *Platform) *sts.Client {
	return sts.NewFromConfig(m.clientConfig(aws.Credentials{AccessKeyID: p.AccessKey, SecretAccessKey: p.SecretKey}))
}

// AdminEnv is the administrator's credentials as AWS_* variables, for tools run as separate processes
// (terraform), with nothing from this machine's AWS configuration.
func (m *Moto) AdminEnv() []string {
	return (&Platform{AccessKey: m.admin.AccessKeyID, SecretKey: m.admin.SecretAccessKey}).Env()
}

// KeyPolicy returns the default key policy of a KMS key as JSON. It asks KMS GetKeyPolicy with a request of
// its own: for a key made by moto's CloudFormation the answer holds the policy as a JSON object rather than a
// string, which the SDK's KMS client refuses to read.
func (m *Moto) KeyPolicy(ctx context.Context, keyID string) (string, error) {
	body, _ := json.Marshal(map[string]string{"KeyId": keyID, "PolicyName": "default"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+"/", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.GetKeyPolicy")
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, m.admin, req, hex.EncodeToString(sum[:]), "kms", "us-east-1", time.Now()); err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("KMS GetKeyPolicy %s: %s %s", keyID, resp.Status, data)
	}
	var out struct{ Policy json.RawMessage }
	if err := json.Unmarshal(data, &out); err != nil {
		return "", fmt.Errorf("KMS GetKeyPolicy %s: %w", keyID, err)
	}
	var text string
	if json.Unmarshal(out.Policy, &text) == nil {
		return text, nil
	}
	return string(out.Policy), nil
}
