package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/customerkit"
	"github.com/wiv/out_wivaudit/upload"
)

// kitDir is the customer setup kit, relative to this package.
const kitDir = "../deploy/customer"

// parsePolicy reads a policy document as IAM or S3 returns it.
func parsePolicy(t *testing.T, what, doc string) customerkit.Policy {
	t.Helper()
	p, err := customerkit.ParsePolicy(doc)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return p
}

// workarounds applies the moto workarounds to what the kit made for d (customerkit.Apply), and logs them.
func (e *env) workarounds(ctx context.Context, d customerkit.Destination) {
	e.t.Helper()
	applied, err := customerkit.Apply(ctx, e.moto, d)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, w := range applied {
		e.t.Log(w)
	}
}

// checkRole checks, from what IAM stores, that the kit's role trusts exactly the platform with the External ID
// (guide step 3.2.2) and may only put objects into the bucket (step 3.2.4), through one inline policy.
func (e *env) checkRole(ctx context.Context, d customerkit.Destination) {
	t := e.t
	t.Helper()
	ic := e.moto.IAM()
	name := d.RoleName()
	role, err := ic.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	trust := parsePolicy(t, "trust policy", aws.ToString(role.Role.AssumeRolePolicyDocument))
	if len(trust.Statement) != 1 {
		t.Fatalf("trust policy has %d statements, want 1", len(trust.Statement))
	}
	s := trust.Statement[0]
	if s.Effect != "Allow" || s.Principal.AWS != e.p.UserARN || !slices.Equal(s.Action, customerkit.StringList{"sts:AssumeRole"}) ||
		s.Condition["StringEquals"]["sts:ExternalId"] != d.ExternalID || len(s.Condition) != 1 {
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
	if !slices.Equal(names.PolicyNames, []string{customerkit.PolicyName}) || len(attached.AttachedPolicies) != 0 {
		t.Fatalf("role policies: inline %v, attached %d; want only the inline audit-logs-write", names.PolicyNames, len(attached.AttachedPolicies))
	}
	rp, err := ic.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(customerkit.PolicyName)})
	if err != nil {
		t.Fatal(err)
	}
	doc := customerkit.PlainPolicy(aws.ToString(rp.PolicyDocument))
	perms := parsePolicy(t, "permissions policy", doc)
	want := fmt.Sprintf("arn:aws:s3:::%s/*", d.Bucket)
	if len(perms.Statement) != 1 || perms.Statement[0].Effect != "Allow" ||
		!slices.Equal(perms.Statement[0].Action, customerkit.StringList{"s3:PutObject", "s3:PutObjectAcl"}) ||
		!slices.Equal(perms.Statement[0].Resource, customerkit.StringList{want}) {
		t.Errorf("permissions policy: want only Allow s3:PutObject, s3:PutObjectAcl on %s; got %s", want, doc)
	}
	// The trust condition holds on the role as created: a wrong External ID is refused.
	_, err = e.moto.STS(e.p).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(d.RoleARN),
		RoleSessionName: aws.String("kit-test"), ExternalId: aws.String("not-" + d.ExternalID)})
	if err == nil {
		t.Errorf("AssumeRole of %s with a wrong External ID succeeded", d.RoleARN)
	}
}

// deliverTo runs the real plugin through the host with one output for one organisation whose destination is d,
// as the platform would after the customer submitted it, and checks that every record landed in d's bucket.
func (e *env) deliverTo(d customerkit.Destination) map[string][]string {
	t := e.t
	t.Helper()
	const org = "3f7539ad-7f8b-4688-aee0-b9dbf2db728e"
	conf := e.config("kit.conf", map[string]string{"Org_ID": org, "Bucket": d.Bucket, "Role_ARN": d.RoleARN,
		"External_ID": d.ExternalID, "Region": d.Region, "Unlisted_Orgs": ""})
	rng := rand.New(rand.NewPCG(31, 32))
	events := genEventsFor(t, 300, rng, "kit-", []string{org})
	r := e.runToEnd(conf, e.input("kit.chunks", chunkEvents(events, rng, 30)))
	if r.ExitCode != 0 || r.Summary("error") != 0 || r.Summary("dropped") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	got := e.bucketRecords(d.Bucket)
	for _, ev := range events {
		if len(got[ev.id]) != 1 {
			t.Errorf("%s is in %d objects of %s, want 1", ev.id, len(got[ev.id]), d.Bucket)
		}
	}
	if len(got) != len(events) {
		t.Errorf("%s holds %d records, want %d", d.Bucket, len(got), len(events))
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
	extID := kitExternalID("cfn")
	d, err := customerkit.DeployStack(ctx, e.moto, customerkit.Stack{Template: filepath.Join(kitDir, "cloudformation.yaml"),
		Name: "wiv-audit-logs", ExternalID: extID, TrustedPrincipal: e.p.UserARN, Encryption: "SSE-KMS", RoleName: "wiv-audit-logs-cfn"})
	if err != nil {
		t.Fatal(err)
	}
	out := d.Outputs
	if d.Bucket != "wiv-audit-logs-audit-logs" || d.RoleARN != "arn:aws:iam::123456789012:role/wiv-audit-logs-cfn" ||
		d.Region != "us-east-1" || out["ExternalId"] == "" || strings.Contains(out["ExternalId"], extID) || out["KmsKeyArn"] == "" {
		t.Fatalf("outputs: want the bucket named after the stack, the role, the region, a note on the External ID "+
			"that does not show it, and the KMS key; got %v", out)
	}
	// The role's inline policy is checked as the workaround leaves it, which changes only its quoting.
	e.workarounds(ctx, d)
	e.checkRole(ctx, d)

	// The key policy lets the role encrypt (guide step 3.2.4 with SSE-KMS) and the bucket defaults to the key.
	kp, err := e.moto.KeyPolicy(ctx, out["KmsKeyArn"])
	if err != nil {
		t.Fatal(err)
	}
	roleEncrypts := false
	for _, s := range parsePolicy(t, "key policy", kp).Statement {
		roleEncrypts = roleEncrypts || s.Effect == "Allow" && s.Principal.AWS == d.RoleARN &&
			slices.Contains(s.Action, "kms:GenerateDataKey") && slices.Contains(s.Action, "kms:Encrypt")
	}
	if !roleEncrypts {
		t.Errorf("the key policy does not let %s use kms:GenerateDataKey and kms:Encrypt: %s", d.RoleARN, kp)
	}
	enc, err := e.moto.S3().GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(d.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if def := enc.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault; string(def.SSEAlgorithm) != "aws:kms" ||
		aws.ToString(def.KMSMasterKeyID) != out["KmsKeyArn"] {
		t.Errorf("bucket encryption: want aws:kms with %s, got %s %s", out["KmsKeyArn"], def.SSEAlgorithm, aws.ToString(def.KMSMasterKeyID))
	}

	got := e.deliverTo(d)
	for _, keys := range got {
		head, err := e.moto.S3().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(d.Bucket), Key: aws.String(keys[0])})
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

// TestCustomerKitTerraform: deploy/customer/terraform applied with terraform (the hashicorp/aws provider from
// a local mirror) against moto, as a customer would with its defaults (SSE-S3); the bucket has
// what the guide's best practices ask, the role trusts only the platform with the External ID and may only put
// objects, and the real .so delivers through it.
func TestCustomerKitTerraform(t *testing.T) {
	mirror, err := customerkit.TerraformMirror()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	ctx := context.Background()
	extID := kitExternalID("tf")
	start := time.Now()
	d, err := customerkit.ApplyModule(ctx, e.moto, customerkit.Module{Source: filepath.Join(kitDir, "terraform"),
		Dir: filepath.Join(e.dir, "tf"), Mirror: mirror, ExternalID: extID, TrustedPrincipal: e.p.UserARN, RoleName: "wiv-audit-logs-tf"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("terraform init and apply: %s", time.Since(start).Round(time.Second))
	if d.Bucket != "wiv-audit-logs-"+backend.Account || d.RoleARN != "arn:aws:iam::"+backend.Account+":role/wiv-audit-logs-tf" || d.Region != "us-east-1" {
		t.Fatalf("outputs: want the bucket named after the account, the role and the region; got %+v", d.Outputs)
	}
	e.checkRole(ctx, d)
	e.checkBucket(ctx, d.Bucket)
	e.workarounds(ctx, d)
	got := e.deliverTo(d)
	t.Logf("module outputs %+v: %d records delivered through its role", d.Outputs, len(got))
}

// checkBucket checks what the guide's best practices ask of the bucket (step 3.1), as the Terraform module sets
// it: versioning, default encryption (SSE-S3), every public access blocked, objects owned by the bucket owner,
// and a policy refusing requests without TLS.
func (e *env) checkBucket(ctx context.Context, bucket string) {
	t := e.t
	t.Helper()
	sc, b := e.moto.S3(), aws.String(bucket)
	v, err := sc.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: b})
	if err != nil {
		t.Errorf("versioning: %v", err)
	} else if v.Status != s3types.BucketVersioningStatusEnabled {
		t.Errorf("versioning: want Enabled, got %q", v.Status)
	}
	enc, err := sc.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: b})
	if err != nil {
		t.Errorf("default encryption: %v", err)
	} else if a := enc.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm; a != s3types.ServerSideEncryptionAes256 {
		t.Errorf("default encryption: want AES256, got %s", a)
	}
	pab, err := sc.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: b})
	if err != nil {
		t.Errorf("public access block: %v", err)
	} else if c := pab.PublicAccessBlockConfiguration; !aws.ToBool(c.BlockPublicAcls) || !aws.ToBool(c.BlockPublicPolicy) ||
		!aws.ToBool(c.IgnorePublicAcls) || !aws.ToBool(c.RestrictPublicBuckets) {
		t.Errorf("public access block: want all four on, got BlockPublicAcls %v BlockPublicPolicy %v IgnorePublicAcls %v RestrictPublicBuckets %v",
			aws.ToBool(c.BlockPublicAcls), aws.ToBool(c.BlockPublicPolicy), aws.ToBool(c.IgnorePublicAcls), aws.ToBool(c.RestrictPublicBuckets))
	}
	own, err := sc.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: b})
	if err != nil {
		t.Errorf("object ownership: %v", err)
	} else if o := own.OwnershipControls.Rules[0].ObjectOwnership; o != s3types.ObjectOwnershipBucketOwnerEnforced {
		t.Errorf("object ownership: want BucketOwnerEnforced, got %s", o)
	}
	pol, err := sc.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: b})
	if err != nil {
		t.Fatalf("bucket policy: %v", err)
	}
	denies := false
	for _, s := range parsePolicy(t, "bucket policy", aws.ToString(pol.Policy)).Statement {
		denies = denies || s.Effect == "Deny" && s.Condition["Bool"]["aws:SecureTransport"] == "false" &&
			slices.Equal(s.Action, customerkit.StringList{"s3:*"}) && slices.Contains(s.Resource, "arn:aws:s3:::"+bucket+"/*")
	}
	if !denies {
		t.Errorf("bucket policy: want a Deny of s3:* without TLS on the bucket's objects: %s", aws.ToString(pol.Policy))
	}
}

// wivPrincipal is the platform's production identity, which customers' trust policies allow.
const wivPrincipal = "arn:aws:iam::613007325984:role/prod-aws-cdk-api-wf-opera-CustomerBucketSyncRole8E8-mUiiPZfuNHcc"

// readKit reads a file of the setup kit and replaces its placeholders (old, new pairs), each of which it must
// hold.
func readKit(t *testing.T, name string, replace ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kitDir, name))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(replace); i += 2 {
		if !strings.Contains(string(data), replace[i]) {
			t.Fatalf("%s does not hold %q", name, replace[i])
		}
	}
	return strings.NewReplacer(replace...).Replace(string(data))
}

// TestCustomerKitPolicyFiles: the guide's manual steps 3.1 to 3.2.4 with deploy/customer's policy files, their
// placeholders replaced as the guide says (and Wiv's principal by the test's platform identity); the real .so
// delivers through the role. The guide shows the same policies, and the template and module trust the same
// principal by default.
func TestCustomerKitPolicyFiles(t *testing.T) {
	guide, err := os.ReadFile("../docs/customer-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"trust-policy.json", "permissions-policy.json"} {
		if !strings.Contains(string(guide), "```json\n"+readKit(t, name)+"```") {
			t.Errorf("docs/customer-guide.md does not show %s as it is", name)
		}
	}
	for _, name := range []string{"cloudformation.yaml", "terraform/variables.tf"} {
		if !strings.Contains(readKit(t, name), wivPrincipal) {
			t.Errorf("%s does not trust %s by default", name, wivPrincipal)
		}
	}

	e := newEnv(t)
	ctx := context.Background()
	d := customerkit.Destination{Bucket: "kit-cli-audit-logs", Region: "us-east-1", ExternalID: kitExternalID("cli")}
	trust := readKit(t, "trust-policy.json", wivPrincipal, e.p.UserARN, "YOUR-EXTERNAL-ID-HERE", d.ExternalID)
	perms := readKit(t, "permissions-policy.json", "your-company-audit-logs", d.Bucket)
	if _, err := e.moto.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(d.Bucket)}); err != nil {
		t.Fatal(err)
	}
	ic := e.moto.IAM()
	role, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("wiv-audit-logs-cli"), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	d.RoleARN = aws.ToString(role.Role.Arn)
	if _, err := ic.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("wiv-audit-logs-cli"),
		PolicyName: aws.String("audit-logs-write"), PolicyDocument: aws.String(perms)}); err != nil {
		t.Fatal(err)
	}
	e.checkRole(ctx, d)
	e.deliverTo(d)
}

// TestCustomerGuideCitations: the customer guide has a heading for every step and an anchor for every
// troubleshooting item that the plugin's messages and the wivaudit command cite.
func TestCustomerGuideCitations(t *testing.T) {
	guide, err := os.ReadFile("../docs/customer-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"3.1", "3.2", "3.2.1", "3.2.2", "3.2.3", "3.2.4", "3.3"} {
		if !regexp.MustCompile(`(?m)^#+ Step ` + regexp.QuoteMeta(step) + `: `).Match(guide) {
			t.Errorf("no heading for step %s", step)
		}
	}
	// The problems the plugin and wivaudit check name, then the checklist's finer items.
	for _, item := range []string{string(upload.WrongExternalID), string(upload.RoleRefused), string(upload.WriteDenied),
		string(upload.NoSuchBucket), string(upload.WrongRegion), string(upload.KMSDenied), string(upload.ACLsDisabled),
		string(upload.BucketOwner), "wrong-external-id", "trust-policy-principal", "missing-put-permissions",
		"bucket-policy-denies", "no-logs"} {
		if !regexp.MustCompile(`(?m)^#+ <a id="` + item + `"></a>` + item + `: `).Match(guide) {
			t.Errorf("no troubleshooting item %q", item)
		}
	}
}
