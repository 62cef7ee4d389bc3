package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/upload"
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
		Principal principal
		Action    stringList
		Resource  stringList
		Condition map[string]map[string]string
	}
}

// principal is a policy's Principal: {"AWS": ARN} or "*".
type principal struct{ AWS string }

func (p *principal) UnmarshalJSON(b []byte) error {
	if string(b) == `"*"` {
		p.AWS = "*"
		return nil
	}
	return json.Unmarshal(b, (*struct{ AWS string })(p))
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

// plainPolicy undoes the URL encoding IAM returns documents in.
func plainPolicy(doc string) string {
	if plain, err := url.QueryUnescape(doc); err == nil && strings.HasPrefix(plain, "{") {
		return plain
	}
	return doc
}

func parsePolicy(t *testing.T, what, doc string) policyDoc {
	t.Helper()
	doc = plainPolicy(doc)
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
	doc := plainPolicy(normalize(aws.ToString(rp.PolicyDocument)))
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

// terraformMirror finds the local provider mirror that holds hashicorp/aws 5.x for this platform: the
// directory WIVAUDIT_TF_MIRROR names, or one up to four levels below / holding registry.terraform.io (as
// `find / -maxdepth 4 -name registry.terraform.io` would find it). No registry is reachable from the tests.
func terraformMirror() (string, error) {
	platform := runtime.GOOS + "_" + runtime.GOARCH
	holdsAWS := func(dir string) bool {
		found, _ := filepath.Glob(filepath.Join(dir, "registry.terraform.io/hashicorp/aws/5.*", platform))
		return len(found) > 0
	}
	if dir := os.Getenv("WIVAUDIT_TF_MIRROR"); dir != "" {
		if !holdsAWS(dir) {
			return "", fmt.Errorf("WIVAUDIT_TF_MIRROR=%s holds no registry.terraform.io/hashicorp/aws/5.*/%s", dir, platform)
		}
		return dir, nil
	}
	for _, pattern := range []string{"/*/registry.terraform.io", "/*/*/registry.terraform.io", "/*/*/*/registry.terraform.io"} {
		found, _ := filepath.Glob(pattern)
		for _, f := range found {
			if holdsAWS(filepath.Dir(f)) {
				return filepath.Dir(f), nil
			}
		}
	}
	return "", fmt.Errorf("no Terraform provider mirror with hashicorp/aws 5.x for %s: set WIVAUDIT_TF_MIRROR to a directory "+
		"holding registry.terraform.io/hashicorp/aws/5.x/%s (where the registry is reachable: "+
		"terraform providers mirror DIR in a module requiring hashicorp/aws ~> 5.0)", platform, platform)
}

// kitRootModule calls the kit's Terraform module against moto. Credentials and the External ID come from the
// environment, never from a file.
const kitRootModule = `
provider "aws" {
  region                      = "us-east-1"
  s3_use_path_style           = true
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  endpoints {
    s3  = %[1]q
    iam = %[1]q
    sts = %[1]q
    kms = %[1]q
  }
}

variable "external_id" {
  type      = string
  sensitive = true
}

module "wiv_audit_logs" {
  source            = %[2]q
  external_id       = var.external_id
  trusted_principal = %[3]q
  role_name         = "wiv-audit-logs-tf"
  # No lifecycle rule: after writing one, the provider waits about a minute until S3 shows it steadily, which
  # would double this test's time. Terraform still validates the rule's block.
  noncurrent_version_expiration_days = 0
}

output "bucket_name" { value = module.wiv_audit_logs.bucket_name }
output "role_arn" { value = module.wiv_audit_logs.role_arn }
output "region" { value = module.wiv_audit_logs.region }
`

// TestCustomerKitTerraform: deploy/customer/terraform applied with terraform (the hashicorp/aws provider from
// a local mirror) against moto, as a customer would with its defaults (SSE-S3); the bucket has
// what the guide's best practices ask, the role trusts only the platform with the External ID and may only put
// objects, and the real .so delivers through it.
func TestCustomerKitTerraform(t *testing.T) {
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Fatal("terraform is not on PATH: install Terraform 1.x (the HashiCorp release zip or its Debian package) to test the customer setup kit")
	}
	mirror, err := terraformMirror()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	ctx := context.Background()
	module, err := filepath.Abs(filepath.Join(kitDir, "terraform"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(e.dir, "tf")
	cli := filepath.Join(e.dir, "terraform.rc")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "main.tf"), []byte(fmt.Sprintf(kitRootModule, e.moto.URL, module, e.p.UserARN)), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path    = %q\n    include = [\"registry.terraform.io/hashicorp/*\"]\n  }\n}\n", mirror)
	if err := os.WriteFile(cli, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	extID := kitExternalID("tf")
	env := append(os.Environ(), e.moto.AdminEnv()...)
	env = append(env, "TF_CLI_CONFIG_FILE="+cli, "TF_IN_AUTOMATION=1", "TF_INPUT=0", "CHECKPOINT_DISABLE=1",
		"TF_VAR_external_id="+extID)
	terraform := func(args ...string) []byte {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(tctx, tf, append(args, "-no-color")...)
		cmd.Dir, cmd.Env = root, env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("terraform %s: %v\n%s\n%s", args[0], err, tail(string(out), 30), tail(stderr.String(), 30))
		}
		return out
	}
	start := time.Now()
	terraform("init", "-input=false")
	terraform("apply", "-auto-approve", "-input=false")
	t.Logf("terraform init and apply: %s", time.Since(start).Round(time.Second))
	var out map[string]struct{ Value string }
	if err := json.Unmarshal(terraform("output", "-json"), &out); err != nil {
		t.Fatal(err)
	}
	d := kitDestination{bucket: out["bucket_name"].Value, roleARN: out["role_arn"].Value, region: out["region"].Value, externalID: extID}
	if d.bucket != "wiv-audit-logs-"+backend.Account || d.roleARN != "arn:aws:iam::"+backend.Account+":role/wiv-audit-logs-tf" || d.region != "us-east-1" {
		t.Fatalf("outputs: want the bucket named after the account, the role and the region; got %+v", out)
	}
	e.checkRole(ctx, d, func(stored string) string { return stored })
	e.checkBucket(ctx, d.bucket)
	// moto applies a bucket policy's Deny without its conditions, so the TLS-only Deny refuses every request
	// (S3 lets the platform's HTTPS requests through). Delete it once checked.
	if _, err := e.moto.S3().DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(d.bucket)}); err != nil {
		t.Fatal(err)
	}
	got := e.deliverTo(d)
	t.Logf("module outputs %+v: %d records delivered through its role", out, len(got))
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
			slices.Equal(s.Action, stringList{"s3:*"}) && slices.Contains(s.Resource, "arn:aws:s3:::"+bucket+"/*")
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
	d := kitDestination{bucket: "kit-cli-audit-logs", region: "us-east-1", externalID: kitExternalID("cli")}
	trust := readKit(t, "trust-policy.json", wivPrincipal, e.p.UserARN, "YOUR-EXTERNAL-ID-HERE", d.externalID)
	perms := readKit(t, "permissions-policy.json", "your-company-audit-logs", d.bucket)
	if _, err := e.moto.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(d.bucket)}); err != nil {
		t.Fatal(err)
	}
	ic := e.moto.IAM()
	role, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("wiv-audit-logs-cli"), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	d.roleARN = aws.ToString(role.Role.Arn)
	if _, err := ic.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("wiv-audit-logs-cli"),
		PolicyName: aws.String("audit-logs-write"), PolicyDocument: aws.String(perms)}); err != nil {
		t.Fatal(err)
	}
	e.checkRole(ctx, d, func(stored string) string { return stored })
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
