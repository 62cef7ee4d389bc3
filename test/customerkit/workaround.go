package customerkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/wiv/out_wivaudit/test/backend"
)

// Workaround is one change made to what the kit created, because moto behaves otherwise than AWS: what moto
// does, and what was changed to get past it. Nothing else of the kit's resources is ever changed.
type Workaround struct {
	Behaviour string
	Change    string
}

func (w Workaround) String() string { return "moto workaround: " + w.Behaviour + "; " + w.Change }

// FixRolePolicyQuoting works around moto's CloudFormation storing a role's inline policy as Python's repr of
// the document (single quotes), which makes every S3 call of that role fail with 500: it puts the same
// document back as JSON with IAM PutRolePolicy, only the quoting changed. A policy stored as JSON is left
// alone (nil).
func FixRolePolicyQuoting(ctx context.Context, m *backend.Moto, role, policy string) (*Workaround, error) {
	ic := m.IAM()
	rp, err := ic.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(policy)})
	if err != nil {
		return nil, fmt.Errorf("role %s policy %s: %w", role, policy, err)
	}
	fixed, needed, err := requoted(PlainPolicy(aws.ToString(rp.PolicyDocument)))
	if err != nil || !needed {
		return nil, err
	}
	if _, err := ic.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(policy),
		PolicyDocument: aws.String(fixed)}); err != nil {
		return nil, fmt.Errorf("role %s policy %s: %w", role, policy, err)
	}
	return &Workaround{
		Behaviour: "moto's CloudFormation stores a role's inline policy as Python's repr of the document (single quotes), which fails every S3 call of the role with 500",
		Change:    fmt.Sprintf("put the inline policy %s of role %s back as JSON (only the quotes changed)", policy, role),
	}, nil
}

// requoted returns a policy document stored as Python's repr as JSON, and whether it had to change it.
func requoted(stored string) (string, bool, error) {
	if json.Valid([]byte(stored)) {
		return stored, false, nil
	}
	fixed := strings.ReplaceAll(stored, "'", `"`)
	if !json.Valid([]byte(fixed)) {
		return "", false, fmt.Errorf("a policy neither JSON nor JSON once its quotes are changed: %s", stored)
	}
	return fixed, true, nil
}

// DropTLSOnlyDeny works around moto applying a bucket policy's Deny without its conditions: the kit's Deny of
// requests without TLS (aws:SecureTransport false) then refuses every request, where S3 lets the platform's
// HTTPS requests through, and moto serves plain HTTP. It removes that statement from the bucket's policy (the
// policy itself when nothing else is left). A bucket without such a statement is left alone (nil).
func DropTLSOnlyDeny(ctx context.Context, m *backend.Moto, bucket string) (*Workaround, error) {
	sc := m.S3()
	got, err := sc.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucketPolicy" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s policy: %w", bucket, err)
	}
	rest, dropped, err := withoutTLSOnlyDeny(aws.ToString(got.Policy))
	if err != nil {
		return nil, fmt.Errorf("bucket %s policy: %w", bucket, err)
	}
	if len(dropped) == 0 {
		return nil, nil
	}
	change := fmt.Sprintf("removed the statement %s from the policy of bucket %s", strings.Join(dropped, ", "), bucket)
	if rest == "" {
		_, err = sc.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(bucket)})
		change = fmt.Sprintf("deleted the policy of bucket %s, whose only statement %s it was", bucket, dropped[0])
	} else {
		_, err = sc.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(rest)})
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s policy: %w", bucket, err)
	}
	return &Workaround{
		Behaviour: "moto applies a bucket policy's Deny without its conditions, so the TLS-only Deny (aws:SecureTransport false) refuses every request; S3 lets the platform's HTTPS requests through, and moto serves plain HTTP",
		Change:    change,
	}, nil
}

// withoutTLSOnlyDeny returns a bucket policy without its TLS-only Deny statements ("" when none is left), and
// the Sids of those it removed.
func withoutTLSOnlyDeny(policy string) (string, []string, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(policy), &doc); err != nil {
		return "", nil, err
	}
	var statements []json.RawMessage
	if err := json.Unmarshal(doc["Statement"], &statements); err != nil {
		statements = []json.RawMessage{doc["Statement"]}
	}
	var kept []json.RawMessage
	var dropped []string
	for _, raw := range statements {
		var s Statement
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", nil, fmt.Errorf("statement %s: %w", raw, err)
		}
		if s.tlsOnlyDeny() {
			dropped = append(dropped, fmt.Sprintf("%q", s.Sid))
			continue
		}
		kept = append(kept, raw)
	}
	if len(dropped) == 0 {
		return policy, nil, nil
	}
	if len(kept) == 0 {
		return "", dropped, nil
	}
	doc["Statement"], _ = json.Marshal(kept)
	rest, err := json.Marshal(doc)
	return string(rest), dropped, err
}

// PolicyName is the name of the role's inline policy in the template and the module.
const PolicyName = "audit-logs-write"

// Apply applies each workaround to the role and bucket the kit made for d, and returns those that changed
// something.
func Apply(ctx context.Context, m *backend.Moto, d Destination) ([]Workaround, error) {
	var applied []Workaround
	for _, fix := range []func() (*Workaround, error){
		func() (*Workaround, error) { return FixRolePolicyQuoting(ctx, m, d.RoleName(), PolicyName) },
		func() (*Workaround, error) { return PutIgnoredBucketSettings(ctx, m, d.Bucket) },
		func() (*Workaround, error) { return DropTLSOnlyDeny(ctx, m, d.Bucket) },
	} {
		w, err := fix()
		if err != nil {
			return applied, err
		}
		if w != nil {
			applied = append(applied, *w)
		}
	}
	return applied, nil
}
