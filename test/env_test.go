package test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/hostrun"
)

var host hostrun.Host

// secrets are the values that must never appear in a log line of the suite.
var secrets struct {
	sync.Mutex
	values []string
}

func secret(v string) {
	secrets.Lock()
	secrets.values = append(secrets.values, v)
	secrets.Unlock()
}

// motoSessionToken matches the session tokens moto issues.
var motoSessionToken = regexp.MustCompile(`FQoGZXIvYXdzE[A-Za-z0-9+/=]{20,}`)

// checkLogs fails the suite when any host's log shows a secret: an External ID, a secret key or a session token.
func checkLogs(path string) error {
	logs, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no host ran
	}
	if err != nil {
		return err
	}
	secrets.Lock()
	defer secrets.Unlock()
	for _, v := range secrets.values {
		if i := bytes.Index(logs, []byte(v)); i >= 0 {
			return fmt.Errorf("a log line shows a secret: %q", logs[max(0, i-200):min(len(logs), i+len(v)+50)])
		}
	}
	if m := motoSessionToken.Find(logs); m != nil {
		return fmt.Errorf("a log line shows a session token: %.40s...", m)
	}
	fmt.Fprintf(os.Stderr, "checked %d bytes of host logs for %d secrets and session tokens: none shown\n", len(logs), len(secrets.values))
	return nil
}

// TestMain uses the plugin and host that `make integration` built, or builds them, and checks every log.
func TestMain(m *testing.M) {
	host = hostrun.Host{Plugin: os.Getenv("WIVAUDIT_PLUGIN"), Bin: os.Getenv("WIVAUDIT_HOST")}
	if host.Plugin == "" || host.Bin == "" {
		cmd := exec.Command("make", "-C", "..", "build", "host")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the plugin and host:", err)
			os.Exit(1)
		}
		host.Plugin, _ = filepath.Abs("../build/out_wivaudit.so")
		host.Bin, _ = filepath.Abs("../build/flbhost")
	}
	logDir, err := os.MkdirTemp("", "wivaudit-logs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	host.LogFile = filepath.Join(logDir, "hosts.log")
	secret(externalID)
	code := m.Run()
	if code == 0 {
		if err := checkLogs(host.LogFile); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	os.RemoveAll(logDir)
	os.Exit(code)
}

// env is one test's world: a moto set up as a customer would, and a folder for configs, inputs and the store.
type env struct {
	t    *testing.T
	dir  string
	moto *backend.Moto
	p    *backend.Platform
}

const externalID = "681d1539-fd63-4e6e-9426-fccdfdae1862"

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	m, err := backend.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	p, err := m.Setup(context.Background(), "your-company-audit-logs", externalID)
	if err != nil {
		t.Fatal(err)
	}
	secret(p.SecretKey)
	return &env{t: t, dir: dir, moto: m, p: p}
}

// config writes a Fluent Bit configuration with one wivaudit output. Settings in over replace or add to the
// defaults below; an empty value removes the setting. By default the output is the platform's archive: every
// organisation goes to the platform's bucket, as most tests need.
func (e *env) config(name string, over map[string]string) string {
	return e.configN(name, over)
}

// configN writes a configuration with one wivaudit output per map of overrides.
func (e *env) configN(name string, outputs ...map[string]string) string {
	e.t.Helper()
	var b strings.Builder
	b.WriteString("[SERVICE]\n    Grace 5\n    scheduler.base 1\n    scheduler.cap 2\n    Log_Level info\n")
	for _, over := range outputs {
		settings := [][2]string{
			{"Name", "wivaudit"}, {"Match", "audit.*"}, {"Workers", "2"}, {"Retry_Limit", "no_limits"},
			{"Bucket", e.p.Bucket}, {"Region", "us-east-1"}, {"Role_ARN", e.p.RoleARN}, {"External_ID", e.p.ExternalID},
			{"Endpoint", e.moto.URL}, {"STS_Endpoint", e.moto.URL}, {"Store_Dir", filepath.Join(e.dir, "store")},
			{"Upload_Timeout", "2s"}, {"Total_File_Size", "200K"}, {"Shutdown_Timeout", "20s"},
			{"Allow_Plain_HTTP", "on"}, {"Unlisted_Orgs", "archive"}, // the bucket takes every organisation
		}
		b.WriteString("\n[OUTPUT]\n")
		seen := map[string]bool{}
		for _, kv := range settings {
			v, ok := over[kv[0]]
			seen[kv[0]] = true
			if !ok {
				v = kv[1]
			}
			if v != "" {
				fmt.Fprintf(&b, "    %s %s\n", kv[0], v)
			}
		}
		for k, v := range over {
			if !seen[k] && v != "" {
				fmt.Fprintf(&b, "    %s %s\n", k, v)
			}
		}
	}
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// input writes chunks (tag, bytes) in the host's framing.
func (e *env) input(name string, cs []chunk) string {
	e.t.Helper()
	var buf bytes.Buffer
	for _, c := range cs {
		chunks.WriteFrame(&buf, c.tag, c.data)
	}
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

type chunk struct {
	tag  string
	data []byte
}

// run starts the host; with exit it stops by itself once the input is flushed, and run waits for that.
func (e *env) start(config, input string, exit bool) *hostrun.Proc {
	e.t.Helper()
	p, err := host.Start(config, input, e.p.Env(), exit)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) runToEnd(config, input string) *hostrun.Result {
	e.t.Helper()
	r := e.start(config, input, true).Wait(5 * time.Minute)
	e.t.Logf("host stderr:\n%s", tail(r.Stderr, 40))
	return r
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = append([]string{fmt.Sprintf("... %d lines before ...", len(l)-lines)}, l[len(l)-lines:]...)
	}
	return strings.Join(l, "\n")
}

var keyPattern = regexp.MustCompile(`^(?:copy/)?([^/]+)/(org|user|api)-audit-logs-[0-9]{13}\.json\.gz$`)

// delivered downloads every object and returns its records (raw JSON) by key, checking that each key has one
// version, matches the naming contract, and holds valid gzip of one JSON array.
func (e *env) delivered() map[string][]json.RawMessage {
	e.t.Helper()
	ctx := context.Background()
	objects, err := e.moto.Objects(ctx, e.p.Bucket)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]json.RawMessage{}
	for _, key := range backend.SortedKeys(objects) {
		if objects[key] != 1 {
			e.t.Errorf("%s has %d versions: an object was overwritten", key, objects[key])
		}
		if !keyPattern.MatchString(key) {
			e.t.Errorf("key %q does not match %s", key, keyPattern)
		}
		body, err := e.moto.Get(ctx, e.p.Bucket, key)
		if err != nil {
			e.t.Fatal(err)
		}
		plain, err := gunzip(body)
		if err != nil {
			e.t.Errorf("%s is not valid gzip: %v", key, err)
			continue
		}
		var recs []json.RawMessage
		if err := json.Unmarshal(plain, &recs); err != nil {
			e.t.Errorf("%s does not hold one JSON array: %v", key, err)
			continue
		}
		out[key] = recs
	}
	return out
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// onlyAllowedCalls checks, from the server's recording, that nothing but AssumeRole and PutObject was asked.
func (e *env) onlyAllowedCalls() map[string]int {
	e.t.Helper()
	reqs, err := e.moto.Requests()
	if err != nil {
		e.t.Fatal(err)
	}
	ops := map[string]int{}
	for _, r := range reqs {
		if e.moto.ByAdmin(r) {
			continue
		}
		ops[r.Operation()]++
	}
	for op, n := range ops {
		if op != "AssumeRole" && op != "PutObject" {
			e.t.Errorf("the server saw %d %s requests; only AssumeRole and PutObject are allowed", n, op)
		}
	}
	return ops
}

// deadLetters reads the dead-letter file.
func (e *env) deadLetters() []map[string]any { return e.deadLettersIn("store") }

// deadLettersIn reads the dead-letter file of the Store_Dir named store.
func (e *env) deadLettersIn(store string) []map[string]any {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.dir, store, "deadletter.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			e.t.Fatalf("dead-letter line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLogCheckFindsSecrets: the end-of-suite log check does catch a secret and a session token.
func TestLogCheckFindsSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	for _, line := range []string{"[warn] assuming role with external id " + externalID,
		"[debug] token FQoGZXIvYXdzEJr//////////wEaDOc8R6"} {
		os.WriteFile(path, []byte("[info] fine\n"+line+"\n"), 0o600)
		if err := checkLogs(path); err == nil {
			t.Errorf("the check missed %q", line)
		}
	}
	os.WriteFile(path, []byte("[info] nothing to hide\n"), 0o600)
	if err := checkLogs(path); err != nil {
		t.Errorf("false alarm: %v", err)
	}
}

// storedStreams opens a Store_Dir the plugin has left, as the next start would, and returns the streams
// ("org/kind") that have sealed batches waiting (batch files or in the log) and those that have records in the
// log still to seal.
func storedStreams(t *testing.T, dir string) (sealed, unsealed map[string]bool) {
	t.Helper()
	s, rec, err := buffer.Open(dir, buffer.Options{MaxBatch: 1 << 30, QuarantineLimit: 1 << 30, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sealed, unsealed = map[string]bool{}, map[string]bool{}
	for _, b := range rec.Batches {
		sealed[b.Stream().String()] = true
	}
	for _, p := range rec.InLog {
		sealed[p.Stream.String()] = true
	}
	for _, p := range s.TakeClosed() {
		unsealed[p.Stream.String()] = true
	}
	return sealed, unsealed
}
