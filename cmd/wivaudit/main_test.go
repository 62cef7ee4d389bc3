package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/upload"
)

const secretID = "681d1539-fd63-4e6e-9426-fccdfdae1862"

var t0 = time.UnixMilli(1769611845000)

// runCmd runs the command as main does, with getenv's values, and returns its exit code and output.
func runCmd(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{ctx: context.Background(), stdout: &out, stderr: &errOut, getenv: func(k string) string { return environ[k] },
		now: func() time.Time { return t0 }}
	code = run(e, args)
	if strings.Contains(out.String()+errOut.String(), secretID) {
		t.Errorf("%v: the output shows the External ID", args)
	}
	return code, out.String(), errOut.String()
}

func TestArguments(t *testing.T) {
	dir := t.TempDir()
	idFile := filepath.Join(dir, "id")
	os.WriteFile(idFile, []byte(secretID+"\n"), 0o600)
	dests := filepath.Join(dir, "dests.json")
	os.WriteFile(dests, []byte(`[{"org_id":"org-a","bucket_name":"bucket-a","role_arn":"arn:aws:iam::123456789012:role/r","external_id":"`+secretID+`"}]`), 0o600)
	role := "arn:aws:iam::123456789012:role/r"
	cases := []struct {
		args []string
		code int
		says string // in stdout or stderr
	}{
		{nil, exitUsage, "usage: wivaudit COMMAND"},
		{[]string{"help"}, exitOK, "Exit codes:"},
		{[]string{"--help"}, exitOK, "store requeue DIR"},
		{[]string{"frob"}, exitUsage, `unknown command "frob"`},
		{[]string{"store", "frob"}, exitUsage, `unknown command "store frob"`},
		{[]string{"check", "-h"}, exitOK, "-write-probe"},
		{[]string{"check", "--bucket", "b-1"}, exitUsage, "--org is required"},
		{[]string{"check", "--org", "org-a"}, exitUsage, "--bucket (or --destinations) is required"},
		{[]string{"check", "--org", "org-a", "--bucket", "b-1", "--nope"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"check", "--org", "org-a", "--bucket", "b-1", "extra"}, exitUsage, `wivaudit check: takes no arguments, got "extra"; give values with flags`},
		{[]string{"check", "--org", "org-a", "--bucket", "B_1", "--region", "mars", "--role-arn", role, "--external-id-file", idFile},
			exitUsage, "--region: \"mars\" is not an AWS region name"},
		{[]string{"check", "--org", "org-a", "--bucket", "b-1", "--role-arn", role}, exitUsage, "--external-id: not set although --role-arn is"},
		{[]string{"check", "--org", "org-a", "--bucket", "b-1", "--role-arn", role, "--external-id", "x", "--external-id-file", idFile},
			exitUsage, "give the External ID once"},
		{[]string{"check", "--org", "org-a", "--bucket", "b-1", "--role-arn", role, "--endpoint", "http://127.0.0.1:1"}, exitUsage, "--endpoint: \"http://127.0.0.1:1\" uses plain HTTP"},
		{[]string{"check", "--org", "org-a", "--destinations", dests, "--bucket", "b-1"}, exitUsage, "drop --bucket"},
		{[]string{"check", "--org", "org-a", "--destinations", dests, "--external-id-file", idFile}, exitUsage, "the External ID (--external-id, --external-id-file, $WIVAUDIT_EXTERNAL_ID)"},
		{[]string{"check", "--org", "org-b", "--destinations", dests}, exitUsage, "organisation org-b is not in"},
		{[]string{"check", "--org", "org-a", "--destinations", filepath.Join(dir, "missing.json")}, exitUsage, "no such file"},
		{[]string{"destinations", "validate"}, exitUsage, "expected FILE, got 0 arguments"},
		{[]string{"destinations", "validate", filepath.Join(dir, "missing.json")}, exitUsage, "no such file"},
		{[]string{"destinations", "validate", dests, "--key-prefix", "/x"}, exitUsage, "--key-prefix: \"/x\" must end with"},
		{[]string{"store", "inspect"}, exitUsage, "expected DIR, got 0 arguments"},
		{[]string{"store", "inspect", dir}, exitUsage, "not a Store_Dir"},
		{[]string{"store", "requeue", dir, "--org", "org-a"}, exitUsage, "not a Store_Dir"},
	}
	for _, tc := range cases {
		code, out, errOut := runCmd(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.says) {
			t.Errorf("wivaudit %s: exit %d, want %d and %q in:\n%s%s", strings.Join(tc.args, " "), code, tc.code, tc.says, out, errOut)
		}
	}
}

func TestExternalIDSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "id")
	os.WriteFile(file, []byte("  from-file\n"), 0o600)
	cases := []struct{ flag, file, env, want string }{
		{"from-flag", "", "from-env", "from-flag"},
		{"", file, "from-env", "from-file"},
		{"", "", "from-env", "from-env"},
		{"", "", "", ""},
	}
	for _, tc := range cases {
		if got, err := readExternalID(tc.flag, tc.file, tc.env); err != nil || got != tc.want {
			t.Errorf("readExternalID(%q, %q, %q) = %q, %v; want %q", tc.flag, tc.file, tc.env, got, err, tc.want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		a    upload.Advice
		want int
	}{
		{upload.Advice{Problem: upload.WrongExternalID, Step: "3.2.2"}, exitRefused},
		{upload.Advice{Problem: upload.RoleRefused, Step: "3.3"}, exitRefused},
		{upload.Advice{Problem: upload.WriteDenied, Step: "3.2.4"}, exitRefused},
		{upload.Advice{Problem: upload.NoSuchBucket, Step: "3.1"}, exitRefused},
		{upload.Advice{Problem: upload.WrongRegion, Step: "3.3"}, exitRefused},
		{upload.Advice{Problem: upload.KMSDenied, Step: "3.2.4"}, exitRefused},
		{upload.Advice{Problem: upload.NoCredentials}, exitOurs},
		{upload.Advice{Problem: upload.CredentialsRefused}, exitOurs},
		{upload.Advice{Problem: upload.ACLsDisabled}, exitOurs},
		{upload.Advice{Problem: upload.ConditionalWrites}, exitOurs},
		{upload.Advice{Problem: upload.NetworkError}, exitRetry},
		{upload.Advice{Problem: upload.Timeout}, exitRetry},
		{upload.Advice{Problem: upload.LocalError}, exitRetry},
		{upload.Advice{Problem: upload.OtherError}, exitRetry},
	}
	for _, tc := range cases {
		if got := exitFor(tc.a); got != tc.want {
			t.Errorf("%+v: exit %d, want %d", tc.a, got, tc.want)
		}
	}
}

// setTestCredentials gives the command base credentials of its own and nothing of this machine's AWS setup.
func setTestCredentials(t *testing.T) {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
		"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}
}

// TestCheckUnreachable: a server that does not answer is "try again later", not the customer's problem.
func TestCheckUnreachable(t *testing.T) {
	environ := map[string]string{externalIDEnv: secretID}
	setTestCredentials(t)
	code, out, _ := runCmd(t, environ, "check", "--org", "org-a", "--bucket", "b-1", "--role-arn", "arn:aws:iam::123456789012:role/r",
		"--endpoint", "http://127.0.0.1:1", "--sts-endpoint", "http://127.0.0.1:1", "--allow-plain-http", "--request-timeout", "2s")
	if code != exitRetry || !strings.Contains(out, "identity: FAILED") || !strings.Contains(out, "problem: network") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// TestCheckHidesAnExternalIDTheServerQuotes: an STS endpoint whose refusal quotes the ExternalId it was sent
// (runCmd fails the test if the output shows it); the step still fails with the server's other words.
func TestCheckHidesAnExternalIDTheServerQuotes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "text/xml")
		if r.Form.Get("Action") == "GetCallerIdentity" {
			fmt.Fprint(w, `<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/platform</Arn><Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`)
			return
		}
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized with ExternalId %s</Message></Error></ErrorResponse>`, r.Form.Get("ExternalId"))
	}))
	defer srv.Close()
	setTestCredentials(t)
	code, out, _ := runCmd(t, map[string]string{externalIDEnv: secretID}, "check", "--org", "org-a", "--bucket", "b-1",
		"--role-arn", "arn:aws:iam::123456789012:role/r", "--endpoint", srv.URL, "--sts-endpoint", srv.URL, "--allow-plain-http")
	if code != exitRefused || !strings.Contains(out, "assume role: FAILED: 403 AccessDenied: not authorized with ExternalId [redacted]") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`[
  {"org_id":"org-b","bucket_name":"bucket-b","role_arn":"arn:aws:iam::123456789012:role/r","external_id":"`+secretID+`","region":"eu-west-1"},
  {"org_id":"org-a","bucket_name":"bucket-a","role_arn":"arn:aws:iam::123456789012:role/r","external_id":"`+secretID+`"}
]`), 0o600)
	code, out, _ := runCmd(t, nil, "destinations", "validate", good, "--key-prefix", "audit/")
	want := "org-a: s3://bucket-a/audit/org-a/ (region us-east-1, role arn:aws:iam::123456789012:role/r)\n" +
		"org-b: s3://bucket-b/audit/org-b/ (region eu-west-1, role arn:aws:iam::123456789012:role/r)\n2 organisations, valid\n"
	if code != exitOK || out != want {
		t.Errorf("valid file: exit %d:\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`[
  {"org_id":"org-a","bucket_name":"Bucket_A","role_arn":"arn:aws:iam::123456789012:role/r","external_id":"`+secretID+`"},
  {"org_id":"ORG-A","bucket_name":"bucket-a","role_arn":"role/r","external_id":"`+secretID+`"}
]`), 0o600)
	code, out, _ = runCmd(t, nil, "destinations", "validate", bad)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitRefused || len(lines) != 4 || !strings.Contains(lines[0], "entry 0 (line 2, column 3, org_id \"org-a\"): bucket_name") ||
		!strings.Contains(lines[1], "org_id: listed twice") || !strings.Contains(lines[2], "role_arn") || !strings.HasPrefix(lines[3], "3 problems") {
		t.Errorf("bad file: exit %d:\n%s", code, out)
	}
}

// TestStoreCommands: inspect and requeue on a store made by the buffer package (the integration test does
// it on one the plugin made).
func TestStoreCommands(t *testing.T) {
	dir := t.TempDir()
	s, _, err := buffer.Open(dir, buffer.Options{MaxBatch: 1 << 20, QuarantineLimit: 1 << 20, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	c := buffer.NewChunk()
	c.Add(buffer.Stream{Org: "org-a", Kind: "api"}, []byte(`{"id":1}`))
	c.Add(buffer.Stream{Org: "org-b", Kind: "org"}, []byte(`{"id":2}`))
	if err := s.Append(c, nil); err != nil {
		t.Fatal(err)
	}
	s.Rotate(time.Time{})
	var closed []*buffer.Pending
	for _, p := range s.TakeClosed() {
		if p.Org == "org-b" {
			closed = append(closed, p)
		} else {
			s.PutBack(p)
		}
	}
	sealed := s.Seal(closed, func(p *buffer.Pending) (string, func(int64) string) {
		return "", func(ms int64) string {
			return "org-b/org-audit-logs-" + time.UnixMilli(ms).Format("20060102") + ".json.gz"
		}
	}, func(w io.Writer, fragments iter.Seq[[]byte]) error {
		for f := range fragments {
			w.Write(f)
		}
		return nil
	})
	if err := s.Quarantine(sealed[0].Batch); err != nil {
		t.Fatal(err)
	}

	code, out, _ := runCmd(t, nil, "store", "inspect", dir)
	for _, want := range []string{"org-a   api   1 records, 8 bytes", "org-b   org   -", "1: 1 records, 8 bytes", "2026-01-28T14:50:45Z (0s ago)", "dead letters: 0 lines, 0 bytes"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("inspect: exit %d, %q missing:\n%s", code, want, out)
		}
	}
	code, out, _ = runCmd(t, nil, "store", "inspect", "--json", dir)
	var in buffer.Inspection
	if err := json.Unmarshal([]byte(out), &in); code != exitOK || err != nil || len(in.Streams) != 2 || in.Streams[1].Quarantined.Records != 1 {
		t.Errorf("inspect --json: exit %d, %v:\n%s", code, err, out)
	}

	code, _, errOut := runCmd(t, nil, "store", "requeue", dir)
	if want := "the plugin is running on " + dir + " (lock held by pid " + strconv.Itoa(os.Getpid()) + "); stop it first"; code != exitRefused || !strings.Contains(errOut, want) {
		t.Errorf("requeue while locked: exit %d: %s", code, errOut)
	}
	s.Close()
	code, out, _ = runCmd(t, nil, "store", "requeue", dir, "--org", "ORG-B")
	if code != exitOK || !strings.Contains(out, "requeued org-b/org: org-b/org-audit-logs-20260128.json.gz, 1 records") || !strings.Contains(out, "1 batches put back") {
		t.Errorf("requeue: exit %d:\n%s", code, out)
	}
	code, out, _ = runCmd(t, nil, "store", "requeue", dir)
	if code != exitOK || !strings.Contains(out, "nothing to requeue") {
		t.Errorf("requeue again: exit %d:\n%s", code, out)
	}
}

// heapAtFirstWrite records the live heap when the first byte is written.
type heapAtFirstWrite struct {
	live    uint64
	written bool
}

func (w *heapAtFirstWrite) Write(p []byte) (int, error) {
	if !w.written {
		w.written = true
		w.live = liveHeap()
	}
	return len(p), nil
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestLedgerTableIsWrittenAsRead: the table of a large ledger is written while it is read, not held in memory
// whole (a ledger of Ledger_Limit_Size 100M took 260 MB when it was); its times keep one width.
func TestLedgerTableIsWrittenAsRead(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "ledger"), 0o700)
	var lines bytes.Buffer
	const entries = 20000
	for i := range entries {
		line, _ := json.Marshal(ledger.Entry{Time: t0.Add(time.Duration(i) * time.Second), Status: ledger.Delivered,
			Org: fmt.Sprintf("org-%05d", i), Kind: "org", Bucket: "your-company-audit-logs", Records: 12, Bytes: 1130,
			Key:    fmt.Sprintf("org-%05d/org-audit-logs-%d.json.gz", i, t0.UnixMilli()+int64(i)),
			SHA256: strings.Repeat("9f2c", 16), VersionID: "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"})
		lines.Write(append(line, '\n'))
	}
	os.WriteFile(filepath.Join(dir, "ledger", "0000000000000001.jsonl"), lines.Bytes(), 0o600)
	out := &heapAtFirstWrite{}
	before := liveHeap()
	if code := run(&env{ctx: context.Background(), stdout: out, stderr: io.Discard, now: func() time.Time { return t0 }}, []string{"store", "ledger", dir}); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if grown := int64(out.live) - int64(before); grown > 2<<20 {
		t.Errorf("the heap held %d more bytes when the table's first line was written: the table of %d entries (%d bytes of ledger) was held in memory", grown, entries, lines.Len())
	}
	_, table, _ := runCmd(t, nil, "store", "ledger", dir, "--org", "org-00000")
	if !strings.Contains(table, "2026-01-28T14:50:45.000Z  delivered  org-00000") {
		t.Errorf("table:\n%s", table)
	}
}
