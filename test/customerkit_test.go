package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// kitDir is the customer setup kit, relative to this package.
const kitDir = "../deploy/customer"

// kitDestination is what a customer submits in guide step 3.3, taken from the kit's outputs.
type kitDestination struct {
	bucket, roleARN, region, externalID string
}

// policyDoc is the part of an IAM policy document the kit's tests look at.
type policyDoc struct {
	Statement []struct {
		Effect    string
		Principal struct{ AWS string }
		Action    stringList
		Resource  stringList
		Condition map[string]map[string]string
	}
}

// stringList is an IAM policy field that may be one string or a list of them.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*l = stringList{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(l))
}

func parsePolicy(t *testing.T, what, doc string) policyDoc {
	t.Helper()
	if plain, err := url.QueryUnescape(doc); err == nil && strings.HasPrefix(plain, "{") {
		doc = plain // IAM returns documents URL-encoded
	}
	var p policyDoc
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("%s: %v: %s", what, err, doc)
	}
	return p
}

// checkRole checks, from what IAM stores, that the kit's role trusts exactly the platform with the External ID
// (guide step 3.2.2) and may only put objects into the bucket (step 3.2.4), through one inline policy. It
// returns that policy's document, read back through normalize.
func (e *env) checkRole(ctx context.Context, d kitDestination, normalize func(string) string) string {
	t := e.t
	t.Helper()
	ic := e.moto.IAM()
	name := d.roleARN[strings.LastIndex(d.roleARN, "/")+1:]
	role, err := ic.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	trust := parsePolicy(t, "trust policy", aws.ToString(role.Role.AssumeRolePolicyDocument))
	if len(trust.Statement) != 1 {
		t.Fatalf("trust policy has %d statements, want 1", len(trust.Statement))
	}
	s := trust.Statement[0]
	if s.Effect != "Allow" || s.Principal.AWS != e.p.UserARN || !slices.Equal(s.Action, stringList{"sts:AssumeRole"}) ||
		s.Condition["StringEquals"]["sts:ExternalId"] != d.externalID || len(s.Condition) != 1 {
		t.Errorf("trust policy: want Allow sts:AssumeRole to %s only with StringEquals sts:ExternalId; got %+v", e.p.UserARN, s)
	}
	names, err := ic.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	attached, err := ic.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names.PolicyNames, []string{"audit-logs-write"}) || len(attached.AttachedPolicies) != 0 {
		t.Fatalf("role policies: inline %v, attached %d; want only the inline audit-logs-write", names.PolicyNames, len(attached.AttachedPolicies))
	}
	rp, err := ic.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("audit-logs-write")})
	if err != nil {
		t.Fatal(err)
	}
	doc := normalize(aws.ToString(rp.PolicyDocument))
	perms := parsePolicy(t, "permissions policy", doc)
	want := fmt.Sprintf("arn:aws:s3:::%s/*", d.bucket)
	if len(perms.Statement) != 1 || perms.Statement[0].Effect != "Allow" ||
		!slices.Equal(perms.Statement[0].Action, stringList{"s3:PutObject", "s3:PutObjectAcl"}) ||
		!slices.Equal(perms.Statement[0].Resource, stringList{want}) {
		t.Errorf("permissions policy: want only Allow s3:PutObject, s3:PutObjectAcl on %s; got %s", want, doc)
	}
	// The trust condition holds on the role as created: a wrong External ID is refused.
	_, err = e.moto.STS(e.p).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(d.roleARN),
		RoleSessionName: aws.String("kit-test"), ExternalId: aws.String("not-" + d.externalID)})
	if err == nil {
		t.Errorf("AssumeRole of %s with a wrong External ID succeeded", d.roleARN)
	}
	return doc
}

// deliverTo runs the real plugin through the host with one output for one organisation whose destination is d,
// as the platform would after the customer submitted it, and checks that every record landed in d's bucket.
func (e *env) deliverTo(d kitDestination) map[string][]string {
	t := e.t
	t.Helper()
	const org = "3f7539ad-7f8b-4688-aee0-b9dbf2db728e"
	conf := e.config("kit.conf", map[string]string{"Org_ID": org, "Bucket": d.bucket, "Role_ARN": d.roleARN,
		"External_ID": d.externalID, "Region": d.region, "Unlisted_Orgs": ""})
	rng := rand.New(rand.NewPCG(31, 32))
	events := genEventsFor(t, 300, rng, "kit-", []string{org})
	r := e.runToEnd(conf, e.input("kit.chunks", chunkEvents(events, rng, 30)))
	if r.ExitCode != 0 || r.Summary("error") != 0 || r.Summary("dropped") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	got := e.bucketRecords(d.bucket)
	for _, ev := range events {
		if len(got[ev.id]) != 1 {
			t.Errorf("%s is in %d objects of %s, want 1", ev.id, len(got[ev.id]), d.bucket)
		}
	}
	if len(got) != len(events) {
		t.Errorf("%s holds %d records, want %d", d.bucket, len(got), len(events))
	}
	return got
}

func kitExternalID(tool string) string {
	id := fmt.Sprintf("kit-%s-%08x-%08x", tool, rand.Uint32(), rand.Uint32())
	secret(id)
	return id
}

// TestCustomerKitCloudFormation: deploy/customer/cloudformation.yaml, with SSE-KMS, deployed on moto's
// CloudFormation as a customer would (TrustedPrincipal set to the test's platform identity, RoleName other than
// the one newEnv's customer has taken); the role it creates
// trusts only that identity with the External ID and may only put objects; the real .so delivers through it.
func TestCustomerKitCloudFormation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	template, err := os.ReadFile(filepath.Join(kitDir, "cloudformation.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	extID := kitExternalID("cfn")
	cf := e.moto.CloudFormation()
	param := func(k, v string) cftypes.Parameter {
		return cftypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)}
	}
	if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    aws.String("wiv-audit-logs"),
		TemplateBody: aws.String(string(template)),
		Parameters: []cftypes.Parameter{param("ExternalId", extID), param("TrustedPrincipal", e.p.UserARN),
			param("Encryption", "SSE-KMS"), param("RoleName", "wiv-audit-logs-cfn")},
		Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityNamedIam},
	}); err != nil {
		t.Fatal(err)
	}
	stacks, err := cloudformation.NewStackCreateCompleteWaiter(cf, func(o *cloudformation.StackCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
	}).WaitForOutput(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("wiv-audit-logs")}, time.Minute)
	if err != nil {
		t.Fatalf("stack: %v", err)
	}
	out := map[string]string{}
	for _, o := range stacks.Stacks[0].Outputs {
		out[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	d := kitDestination{bucket: out["BucketName"], roleARN: out["RoleArn"], region: out["Region"], externalID: extID}
	if d.bucket != "wiv-audit-logs-audit-logs" || d.roleARN != "arn:aws:iam::123456789012:role/wiv-audit-logs-cfn" ||
		d.region != "us-east-1" || out["ExternalId"] == "" || strings.Contains(out["ExternalId"], extID) || out["KmsKeyArn"] == "" {
		t.Fatalf("outputs: want the bucket named after the stack, the role, the region, a note on the External ID "+
			"that does not show it, and the KMS key; got %v", out)
	}

	// moto's CloudFormation stores the role's inline policy as Python's repr of the document (single quotes),
	// which makes every S3 call of that role fail with 500. Read it back, check it, and put the same
	// document again as JSON with IAM PutRolePolicy: only the quoting changes, never the template's content.
	fixed := e.checkRole(ctx, d, func(stored string) string { return strings.ReplaceAll(stored, "'", `"`) })
	name := d.roleARN[strings.LastIndex(d.roleARN, "/")+1:]
	if _, err := e.moto.IAM().PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name),
		PolicyName: aws.String("audit-logs-write"), PolicyDocument: aws.String(fixed)}); err != nil {
		t.Fatal(err)
	}

	// The key policy lets the role encrypt (guide step 3.2.4 with SSE-KMS) and the bucket defaults to the key.
	kp, err := e.moto.KeyPolicy(ctx, out["KmsKeyArn"])
	if err != nil {
		t.Fatal(err)
	}
	roleEncrypts := false
	for _, s := range parsePolicy(t, "key policy", kp).Statement {
		roleEncrypts = roleEncrypts || s.Effect == "Allow" && s.Principal.AWS == d.roleARN &&
			slices.Contains(s.Action, "kms:GenerateDataKey") && slices.Contains(s.Action, "kms:Encrypt")
	}
	if !roleEncrypts {
		t.Errorf("the key policy does not let %s use kms:GenerateDataKey and kms:Encrypt: %s", d.roleARN, kp)
	}
	enc, err := e.moto.S3().GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(d.bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if def := enc.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault; string(def.SSEAlgorithm) != "aws:kms" ||
		aws.ToString(def.KMSMasterKeyID) != out["KmsKeyArn"] {
		t.Errorf("bucket encryption: want aws:kms with %s, got %s %s", out["KmsKeyArn"], def.SSEAlgorithm, aws.ToString(def.KMSMasterKeyID))
	}

	got := e.deliverTo(d)
	for _, keys := range got {
		head, err := e.moto.S3().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(d.bucket), Key: aws.String(keys[0])})
		if err != nil {
			t.Fatal(err)
		}
		if string(head.ServerSideEncryption) != "aws:kms" {
			t.Errorf("%s is encrypted with %q, want aws:kms", keys[0], head.ServerSideEncryption)
		}
		break
	}
	t.Logf("stack outputs %v: %d records delivered through the stack's role", out, len(got))
}
