package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// settingNames finds the [OUTPUT] keys check has flags for, spelt as settings.
var settingNames = func() *regexp.Regexp {
	var names []string
	for key := range checkFlags {
		names = append(names, key)
	}
	return regexp.MustCompile(`\b(` + strings.Join(names, "|") + `)\b`)
}()

// TestCheckNamesItsFlags: check's messages name its flags, never the plugin's settings they stand for.
func TestCheckNamesItsFlags(t *testing.T) {
	dests := filepath.Join(t.TempDir(), "dests.json")
	os.WriteFile(dests, []byte(`[{"org_id":"org-a","bucket_name":"bucket-a","role_arn":"arn:aws:iam::123456789012:role/r","external_id":"`+secretID+`"}]`), 0o600)
	role := "arn:aws:iam::123456789012:role/r"
	cases := []struct {
		args []string
		says string
	}{
		{[]string{"--bucket", "b-1", "--role-arn", role, "--endpoint", "http://127.0.0.1:1"},
			`--endpoint: "http://127.0.0.1:1" uses plain HTTP, which would send audit data and signed requests unencrypted; use https, or set --allow-plain-http for a local test server`},
		{[]string{"--bucket", "b-1", "--role-arn", role}, "--external-id: not set although --role-arn is"},
		{[]string{"--bucket", "b-1", "--role-arn", role, "--external-id", "x1", "--account-id", "1234"}, `--account-id: "1234" is not an AWS account ID`},
		{[]string{"--destinations", dests, "--account-id", "444455556666"}, "drop --bucket, --role-arn, --account-id"},
		{[]string{"--bucket", "b-1", "--role-arn", role, "--external-id", "x1", "--conditional-writes=maybe"}, `invalid boolean value "maybe" for -conditional-writes`},
	}
	for _, tc := range cases {
		code, out, errOut := runCmd(t, nil, append([]string{"check", "--org", "org-a"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(errOut, tc.says) {
			t.Errorf("check %s: exit %d, want %d and %q in:\n%s%s", strings.Join(tc.args, " "), code, exitUsage, tc.says, out, errOut)
		}
		// The usage after a usage error relates each flag to its setting; the messages before it name flags.
		messages, _, _ := strings.Cut(errOut, "usage: wivaudit check")
		if m := settingNames.FindString(out + messages); m != "" {
			t.Errorf("check %s names the setting %s, not its flag %s:\n%s%s", strings.Join(tc.args, " "), m, checkFlags[m], out, messages)
		}
	}
	if got := inFlags("set Conditional_Writes off, or Conditional_Writes on, with STS_Endpoint and Org_ID_Key", checkFlags); got !=
		"set --conditional-writes=false, or --conditional-writes, with --sts-endpoint and Org_ID_Key" {
		t.Errorf("inFlags: %q", got)
	}
}

// fakeAWS answers STS's GetCallerIdentity and AssumeRole, and S3's PutObject as put says; it records the
// expected bucket owner each PutObject named.
type fakeAWS struct {
	*httptest.Server
	put func(owner string) (int, string)

	mu     sync.Mutex
	owners []string
}

func newFakeAWS(t *testing.T, put func(owner string) (int, string)) *fakeAWS {
	f := &fakeAWS{put: put}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		if r.Method == http.MethodPut {
			owner := r.Header.Get("X-Amz-Expected-Bucket-Owner")
			f.mu.Lock()
			f.owners = append(f.owners, owner)
			f.mu.Unlock()
			status, body := f.put(owner)
			w.WriteHeader(status)
			fmt.Fprint(w, body)
			return
		}
		r.ParseForm()
		switch r.Form.Get("Action") {
		case "GetCallerIdentity":
			fmt.Fprint(w, `<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::613007325984:user/platform</Arn><Account>613007325984</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`)
		case "AssumeRole":
			fmt.Fprint(w, `<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/wivaudit</Arn><AssumedRoleId>AROAEXAMPLE:wivaudit</AssumedRoleId></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>`)
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// bucketOf answers PutObject as S3 does for a bucket owned by account: a bare 403 to an upload naming
// another expected owner.
func bucketOf(account string) func(string) (int, string) {
	return func(owner string) (int, string) {
		if owner != "" && owner != account {
			return http.StatusForbidden, `<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`
		}
		return http.StatusOK, ""
	}
}

// TestCheckAccountID: the probe names the bucket's expected owner as uploads do (Account_ID, or else the
// role's account), so --account-id checks the owner pinning before going live.
func TestCheckAccountID(t *testing.T) {
	setTestCredentials(t)
	role := "arn:aws:iam::123456789012:role/r"
	cases := []struct {
		name, bucketOwner, accountID string
		code                         int
		says                         []string
	}{
		{"the role's account owns the bucket", "123456789012", "", exitOK,
			[]string{"write: ok, s3://b-1/org-a/wivaudit-delivery-check-", "bucket owner 123456789012)", "result: ok"}},
		{"another account owns the bucket, named", "444455556666", "444455556666", exitOK,
			[]string{"write: ok", "bucket owner 444455556666)"}},
		{"another account owns the bucket, not named", "444455556666", "", exitRefused,
			[]string{"write: FAILED: 403 AccessDenied", "problem: bucket-owner-or-write-denied", "check: the bucket is not in account 123456789012 (the role's)"}},
		{"the account named does not own the bucket", "123456789012", "444455556666", exitRefused,
			[]string{"problem: bucket-owner-or-write-denied", "check: the bucket is not in account 444455556666"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			aws := newFakeAWS(t, bucketOf(tc.bucketOwner))
			args := []string{"check", "--org", "org-a", "--bucket", "b-1", "--role-arn", role, "--endpoint", aws.URL,
				"--sts-endpoint", aws.URL, "--allow-plain-http", "--write-probe"}
			if tc.accountID != "" {
				args = append(args, "--account-id", tc.accountID)
			}
			code, out, errOut := runCmd(t, map[string]string{externalIDEnv: secretID}, args...)
			for _, want := range tc.says {
				if code != tc.code || !strings.Contains(out, want) {
					t.Errorf("exit %d, want %d and %q in:\n%s%s", code, tc.code, want, out, errOut)
				}
			}
			want := tc.accountID
			if want == "" {
				want = "123456789012"
			}
			if len(aws.owners) != 1 || aws.owners[0] != want {
				t.Errorf("PutObject named the bucket owners %q, want %s", aws.owners, want)
			}
		})
	}
}

// TestCheckAdviceNamesItsFlags: what to check after a refusal names check's flag, not the plugin's setting.
func TestCheckAdviceNamesItsFlags(t *testing.T) {
	setTestCredentials(t)
	aws := newFakeAWS(t, func(string) (int, string) {
		return http.StatusBadRequest, `<Error><Code>AccessControlListNotSupported</Code><Message>The bucket does not allow ACLs</Message></Error>`
	})
	code, out, errOut := runCmd(t, map[string]string{externalIDEnv: secretID}, "check", "--org", "org-a", "--bucket", "b-1",
		"--role-arn", "arn:aws:iam::123456789012:role/r", "--endpoint", aws.URL, "--sts-endpoint", aws.URL, "--allow-plain-http",
		"--write-probe", "--canned-acl", "private")
	if want := "check: the bucket has ACLs disabled; set --canned-acl bucket-owner-full-control or none"; code != exitOurs || !strings.Contains(out, want) {
		t.Errorf("exit %d, want %d and %q in:\n%s%s", code, exitOurs, want, out, errOut)
	}
	if m := settingNames.FindString(out + errOut); m != "" {
		t.Errorf("names the setting %s, not its flag %s:\n%s", m, checkFlags[m], out)
	}
}
