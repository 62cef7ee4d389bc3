package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/upload"
)

// externalIDEnv holds the External ID when no flag gives it: flags show in ps.
const externalIDEnv = "WIVAUDIT_EXTERNAL_ID"

// checkFlags are the settings flags of check, by the [OUTPUT] key they stand for.
var checkFlags = map[string]string{
	"Org_ID": "--org", "Bucket": "--bucket", "Role_ARN": "--role-arn", "External_ID": "--external-id",
	"Region": "--region", "Key_Prefix": "--key-prefix", "Endpoint": "--endpoint", "STS_Endpoint": "--sts-endpoint",
	"Canned_ACL": "--canned-acl", "Request_Timeout": "--request-timeout", "Conditional_Writes": "--conditional-writes",
	"Destinations_File": "--destinations", "Role_Session_Name": "--role-session-name", "Account_ID": "--account-id",
	"Allow_Plain_HTTP": "--allow-plain-http",
}

func runCheck(e *env, c *command, args []string) int {
	fs := flags(e, c)
	v := map[string]*string{}
	for _, f := range []struct{ key, name, def, help string }{
		{"Org_ID", "org", "", "the organisation's org_id (required)"},
		{"Bucket", "bucket", "", "the bucket_name the customer submitted"},
		{"Role_ARN", "role-arn", "", "the role_arn the customer submitted; none: this process's own credentials write"},
		{"Account_ID", "account-id", "", "the 12-digit account that must own the bucket, as Account_ID (default: the account in --role-arn)"},
		{"Region", "region", "", "the bucket's region (default " + conf.DefaultRegion + "; with --destinations, for entries without one)"},
		{"Key_Prefix", "key-prefix", "", "the key prefix, ending in / (with --destinations, for entries without one)"},
		{"Endpoint", "endpoint", "", "S3 endpoint URL, as the plugin's Endpoint"},
		{"STS_Endpoint", "sts-endpoint", "", "STS endpoint URL, as the plugin's STS_Endpoint"},
		{"Canned_ACL", "canned-acl", conf.DefaultCannedACL, "canned ACL of the probe object, or none"},
		{"Request_Timeout", "request-timeout", conf.DefaultRequestTimeout, "time limit of each request, as Request_Timeout"},
		{"Role_Session_Name", "role-session-name", conf.DefaultRoleSessionName, "role session name, as Role_Session_Name"},
		{"Destinations_File", "destinations", "", "take the destination of --org from this destinations file"},
	} {
		v[f.key] = fs.String(f.name, f.def, f.help)
	}
	externalID := fs.String("external-id", "", "the external_id; shows in ps: prefer --external-id-file or $"+externalIDEnv)
	externalIDFile := fs.String("external-id-file", "", "a file holding the external_id")
	plainHTTP := fs.Bool("allow-plain-http", false, "allow http:// endpoints (local test servers), as Allow_Plain_HTTP")
	conditional := fs.Bool("conditional-writes", true, "send If-None-Match: * with the probe, as Conditional_Writes")
	probe := fs.Bool("write-probe", false, "write one small probe object into the bucket (it may be deleted afterwards)")
	if _, code, ok := parse(e, fs, args); !ok {
		return code
	}
	cfg, d, code := checkDestination(e, fs, v, *externalID, *externalIDFile, *plainHTTP, *conditional)
	if code != exitOK {
		return code
	}
	return check(e, cfg, d, *probe)
}

// checkDestination reads the destination to check, from the flags or the destinations file, with the
// plugin's own validation.
func checkDestination(e *env, fs *flag.FlagSet, v map[string]*string, externalID, externalIDFile string, plainHTTP, conditional bool) (*conf.Config, conf.Destination, int) {
	org, file := *v["Org_ID"], *v["Destinations_File"]
	if org == "" {
		return nil, conf.Destination{}, usageError(e, fs, "--org is required")
	}
	secret, err := readExternalID(externalID, externalIDFile, e.getenv(externalIDEnv))
	if err != nil {
		return nil, conf.Destination{}, usageError(e, fs, "%v", err)
	}
	settings := conf.Map{"Allow_Plain_HTTP": onOff(plainHTTP), "Conditional_Writes": onOff(conditional)}
	for key, val := range v {
		settings[key] = *val
	}
	if file != "" {
		if *v["Bucket"] != "" || *v["Role_ARN"] != "" || *v["Account_ID"] != "" || secret != "" {
			return nil, conf.Destination{}, usageError(e, fs, "--destinations takes bucket, role, account and External ID from the file: drop --bucket, --role-arn, --account-id and the External ID (--external-id, --external-id-file, $"+externalIDEnv+")")
		}
		settings["Org_ID"] = ""
		if settings["Destinations_File"], err = filepath.Abs(file); err != nil {
			return nil, conf.Destination{}, usageError(e, fs, "--destinations: %v", err)
		}
	} else {
		if *v["Bucket"] == "" {
			return nil, conf.Destination{}, usageError(e, fs, "--bucket (or --destinations) is required")
		}
		settings["External_ID"] = secret
	}
	cfg, err := conf.Parse(settings)
	if err != nil {
		for _, p := range problems(err) {
			fmt.Fprintf(e.stderr, "%s: %s\n", fs.Name(), inFlags(p.Error(), checkFlags))
		}
		return nil, conf.Destination{}, exitUsage
	}
	if file == "" {
		d, _ := cfg.Output()
		return cfg, d, exitOK
	}
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return nil, conf.Destination{}, exitUsage
	}
	dests, err := conf.ParseDestinations(data, cfg)
	if err != nil {
		for _, p := range problems(err) {
			fmt.Fprintf(e.stderr, "%s: %s: %v\n", fs.Name(), file, p)
		}
		return nil, conf.Destination{}, exitUsage
	}
	d, ok := dests[conf.OrgKey(org)]
	if !ok {
		fmt.Fprintf(e.stderr, "%s: organisation %s is not in %s\n", fs.Name(), org, file)
		return nil, conf.Destination{}, exitUsage
	}
	return cfg, d, exitOK
}

// readExternalID takes the External ID from the flag, the file or the environment: one of the flags at most.
func readExternalID(flagValue, file, envValue string) (string, error) {
	switch {
	case flagValue != "" && file != "":
		return "", fmt.Errorf("give the External ID once: --external-id or --external-id-file")
	case flagValue != "":
		return flagValue, nil
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--external-id-file: %w", err)
		}
		return strings.TrimSpace(string(data)), nil
	}
	return envValue, nil
}

// check runs the steps one after the other and stops at the first that fails, naming its problem.
func check(e *env, cfg *conf.Config, d conf.Destination, probe bool) int {
	out := e.stdout
	fmt.Fprintf(out, "destination: %s\n", d)
	clients, err := upload.New(e.ctx, cfg)
	if err != nil {
		fmt.Fprintf(out, "setup: FAILED: %v\nresult: %s\n", err, verdict[exitOurs])
		return exitOurs
	}
	arn, err := clients.Identity(e.ctx)
	if err != nil {
		return failed(e, "identity", err, upload.AdviseIdentity(err, d, cfg), d)
	}
	var creds aws.CredentialsProvider
	if d.RoleARN == "" {
		fmt.Fprintf(out, "identity: ok, %s; with no role_arn it writes the bucket itself\n", arn)
	} else {
		fmt.Fprintf(out, "identity: ok, %s; the role's trust policy must allow it as Principal (%s step 3.2.2)\n", arn, upload.GuideFile)
		if creds, err = clients.AssumeRole(e.ctx, d); err != nil {
			return failed(e, "assume role", err, upload.Advise(err, d, cfg), d)
		}
		fmt.Fprintf(out, "assume role: ok, %s with the External ID (not shown), session %s\n", d.RoleARN, cfg.RoleSessionName)
	}
	owner := "no bucket owner named (no role ARN, no --account-id)"
	if o := d.BucketOwner(); o != "" {
		owner = "bucket owner " + o
	}
	if !probe {
		fmt.Fprintf(out, "write: not tried; add --write-probe to write one small object into the bucket (%s)\n", owner)
		fmt.Fprintln(out, "result: ok")
		return exitOK
	}
	now := e.now()
	key := fmt.Sprintf("%s%s/wivaudit-delivery-check-%d.txt", d.KeyPrefix, d.OrgID, now.UnixMilli())
	body := fmt.Sprintf("Written by wivaudit check --write-probe at %s to check that audit logs can be delivered to this bucket. It holds no audit data and may be deleted.\n", now.UTC().Format("2006-01-02T15:04:05Z"))
	if err := clients.Probe(e.ctx, d, creds, key, []byte(body)); err != nil {
		return failed(e, "write", err, upload.Advise(err, d, cfg), d)
	}
	acl := cfg.CannedACL
	if acl == "" {
		acl = "none"
	}
	fmt.Fprintf(out, "write: ok, s3://%s/%s (If-None-Match: %s, ACL %s, %s); it holds no audit data and may be deleted\n",
		d.Bucket, key, map[bool]string{true: "*", false: "not sent"}[cfg.ConditionalWrites], acl, owner)
	fmt.Fprintln(out, "result: ok")
	return exitOK
}

// verdict is the last line of a check, by exit code.
var verdict = map[int]string{
	exitRefused: "the destination refuses: the fix is on the customer's side, at the guide step above (exit 1)",
	exitOurs:    "our side: this process's AWS credentials or settings (exit 3)",
	exitRetry:   "could not check: network, timeout or an unexpected answer; try again later (exit 4)",
}

// failed prints what a failed step of d means and returns its exit code. The server's answer may quote what
// it was sent, so d's External ID is taken out of it, as the plugin's log does.
func failed(e *env, step string, err error, a upload.Advice, d conf.Destination) int {
	out := e.stdout
	answer := upload.Describe(err)
	if d.ExternalID != "" {
		answer = strings.ReplaceAll(answer, d.ExternalID, "[redacted]")
	}
	fmt.Fprintf(out, "%s: FAILED: %s\n", step, answer)
	fmt.Fprintf(out, "problem: %s\n", a.Problem)
	if a.Check != "" {
		fmt.Fprintf(out, "check: %s\n", inFlags(a.Check, checkFlags))
	}
	if a.Step != "" {
		fmt.Fprintf(out, "guide: %s step %s\n", upload.GuideFile, a.Step)
	}
	code := exitFor(a)
	fmt.Fprintf(out, "result: %s\n", verdict[code])
	return code
}

// exitFor is the exit code of a failed step: the customer's side when the guide has a step for it, ours for
// credentials and our settings, and "try again" for the rest.
func exitFor(a upload.Advice) int {
	switch {
	case a.Step != "":
		return exitRefused
	case a.Problem == upload.NoCredentials, a.Problem == upload.CredentialsRefused,
		a.Problem == upload.ACLsDisabled, a.Problem == upload.ConditionalWrites:
		return exitOurs
	}
	return exitRetry
}
