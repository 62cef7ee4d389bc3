package customerkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/test/backend"
)

// TerraformMirror finds the local provider mirror that holds hashicorp/aws 5.x for this platform: the
// directory WIVAUDIT_TF_MIRROR names, or one up to four levels below / holding registry.terraform.io (as .ci/run
// finds it with `find / -maxdepth 4 -name registry.terraform.io`). No registry needs to be reachable.
func TerraformMirror() (string, error) {
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

// Module is an application of the kit's Terraform module: a root module in Dir that calls it with these
// variables (an empty one keeps the module's default).
type Module struct {
	Source string // the module's folder, deploy/customer/terraform
	Dir    string // the root module's folder: main.tf, the CLI configuration, the state and terraform.log
	Mirror string // the provider mirror (TerraformMirror)

	ExternalID, TrustedPrincipal, RoleName, BucketName string
}

// rootModule calls the kit's module against moto. Credentials and the External ID come from the environment,
// never from a file.
const rootModule = `
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
  role_name         = %[4]q
%[5]s  # No lifecycle rule: after writing one, the provider waits about a minute until S3 shows it steadily.
  # Terraform still validates the rule's block.
  noncurrent_version_expiration_days = 0
}

output "bucket_name" { value = module.wiv_audit_logs.bucket_name }
output "role_arn" { value = module.wiv_audit_logs.role_arn }
output "region" { value = module.wiv_audit_logs.region }
`

// cliConfig is the Terraform CLI configuration that takes the hashicorp providers from the mirror.
const cliConfig = "provider_installation {\n  filesystem_mirror {\n    path    = %q\n    include = [\"registry.terraform.io/hashicorp/*\"]\n  }\n}\n"

// CLIConfig is the path of the Terraform CLI configuration ApplyModule writes (TF_CLI_CONFIG_FILE).
func (mod Module) CLIConfig() string { return filepath.Join(mod.Dir, "terraform.rc") }

// ApplyModule runs terraform init and apply with the administrator's credentials, and returns the module's
// outputs. Terraform's output goes to Dir/terraform.log; an error ends with its last lines.
func ApplyModule(ctx context.Context, m *backend.Moto, mod Module) (Destination, error) {
	tf, err := exec.LookPath("terraform")
	if err != nil {
		return Destination{}, fmt.Errorf("terraform is not on PATH: install Terraform 1.x (the HashiCorp release zip or its Debian package): %w", err)
	}
	source, err := filepath.Abs(mod.Source)
	if err != nil {
		return Destination{}, err
	}
	if err := os.MkdirAll(mod.Dir, 0o700); err != nil {
		return Destination{}, err
	}
	bucket := ""
	if mod.BucketName != "" {
		bucket = fmt.Sprintf("  bucket_name       = %q\n", mod.BucketName)
	}
	main := fmt.Sprintf(rootModule, m.URL, source, mod.TrustedPrincipal, mod.RoleName, bucket)
	if err := os.WriteFile(filepath.Join(mod.Dir, "main.tf"), []byte(main), 0o600); err != nil {
		return Destination{}, err
	}
	if err := os.WriteFile(mod.CLIConfig(), []byte(fmt.Sprintf(cliConfig, mod.Mirror)), 0o600); err != nil {
		return Destination{}, err
	}
	logFile, err := os.OpenFile(filepath.Join(mod.Dir, "terraform.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return Destination{}, err
	}
	defer logFile.Close()
	env := append(os.Environ(), m.AdminEnv()...)
	env = append(env, "TF_CLI_CONFIG_FILE="+mod.CLIConfig(), "TF_IN_AUTOMATION=1", "TF_INPUT=0", "CHECKPOINT_DISABLE=1",
		"TF_VAR_external_id="+mod.ExternalID)
	terraform := func(args ...string) ([]byte, error) {
		tctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(tctx, tf, append(args, "-no-color")...)
		cmd.Dir, cmd.Env = mod.Dir, env
		var out, both bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &both
		if args[0] != "output" {
			cmd.Stdout = &both
		}
		err := cmd.Run()
		fmt.Fprintf(logFile, "$ terraform %s\n%s%s", strings.Join(args, " "), both.Bytes(), out.Bytes())
		if err != nil {
			return nil, fmt.Errorf("terraform %s in %s: %w\n%s", args[0], mod.Dir, err, lastLines(both.String(), 30))
		}
		return out.Bytes(), nil
	}
	if _, err := terraform("init", "-input=false"); err != nil {
		return Destination{}, err
	}
	if _, err := terraform("apply", "-auto-approve", "-input=false"); err != nil {
		return Destination{}, err
	}
	data, err := terraform("output", "-json")
	if err != nil {
		return Destination{}, err
	}
	var values map[string]struct{ Value string }
	if err := json.Unmarshal(data, &values); err != nil {
		return Destination{}, fmt.Errorf("terraform output: %w", err)
	}
	out := map[string]string{}
	for k, v := range values {
		out[k] = v.Value
	}
	return Destination{Bucket: out["bucket_name"], RoleARN: out["role_arn"], Region: out["region"], ExternalID: mod.ExternalID,
		Outputs: out}, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... %d lines before ...", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
