package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/sample"
)

// TestTrialOnce: make trial's command with -once, end to end (in the Fluent Bit of FLUENT_BIT when set, else
// the host): moto with IAM checks on, two customers set up by the customer kit (CloudFormation and Terraform)
// with each moto workaround named as it is applied, both delivered; then every command it prints runs as
// printed: the endpoints, store inspect and ledger, wivaudit verify for each customer (the second with its key
// prefix) passing with the customer's own read-only credentials, and the events sent again arriving. The
// trial's folder stays, with the destinations file, the configuration and the store.
func TestTrialOnce(t *testing.T) {
	for _, o := range sample.Orgs {
		secret(o.ExternalID)
	}
	dir := filepath.Join(t.TempDir(), "trial")
	cmd := exec.Command("go", "run", "./test/cmd/trial", "-once", "-host", host.Bin, "-plugin", host.Plugin,
		"-cmd", wivauditBin(t), "-dir", dir)
	cmd.Dir = ".."
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	log := filepath.Join(dir, "fluent-bit.log")
	if data, rerr := os.ReadFile(log); rerr == nil && host.LogFile != "" {
		if f, ferr := os.OpenFile(host.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); ferr == nil {
			f.Write(data)
			f.Close()
		}
	}
	printed := out.String()
	t.Logf("make trial -once: %s\n%s", time.Since(start).Round(time.Second), tail(printed, 60))
	if err != nil {
		t.Fatalf("the trial failed: %v", err)
	}

	up := regexp.MustCompile(`==> The trial is up after (\S+)\.`).FindStringSubmatch(printed)
	if up == nil {
		t.Fatal("the trial never said it was up")
	}
	in := regexp.MustCompile(`==> Running the plugin in (.*)`).FindStringSubmatch(printed)
	if in == nil {
		t.Fatal("the trial never said where the plugin runs")
	}
	t.Logf("up after %s, the plugin in %s", up[1], in[1])
	for _, want := range []string{
		"moto workaround: moto's CloudFormation stores a role's inline policy as Python's repr",
		"moto workaround: moto applies a bucket policy's Deny without its conditions",
		"moto workaround: moto's CloudFormation applies only an AWS::S3::Bucket's name, encryption and tags, and ignores AWS::S3::BucketPolicy",
		"kept in the dead-letter file " + filepath.Join(dir, "store", "deadletter.jsonl") + ": 1 of the sample records",
		"    bad-1 (org_id \"../other-org\", tag audit.api): ",
		"every 30s a status line",
		"stopped; ",
	} {
		if !strings.Contains(printed, want) {
			t.Errorf("the trial does not say %q", want)
		}
	}
	// Each printed verify command ran, and passed.
	for _, o := range sample.Orgs {
		verify := regexp.MustCompile(`(?m)^\$ AWS_ACCESS_KEY_ID=\S+ AWS_SECRET_ACCESS_KEY=\S+ \S+ verify --bucket ` + regexp.QuoteMeta(o.Bucket) +
			`(?: --prefix (\S+))? --org ` + o.ID + ` .*\n    checked s3://` + regexp.QuoteMeta(o.Bucket+"/"+o.KeyPrefix+o.ID) +
			`/: [1-9][0-9]* digests verified .*\n    result: verified \(exit 0\)\n    \(exit 0\)\n`)
		m := verify.FindStringSubmatch(printed)
		if m == nil {
			t.Errorf("no passing verify of %s printed and run", o.Name)
		} else if m[1] != o.KeyPrefix {
			t.Errorf("verify of %s with --prefix %q, want %q", o.Name, m[1], o.KeyPrefix)
		}
	}
	// Both buckets are versioned as the kit makes them (the CloudFormation one by a workaround): the ledger's
	// VERSION column is filled for each customer's objects.
	for _, o := range sample.Orgs {
		if !regexp.MustCompile(`(?m)^    \S+ +delivered +` + o.ID + ` .* [0-9a-f]{64} +\S+$`).MatchString(printed) {
			t.Errorf("the printed ledger shows no object of %s with its version id", o.Name)
		}
	}
	if n := strings.Count(printed, "\n    (exit 0)\n"); n != 8 {
		t.Errorf("%d printed commands ran and exited 0, want 8 (3 endpoints, inspect, ledger, 2 verify, send)", n)
	}
	if !strings.Contains(printed, "the events sent again are delivered too") {
		t.Error("the events sent by the printed command were not seen delivered")
	}

	// The folder stays, with what the trial wrote and what the plugin kept.
	data, err := os.ReadFile(filepath.Join(dir, "destinations.json"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []sample.Entry
	if err := json.Unmarshal(data, &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Org != sample.Orgs[0].ID || entries[1].Org != sample.Orgs[1].ID ||
		entries[1].KeyPrefix != "wiv/" || entries[0].RoleARN == "" || entries[1].RoleARN == "" {
		t.Errorf("destinations.json: %s", data)
	}
	for _, f := range []string{"fluent-bit.conf", "fluent-bit.log", "store/ledger", "terraform/terraform.rc", "wivaudit-digest-public-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the trial's folder: %v", err)
		}
	}
}

// TestTrialInterruptedWithItsOutputGone: Ctrl-C on `make trial 2>&1 | tee log` ends tee too, so the trial's
// output is a closed pipe when it stops. It must still stop the plugin's process and moto (their own process
// groups: the Ctrl-C does not reach them) and exit 0, not die of SIGPIPE at its first line and leave them
// running with the store's lock and the ports.
func TestTrialInterruptedWithItsOutputGone(t *testing.T) {
	for _, o := range sample.Orgs {
		secret(o.ExternalID)
	}
	bin := filepath.Join(t.TempDir(), "trial")
	if out, err := exec.Command("go", "build", "-o", bin, "../test/cmd/trial").CombinedOutput(); err != nil {
		t.Fatalf("go build the trial: %v\n%s", err, out)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(bin, "-host", host.Bin, "-plugin", host.Plugin, "-cmd", wivauditBin(t), "-dir", filepath.Join(t.TempDir(), "trial"))
	cmd.Dir = ".."
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var printed strings.Builder
	lines := bufio.NewScanner(r)
	for !strings.HasPrefix(lines.Text(), "Everything runs until Ctrl-C") {
		if !lines.Scan() {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the trial ended before it was up:\n%s", tail(printed.String(), 60))
		}
		printed.WriteString(lines.Text() + "\n")
	}
	children, err := childrenOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(children) < 2 {
		t.Fatalf("the trial runs %d processes, want moto and the plugin's at least", len(children))
	}
	for _, c := range children {
		defer c.Close()
	}
	r.Close()
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		t.Errorf("the trial died of %v once its output was gone", status.Signal())
	} else if err != nil {
		t.Errorf("the trial stopped with %v", err)
	}
	for _, c := range children {
		// A bound, not a wait for success: nothing else stops a child left running.
		if ended, err := c.Ended(time.Minute); err != nil || !ended {
			c.Kill()
			t.Errorf("the trial's process %d still ran a minute after the trial ended (%v)", c.Pid, err)
		}
	}
}

// childrenOf watches the child processes of pid, from /proc.
func childrenOf(pid int) ([]*backend.Watched, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return nil, err
	}
	var out []*backend.Watched
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, field := range strings.Fields(string(data)) {
			child, err := strconv.Atoi(field)
			if err != nil {
				return nil, err
			}
			c, err := backend.Watch(child)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}
