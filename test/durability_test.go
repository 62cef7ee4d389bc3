package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/wiv/out_wivaudit/plugin"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/faultproxy"
	"github.com/wiv/out_wivaudit/test/hostrun"
)

// deliveredIDs counts, per event id, how many times it is in the bucket.
func (e *env) deliveredIDs() map[string]int {
	seen := map[string]int{}
	for _, recs := range e.delivered() {
		for _, raw := range recs {
			var h struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(raw, &h); err != nil {
				e.t.Errorf("record %s: %v", raw, err)
			}
			seen[h.ID]++
		}
	}
	return seen
}

// checkAll checks that every event is in the bucket at least once and returns how many extra copies there are.
func (e *env) checkAll(events []genEvent) int {
	e.t.Helper()
	seen := e.deliveredIDs()
	missing, dups := 0, 0
	for _, ev := range events {
		switch n := seen[ev.id]; {
		case n == 0:
			missing++
		case n > 1:
			dups += n - 1
		}
	}
	if missing > 0 {
		e.t.Errorf("%d of %d acknowledged events are missing from the bucket", missing, len(events))
	}
	return dups
}

func (e *env) startEnv(config, input string, exit bool, extra ...string) *hostrun.Proc {
	e.t.Helper()
	p, err := host.Start(config, input, append(e.p.Env(), extra...), exit)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// waitFor polls the state of an outside system (the bucket) until cond holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func acked(r *hostrun.Result) map[int]bool {
	out := map[int]bool{}
	for _, l := range r.Stdout {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "flush" && f[3] == "OK" {
			n, _ := strconv.Atoi(f[2])
			out[n] = true
		}
	}
	return out
}

// TestCrashLoop: 50 SIGKILLs at random moments while events flow (appends, seals and uploads under way),
// restarting on the same Store_Dir and re-sending what was not acknowledged, as Fluent Bit's filesystem storage
// does. Every acknowledged event ends up in the bucket, every object is valid, duplicates are counted.
func TestCrashLoop(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(5, 6))
	events := genEvents(t, 6000, rng, "ev-")
	cs := chunkEvents(events, rng, 20)
	conf := e.config("crash.conf", map[string]string{"Workers": "4", "Upload_Timeout": "1s", "Total_File_Size": "8K",
		"Shutdown_Timeout": "5s"})
	pending := cs
	kills, ackedChunks := 0, 0
	for ; kills < 50; kills++ {
		n := min(len(pending), 12+rng.IntN(8))
		batch := pending[:n]
		p := e.start(conf, e.input(fmt.Sprintf("in-%d.chunks", kills), batch), false)
		if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool { return r.Count("started") > 0 }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // a random moment is the point here
		p.Signal(syscall.SIGKILL)
		r := p.Wait(time.Minute)
		ok := acked(r)
		var again []chunk
		for i, c := range batch {
			if !ok[i] {
				again = append(again, c)
			}
		}
		ackedChunks += len(ok)
		pending = append(again, pending[n:]...)
	}
	r := e.runToEnd(conf, e.input("final.chunks", pending))
	if r.ExitCode != 0 || r.Summary("ok") != len(pending) {
		t.Fatalf("final run: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	dups := e.checkAll(events)
	t.Logf("%d SIGKILLs, %d chunks acknowledged before a kill, %d in the final run; %d events delivered more than once (%.2f%%)",
		kills, ackedChunks, len(pending), dups, 100*float64(dups)/float64(len(events)))
	e.onlyAllowedCalls()
}

// TestFaultsThenRecovery: with a proxy that answers 500 and 503 SlowDown, resets connections mid-body and after
// the server stored the object, and stalls past Request_Timeout, for S3 and for STS (whose sessions it keeps
// short so that the role is assumed again and again), nothing is lost; once it behaves, everything is delivered.
func TestFaultsThenRecovery(t *testing.T) {
	e := newEnv(t)
	px, err := faultproxy.Start(e.moto.URL, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.SetSessionLifetime(5 * time.Second)
	px.SetFaults("s3", true)
	px.SetFaults("sts", true)
	events, cs := smallInput(t, 1500)
	conf := e.config("faults.conf", map[string]string{"Endpoint": px.URL, "STS_Endpoint": px.URL, "Workers": "4",
		"Request_Timeout": "2s", "Upload_Timeout": "1s", "Total_File_Size": "10K", "Shutdown_Timeout": "60s",
		"Credential_Refresh_Window": "2s", "Credential_Refresh_Jitter": "1s"})
	p := e.start(conf, e.input("input.chunks", cs), false)
	if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool { return r.Count("flush ") >= len(cs) }); err != nil {
		t.Fatal(err)
	}
	err = px.WaitFor(3*time.Minute, func(c map[string]int) bool {
		for _, f := range faultproxy.AllFaults {
			if c["s3:"+string(f)] == 0 || c["sts:"+string(f)] == 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	px.SetFaults("s3", false)
	px.SetFaults("sts", false)
	p.Signal(syscall.SIGTERM)
	r := p.Wait(3 * time.Minute)
	if r.ExitCode != 0 || r.Summary("error") != 0 || r.Summary("dropped") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	if strings.Contains(r.Stderr, "batches stay in") {
		t.Errorf("not everything was delivered at shutdown:\n%s", tail(r.Stderr, 20))
	}
	dups := e.checkAll(events)
	t.Logf("faults injected %v; %d events delivered more than once (outcome-unknown uploads re-put under a new key)", px.Counts(), dups)
}

// TestReplicasNeverOverwrite: two plugin processes with their own Store_Dir write the same org and kind to the
// same versioned bucket, their key clocks pinned to the same millisecond. No key gets a second version and
// every event is there.
func TestReplicasNeverOverwrite(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(7, 8))
	all := genEvents(t, 1200, rng, "ev-")
	var events []genEvent
	for _, ev := range all {
		if ev.org == orgs[0] && ev.kind == "user" {
			events = append(events, ev)
		}
	}
	half := len(events) / 2
	frozen := plugin.FrozenKeyClockEnv + "=" + strconv.FormatInt(time.Now().UnixMilli(), 10)
	var procs []*hostrun.Proc
	for i, part := range [][]genEvent{events[:half], events[half:]} {
		conf := e.config(fmt.Sprintf("replica-%d.conf", i), map[string]string{"Store_Dir": filepath.Join(e.dir, fmt.Sprint("store-", i)),
			"Total_File_Size": "4K", "Upload_Timeout": "1s"})
		procs = append(procs, e.startEnv(conf, e.input(fmt.Sprintf("in-%d.chunks", i), chunkEvents(part, rng, 5)), true, frozen))
	}
	conflicts := 0
	for _, p := range procs {
		r := p.Wait(3 * time.Minute)
		if r.ExitCode != 0 {
			t.Fatalf("replica exit %d", r.ExitCode)
		}
		conflicts += strings.Count(r.Stderr, "already exists in S3")
	}
	if conflicts == 0 {
		t.Fatal("no key conflict happened: the test did not exercise conditional writes")
	}
	if dups := e.checkAll(events); dups != 0 {
		t.Errorf("%d duplicates without faults", dups)
	}
	t.Logf("%d key conflicts (412) resolved by moving to the next millisecond", conflicts)
}

// TestDiskLimitBackpressure: with a tiny Store_Dir_Limit_Size the host sees RETRY, nothing is dropped, and
// delivery resumes as uploads free space.
func TestDiskLimitBackpressure(t *testing.T) {
	e := newEnv(t)
	events, cs := smallInput(t, 1200)
	conf := e.config("disk.conf", map[string]string{"Store_Dir_Limit_Size": "20K", "Total_File_Size": "4K",
		"Upload_Timeout": "1s", "Workers": "2"})
	r := e.runToEnd(conf, e.input("input.chunks", cs))
	if r.ExitCode != 0 || r.Summary("dropped") != 0 || r.Summary("error") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	if r.Summary("retry") == 0 {
		t.Fatal("the host never saw RETRY: the limit was not reached")
	}
	for _, want := range []string{"over 80%", "over 95%", "Store_Dir_Limit_Size reached"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("no log line says %q", want)
		}
	}
	if dups := e.checkAll(events); dups != 0 {
		t.Errorf("%d duplicates: a refused chunk was partly kept", dups)
	}
	t.Logf("%d chunks, %d RETRY answers", len(cs), r.Summary("retry"))
}

func (e *env) setRolePolicy(actions string) {
	e.t.Helper()
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[%s],"Resource":"arn:aws:s3:::%s/*"}]}`, actions, e.p.Bucket)
	_, err := e.moto.IAM().PutRolePolicy(context.Background(), &iam.PutRolePolicyInput{RoleName: aws.String("wiv-audit-logs-sync"),
		PolicyName: aws.String("audit-logs-write"), PolicyDocument: aws.String(policy)})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestDeniedWritesHoldThenQuarantine: when the role may no longer write, data is held and logged (the status
// line counts the refusals and shows the waiting batches), and delivered once the policy is restored; held past
// Quarantine_After, it is in quarantine, not gone.
func TestDeniedWritesHoldThenQuarantine(t *testing.T) {
	e := newEnv(t)
	e.setRolePolicy(`"s3:GetObject"`)
	events, cs := smallInput(t, 200)
	conf := e.config("denied.conf", map[string]string{"Hold_Retry_Interval": "1s", "Upload_Timeout": "1s", "Status_Interval": "1s"})
	p := e.start(conf, e.input("input.chunks", cs), false)
	status := regexp.MustCompile(`status: 200 records accepted, .* 0 delivered in 0 objects; failed upload attempts: [0-9]+ retriable, [0-9]+ credentials, ([1-9][0-9]*) refused; .*; ([1-9][0-9]*) sealed batches waiting for upload; the oldest undelivered record arrived [0-9]+s ago`)
	var seen []string
	if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool {
		seen = status.FindStringSubmatch(r.Stderr)
		return strings.Contains(r.Stderr, "refused") && strings.Contains(r.Stderr, "s3:PutObject and s3:PutObjectAcl") && seen != nil
	}); err != nil {
		t.Fatalf("%v:\n%s", err, tail(p.Snapshot().Stderr, 10))
	}
	if len(e.deliveredIDs()) != 0 {
		t.Fatal("records were delivered while writes were denied")
	}
	t.Logf("status line while denied: %s refused attempts, %s batches waiting", seen[1], seen[2])
	e.setRolePolicy(`"s3:PutObject","s3:PutObjectAcl"`)
	waitFor(t, 2*time.Minute, "delivery after the policy was restored", func() bool { return len(e.deliveredIDs()) == len(events) })
	p.Signal(syscall.SIGTERM)
	p.Wait(time.Minute)
	e.checkAll(events)

	// Denied for longer than Quarantine_After: quarantined, with the records intact.
	e.setRolePolicy(`"s3:GetObject"`)
	rng := rand.New(rand.NewPCG(9, 10))
	late := genEvents(t, 300, rng, "late-")
	lateChunks := chunkEvents(late, rng, 10)
	conf = e.config("quarantine.conf", map[string]string{"Hold_Retry_Interval": "1s", "Upload_Timeout": "1s", "Quarantine_After": "3s"})
	p = e.start(conf, e.input("late.chunks", lateChunks), false)
	if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool { return strings.Contains(r.Stderr, "moved to quarantine") }); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGTERM)
	r := p.Wait(time.Minute)
	if !strings.Contains(r.Stderr, "to replay it after fixing the cause, stop Fluent Bit, run wivaudit store requeue ") {
		t.Errorf("the quarantine log line does not say how to replay")
	}
	found := map[string]bool{}
	objects, _ := filepath.Glob(filepath.Join(e.dir, "store", "quarantine", "*.json.gz"))
	batches, _ := filepath.Glob(filepath.Join(e.dir, "store", "batches", "*.json.gz"))
	for _, path := range append(objects, batches...) {
		body, _ := os.ReadFile(path)
		plain, err := gunzip(body)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var recs []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(plain, &recs); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, r := range recs {
			found[r.ID] = true
		}
	}
	for _, ev := range late {
		if !found[ev.id] {
			t.Errorf("event %s is neither quarantined nor buffered", ev.id)
		}
	}
	if len(objects) == 0 {
		t.Error("nothing was quarantined")
	}
	for id := range e.deliveredIDs() {
		if strings.HasPrefix(id, "late-") {
			t.Errorf("%s was delivered while writes were denied", id)
		}
	}
	t.Logf("%d batches quarantined, %d still held", len(objects), len(batches))
}

// TestDeletedBatchIsDropped: a batch whose object is deleted from Store_Dir while it is held (writes denied)
// leaves the upload queue with one error line naming it and its records, and is counted; it used to be
// retried forever. The other batches are delivered once writes are allowed again.
func TestDeletedBatchIsDropped(t *testing.T) {
	e := newEnv(t)
	e.setRolePolicy(`"s3:GetObject"`)
	events, cs := smallInput(t, 200)
	conf := e.config("deleted.conf", map[string]string{"Hold_Retry_Interval": "1s", "Upload_Timeout": "1s"})
	p := e.start(conf, e.input("input.chunks", cs), false)
	if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool { return strings.Contains(r.Stderr, "refused") }); err != nil {
		t.Fatalf("%v:\n%s", err, tail(p.Snapshot().Stderr, 10))
	}
	// A batch file is whole once its manifest is there: the object is written first.
	var objects []string
	waitFor(t, time.Minute, "a held batch with its manifest", func() bool {
		all, _ := filepath.Glob(filepath.Join(e.dir, "store", "batches", "*.json.gz"))
		objects = slices.DeleteFunc(all, func(o string) bool {
			_, err := os.Stat(strings.TrimSuffix(o, ".json.gz") + ".manifest.json")
			return err != nil
		})
		return len(objects) > 0
	})
	var manifest struct {
		Key     string `json:"key"`
		Org     string `json:"org_id"`
		Kind    string `json:"kind"`
		Records int    `json:"records"`
	}
	data, err := os.ReadFile(strings.TrimSuffix(objects[0], ".json.gz") + ".manifest.json")
	if err == nil {
		err = json.Unmarshal(data, &manifest)
	}
	body, _ := os.ReadFile(objects[0])
	plain, gzErr := gunzip(body)
	var lost []struct {
		ID string `json:"id"`
	}
	if err != nil || gzErr != nil || json.Unmarshal(plain, &lost) != nil || len(lost) != manifest.Records {
		t.Fatalf("batch %s: %v, %v, %d records read, manifest %+v", objects[0], err, gzErr, len(lost), manifest)
	}
	if err := os.Remove(objects[0]); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("batch %s (%d records of %s/%s) cannot be delivered: its object %s is gone from Store_Dir", manifest.Key,
		manifest.Records, manifest.Org, manifest.Kind, objects[0])
	if err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool { return strings.Contains(r.Stderr, line) }); err != nil {
		t.Fatalf("%v: no line says %q:\n%s", err, line, tail(p.Snapshot().Stderr, 10))
	}
	e.setRolePolicy(`"s3:PutObject","s3:PutObjectAcl"`)
	waitFor(t, 2*time.Minute, "delivery of the other batches", func() bool { return len(e.deliveredIDs()) == len(events)-len(lost) })
	p.Signal(syscall.SIGTERM)
	r := p.Wait(time.Minute)
	if n := strings.Count(r.Stderr, "cannot be delivered: its object"); n != 1 || !strings.Contains(r.Stderr, "0 batches quarantined, 1 batches lost (their files were deleted from Store_Dir)") {
		t.Errorf("%d lines for a deleted batch, or it is not counted:\n%s", n, tail(r.Stderr, 10))
	}
	delivered := e.deliveredIDs()
	for _, ev := range lost {
		if delivered[ev.ID] != 0 {
			t.Errorf("%s, in the deleted batch, was delivered", ev.ID)
		}
	}
	for id, n := range delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
}

// TestCredentialsDoNotLapse: with sessions that last 6 s (the proxy shortens them and refuses lapsed keys with
// ExpiredToken), a 24 s run with uploads every second never meets an expired credential.
func TestCredentialsDoNotLapse(t *testing.T) {
	e := newEnv(t)
	px, err := faultproxy.Start(e.moto.URL, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.SetSessionLifetime(6 * time.Second)
	conf := e.config("expiry.conf", map[string]string{"Endpoint": px.URL, "STS_Endpoint": px.URL, "Upload_Timeout": "1s",
		"Credential_Refresh_Window": "3s", "Credential_Refresh_Jitter": "1s"})
	p := e.start(conf, "-", false)
	rng := rand.New(rand.NewPCG(11, 12))
	events := genEvents(t, 600, rng, "ev-")
	// sendUntil feeds events five at a time, over time the way a tail input does, until done holds or the
	// events run out; it returns how many it sent.
	sendUntil := func(evs []genEvent, done func() bool) int {
		i := 0
		for ; i < len(evs) && !done(); i += 5 {
			var data []byte
			for _, ev := range evs[i : i+5] {
				data = append(data, chunks.V2(chunks.EventTime(time.Now()), ev.body)...)
			}
			if err := chunks.WriteFrame(p.Stdin, "audit."+evs[i].kind, data); err != nil {
				t.Fatal(err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		return i
	}
	send := func(evs []genEvent) { sendUntil(evs, func() bool { return false }) }
	start := time.Now()
	send(events[:400])
	c := px.Counts()
	if c["expired"] != 0 {
		t.Errorf("%d uploads met an expired credential", c["expired"])
	}
	lifetimes := int(time.Since(start) / (6 * time.Second))
	if c["sts:AssumeRole"] < lifetimes {
		t.Errorf("the role was assumed %d times in %d session lifetimes", c["sts:AssumeRole"], lifetimes)
	}
	// A session that lapses early (revoked, clock skew) is refused with ExpiredToken: the plugin drops it and
	// assumes the role again instead of waiting out a backoff. Sessions last an hour from now on, so that once
	// the plugin holds one it does not renew it by itself before the revocation is met. The plugin renews only
	// when an upload needs credentials, so events keep arriving until it has renewed.
	px.SetSessionLifetime(time.Hour)
	renewed := func(c map[string]int) bool { return c["sts:issued:1h0m0s"] > 0 }
	n := 400 + sendUntil(events[400:560], func() bool { return renewed(px.Counts()) })
	if err := px.WaitFor(10*time.Second, renewed); err != nil {
		t.Fatalf("no hour-long session after %d more events over two 6 s lifetimes: %v", n-400, err)
	}
	px.ExpireAll()
	send(events[n:])
	p.Stdin.Close()
	p.Signal(syscall.SIGTERM)
	r := p.Wait(time.Minute)
	if r.ExitCode != 0 {
		t.Fatalf("exit %d", r.ExitCode)
	}
	if px.Counts()["expired"] == 0 || !strings.Contains(r.Stderr, "credentials were refused") || !strings.Contains(r.Stderr, "assuming the role again") {
		t.Errorf("the early expiry was not met or not handled: %v", px.Counts())
	}
	e.checkAll(events)
	final := px.Counts()
	t.Logf("first %d session lifetimes: %d AssumeRole calls, 0 expired; after revoking every session: %d ExpiredToken answers, %d AssumeRole calls in all, %d PUTs, every event delivered",
		lifetimes, c["sts:AssumeRole"], final["expired"], final["sts:AssumeRole"], final["s3:PUT"])
}
