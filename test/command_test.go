package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/hostrun"
)

var command struct {
	once sync.Once
	path string
	err  error
}

// wivauditBin is the command `make integration` built (WIVAUDIT_CMD), or one built here.
func wivauditBin(t *testing.T) string {
	t.Helper()
	command.once.Do(func() {
		if command.path = os.Getenv("WIVAUDIT_CMD"); command.path != "" {
			return
		}
		dir, err := os.MkdirTemp("", "wivaudit-cmd-")
		if err != nil {
			command.err = err
			return
		}
		command.path = filepath.Join(dir, "wivaudit")
		out, err := exec.Command("go", "build", "-o", command.path, "../cmd/wivaudit").CombinedOutput()
		if err != nil {
			command.err = fmt.Errorf("go build ../cmd/wivaudit: %v\n%s", err, out)
		}
	})
	if command.err != nil {
		t.Fatal(command.err)
	}
	return command.path
}

// wivaudit runs the command with the platform's credentials (and extra variables) and returns its exit code
// and output. No output may show a secret.
func (e *env) wivaudit(extraEnv []string, args ...string) (code int, stdout, stderr string) {
	e.t.Helper()
	cmd := exec.Command(wivauditBin(e.t), args...)
	cmd.Env = append(append(os.Environ(), e.p.Env()...), extraEnv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		e.t.Fatal(err)
	}
	secrets.Lock()
	for _, v := range append(secrets.values, e.p.SecretKey) {
		if strings.Contains(out.String()+errOut.String(), v) {
			e.t.Errorf("wivaudit %s shows a secret", strings.Join(args, " "))
		}
	}
	secrets.Unlock()
	e.t.Logf("wivaudit %s: exit %d\n%s%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), out.String(), errOut.String())
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// checkArgs are the arguments of wivaudit check for a destination on the test's moto.
func (e *env) checkArgs(org, bucket, role string, more ...string) []string {
	return append([]string{"check", "--org", org, "--bucket", bucket, "--role-arn", role, "--endpoint", e.moto.URL,
		"--sts-endpoint", e.moto.URL, "--allow-plain-http"}, more...)
}

var probeKey = regexp.MustCompile(`write: ok, s3://your-company-audit-logs/(\S+) `)

// TestCommandCheck: wivaudit check against moto with IAM checks on, as support would run it: success, with and
// without the probe object; then a wrong External ID, a missing bucket and a denied write, each naming the
// customer guide's step with exit code 1.
func TestCommandCheck(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const org = "3f7539ad-7f8b-4688-aee0-b9dbf2db728e"
	idFile := filepath.Join(e.dir, "external-id")
	if err := os.WriteFile(idFile, []byte(e.p.ExternalID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, _ := e.wivaudit(nil, e.checkArgs(org, e.p.Bucket, e.p.RoleARN, "--external-id-file", idFile)...)
	if code != 0 || !strings.Contains(out, "identity: ok, "+e.p.UserARN+";") || !strings.Contains(out, "assume role: ok, "+e.p.RoleARN) ||
		!strings.Contains(out, "write: not tried") || !strings.HasSuffix(out, "result: ok\n") {
		t.Fatalf("check without the probe: exit %d", code)
	}
	if keys, err := e.moto.Keys(ctx, e.p.Bucket); err != nil || len(keys) != 0 {
		t.Fatalf("check without --write-probe wrote %v (%v)", keys, err)
	}

	code, out, _ = e.wivaudit(nil, e.checkArgs(org, e.p.Bucket, e.p.RoleARN, "--external-id-file", idFile, "--write-probe")...)
	m := probeKey.FindStringSubmatch(out)
	if code != 0 || m == nil || !strings.HasSuffix(out, "result: ok\n") {
		t.Fatalf("check with the probe: exit %d", code)
	}
	if !regexp.MustCompile(`^`+org+`/wivaudit-delivery-check-[0-9]{13}\.txt$`).MatchString(m[1]) || keyPattern.MatchString(m[1]) {
		t.Errorf("probe key %q: not the probe's name, or one an audit log glob matches", m[1])
	}
	body, err := e.moto.Get(ctx, e.p.Bucket, m[1])
	if err != nil || !strings.Contains(string(body), "wivaudit check --write-probe") {
		t.Errorf("the probe object read back with admin credentials: %q, %v", body, err)
	}
	reqs, err := e.moto.Requests()
	if err != nil {
		t.Fatal(err)
	}
	puts := 0
	for _, r := range reqs {
		if r.Operation() == "PutObject" && strings.HasSuffix(r.Path, "/"+m[1]) {
			puts++
			if r.Header.Get("If-None-Match") != "*" || r.Header.Get("X-Amz-Acl") != "bucket-owner-full-control" || r.Header.Get("Content-Md5") == "" {
				t.Errorf("the probe's PutObject headers: %v", r.Header)
			}
		}
	}
	if puts != 1 {
		t.Errorf("the server saw %d PutObject of the probe", puts)
	}

	// The same destination taken from a destinations file.
	file := filepath.Join(e.dir, "destinations.json")
	writeDestinations(t, file, []destEntry{{Org: org, Bucket: e.p.Bucket, RoleARN: e.p.RoleARN, ExternalID: e.p.ExternalID}})
	code, out, _ = e.wivaudit(nil, "check", "--destinations", file, "--org", strings.ToUpper(org), "--endpoint", e.moto.URL,
		"--sts-endpoint", e.moto.URL, "--allow-plain-http")
	if code != 0 || !strings.Contains(out, "assume role: ok") {
		t.Errorf("check from a destinations file: exit %d", code)
	}

	const wrong = "0000dead-beef-4e6e-9426-fccdfdae1862"
	secret(wrong)
	code, out, _ = e.wivaudit([]string{"WIVAUDIT_EXTERNAL_ID=" + wrong}, e.checkArgs(org, e.p.Bucket, e.p.RoleARN, "--write-probe")...)
	if code != 1 || !strings.Contains(out, "assume role: FAILED: 403 AccessDenied") || !strings.Contains(out, "problem: external-id-or-trust") ||
		!strings.Contains(out, "guide: docs/customer-guide.md step 3.2.2\n") {
		t.Errorf("wrong External ID: exit %d", code)
	}

	// A customer whose role may write its bucket, but the bucket is gone.
	gone := e.addCustomer("gone")
	if _, err := e.moto.S3().DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(gone.bucket)}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = e.wivaudit([]string{"WIVAUDIT_EXTERNAL_ID=" + gone.externalID}, e.checkArgs(org, gone.bucket, gone.roleARN, "--write-probe")...)
	if code != 1 || !strings.Contains(out, "assume role: ok") || !strings.Contains(out, "write: FAILED: 404 NoSuchBucket") ||
		!strings.Contains(out, "problem: no-such-bucket") || !strings.Contains(out, "guide: docs/customer-guide.md step 3.1\n") {
		t.Errorf("missing bucket: exit %d", code)
	}

	// A role allowed to write only another bucket. moto answers the refusal with a bare "Access Denied", as S3
	// does for a caller outside the bucket's account (S3 names the refusing policy to a caller of the bucket's
	// own account), so the advice names both causes: the permissions and the bucket's owner.
	other := e.addCustomer("other")
	code, out, _ = e.wivaudit([]string{"WIVAUDIT_EXTERNAL_ID=" + other.externalID}, e.checkArgs(org, e.p.Bucket, other.roleARN, "--write-probe")...)
	if code != 1 || !strings.Contains(out, "write: FAILED: 403 AccessDenied") || !strings.Contains(out, "problem: bucket-owner-or-write-denied") ||
		!strings.Contains(out, "s3:PutObject and s3:PutObjectAcl on arn:aws:s3:::your-company-audit-logs/*") ||
		!strings.Contains(out, "guide: docs/customer-guide.md step 3.2.4 or 3.1\n") {
		t.Errorf("denied write: exit %d", code)
	}
	if keys, _ := e.moto.Keys(ctx, e.p.Bucket); len(keys) != 1 {
		t.Errorf("the bucket holds %v; want only the one probe object", keys)
	}
}

// rawRecords is a record of org written as JSON with strings only, so that the plugin keeps its bytes.
func rawRecords(org, prefix string, n, pad int) (js []string, data []byte) {
	for i := range n {
		j := fmt.Sprintf(`{"id":"%s-%02d","org_id":%q,"note":%q}`, prefix, i, org, strings.Repeat("x", pad))
		body, err := chunks.FromJSON([]byte(j))
		if err != nil {
			panic(err)
		}
		js = append(js, j)
		data = append(data, chunks.V2(chunks.EventTime(time.Unix(1769611845, 0)), body)...)
	}
	return js, data
}

func totalLen(ss []string) (n int64) {
	for _, s := range ss {
		n += int64(len(s))
	}
	return n
}

// TestCommandStore: wivaudit store inspect and requeue on a Store_Dir the real plugin fills. One organisation's
// role may not write: its first batch (sealed by size) is quarantined, its next record waits unsealed; another
// organisation's records wait unsealed (long Upload_Timeout). Inspect's numbers, taken while the host runs,
// are exact; requeue refuses while the plugin holds the folder; once stopped, requeue puts the batch back, the
// policy is fixed, and the next run delivers every record.
func TestCommandStore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	q, u := e.addCustomer("custq"), e.addCustomer("custu")
	policy := func(actions string) {
		t.Helper()
		doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[%s],"Resource":"arn:aws:s3:::%s/*"}]}`, actions, q.bucket)
		if _, err := e.moto.IAM().PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("wiv-custq"),
			PolicyName: aws.String("audit-logs-write"), PolicyDocument: aws.String(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	policy(`"s3:GetObject"`)
	file := filepath.Join(e.dir, "destinations.json")
	writeDestinations(t, file, []destEntry{{Org: "org-q", Bucket: q.bucket, RoleARN: q.roleARN, ExternalID: q.externalID},
		{Org: "org-u", Bucket: u.bucket, RoleARN: u.roleARN, ExternalID: u.externalID}})
	store := filepath.Join(e.dir, "store")
	conf := e.config("store.conf", map[string]string{"Destinations_File": file, "Workers": "1", "Total_File_Size": "1K",
		"Upload_Timeout": "1h", "Hold_Retry_Interval": "1s", "Quarantine_After": "2s", "Shutdown_Timeout": "5s"})
	qBatch, qBatchData := rawRecords("org-q", "q", 12, 60) // about 1,100 bytes: the next record closes the batch
	qLate, qLateData := rawRecords("org-q", "q-late", 1, 10)
	uRecs, uData := rawRecords("org-u", "u", 3, 10)
	input := e.input("input.chunks", []chunk{{"audit.api", qBatchData}, {"audit.api", qLateData}, {"audit.user", uData}})

	started := time.Now().UnixMilli()
	p := e.start(conf, input, false)
	if err := p.WaitFor(2*time.Minute, func(r *hostrun.Result) bool {
		return strings.Contains(r.Stderr, "moved to quarantine") && r.Count("flush ") == 3
	}); err != nil {
		t.Fatalf("%v:\n%s", err, tail(p.Snapshot().Stderr, 20))
	}
	code, out, _ := e.wivaudit(nil, "store", "inspect", "--json", store)
	var got buffer.Inspection
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("inspect --json: exit %d, %v", code, err)
	}
	objects, _ := filepath.Glob(filepath.Join(store, "quarantine", "org-q~api~*.json.gz"))
	if len(objects) != 1 {
		t.Fatalf("quarantine holds %v", objects)
	}
	fi, err := os.Stat(objects[0])
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	if len(got.Streams) != 2 || got.DeadLetters != (buffer.FileContents{}) || len(got.SetAside) != 0 || got.DamagedRegions != 0 {
		t.Fatalf("inspect: %+v", got)
	}
	gq, gu := got.Streams[0], got.Streams[1]
	for _, h := range []buffer.Holding{gq.Unsealed, gq.Quarantined, gu.Unsealed} {
		if h.Oldest < started || h.Oldest > now {
			t.Errorf("oldest record at %d, not during the run (%d to %d)", h.Oldest, started, now)
		}
	}
	gq.Unsealed.Oldest, gq.Quarantined.Oldest, gu.Unsealed.Oldest = 0, 0, 0
	want := []buffer.StreamContents{
		{Org: "org-q", Kind: "api", Unsealed: buffer.Holding{Records: 1, Bytes: totalLen(qLate)},
			Quarantined: buffer.Holding{Batches: 1, Records: len(qBatch), Bytes: fi.Size()}},
		{Org: "org-u", Kind: "user", Unsealed: buffer.Holding{Records: len(uRecs), Bytes: totalLen(uRecs)}},
	}
	if gq != want[0] || gu != want[1] {
		t.Errorf("inspect:\n got %+v\n     %+v\nwant %+v", gq, gu, want)
	}
	code, out, _ = e.wivaudit(nil, "store", "inspect", store)
	if code != 0 || !regexp.MustCompile(`org-q +api +1 records, [0-9]+ bytes +- +1: 12 records, [0-9]+ bytes`).MatchString(out) {
		t.Errorf("inspect: exit %d", code)
	}

	code, _, stderr := e.wivaudit(nil, "store", "requeue", store)
	if code != 1 || !regexp.MustCompile(`the plugin is running on `+regexp.QuoteMeta(store)+` \(lock held by pid [0-9]+\); stop it first`).MatchString(stderr) {
		t.Errorf("requeue while the plugin runs: exit %d", code)
	}
	if after, _ := filepath.Glob(filepath.Join(store, "quarantine", "org-q~api~*")); len(after) != 2 {
		t.Errorf("a refused requeue changed the quarantine: %v", after)
	}
	p.Signal(syscall.SIGTERM)
	if r := p.Wait(time.Minute); r.ExitCode != 0 {
		t.Fatalf("host exit %d", r.ExitCode)
	}

	// At shutdown the late record was sealed and refused past Quarantine_After too: two batches.
	code, out, _ = e.wivaudit(nil, "store", "requeue", store, "--org", "ORG-Q")
	if code != 0 || strings.Count(out, "requeued org-q/api: org-q/api-audit-logs-") != 2 || !strings.Contains(out, "2 batches put back") {
		t.Fatalf("requeue: exit %d", code)
	}
	manifests, _ := filepath.Glob(filepath.Join(store, "batches", "org-q~api~*.manifest.json"))
	requeued := 0
	for _, path := range manifests {
		var m buffer.Manifest
		if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &m) == nil && m.Requeued > now {
			requeued++
		}
	}
	if requeued != 2 {
		t.Errorf("%d manifests of batches/ carry the requeue time", requeued)
	}

	policy(`"s3:PutObject","s3:PutObjectAcl"`)
	if r := e.runToEnd(conf, ""); r.ExitCode != 0 {
		t.Fatalf("host exit %d", r.ExitCode)
	}
	for bucket, recs := range map[string][]string{q.bucket: append(qBatch, qLate...), u.bucket: uRecs} {
		delivered := map[string]bool{}
		keys, err := e.moto.Keys(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range keys {
			body, err := e.moto.Get(ctx, bucket, key)
			plain, gzErr := gunzip(body)
			var raws []json.RawMessage
			if err != nil || gzErr != nil || json.Unmarshal(plain, &raws) != nil {
				t.Fatalf("%s/%s: %v %v", bucket, key, err, gzErr)
			}
			for _, raw := range raws {
				delivered[string(raw)] = true
			}
		}
		for _, r := range recs {
			if !delivered[r] {
				t.Errorf("%s: record %s not delivered byte for byte", bucket, r)
			}
		}
	}
	if left, _ := filepath.Glob(filepath.Join(store, "quarantine", "*")); len(left) != 0 {
		t.Errorf("the quarantine still holds %v", left)
	}
}
