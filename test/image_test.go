package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/test/chunks"
)

// localClassicExample writes examples/fluent-bit.conf as it would run on this machine: its absolute paths
// moved into dir, and its wivaudit output pointed at moto (the only keys added; Shutdown_Timeout because moto
// answers slowly). Nothing else of the shipped file changes.
func (e *env) localClassicExample(destinations string) string {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "examples", "fluent-bit.conf"))
	if err != nil {
		e.t.Fatal(err)
	}
	text := strings.NewReplacer("/fluent-bit/etc/destinations.json", destinations,
		"/var/lib/fluent-bit/", e.dir+"/").Replace(string(data))
	extra := "    Endpoint " + e.moto.URL + "\n    STS_Endpoint " + e.moto.URL + "\n    Allow_Plain_HTTP on\n    Shutdown_Timeout 30s\n"
	var out strings.Builder
	inOutput := false
	for _, line := range strings.SplitAfter(text, "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "[") {
			if inOutput {
				out.WriteString(extra)
			}
			inOutput = strings.EqualFold(t, "[OUTPUT]")
		} else if k, _, _ := strings.Cut(t, " "); inOutput && slices.ContainsFunc([]string{"Endpoint", "STS_Endpoint", "Allow_Plain_HTTP", "Shutdown_Timeout"}, func(x string) bool { return strings.EqualFold(x, k) }) {
			e.t.Fatalf("fluent-bit.conf sets %s, which this test sets for moto", k)
		}
		out.WriteString(line)
	}
	if inOutput {
		out.WriteString(extra)
	}
	path := filepath.Join(e.dir, "fluent-bit.conf")
	if err := os.WriteFile(path, []byte(out.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// exampleEvents turns examples/events/<tag>.jsonl into one chunk per file, as the tail inputs would, and
// returns the event ids per organisation.
func (e *env) exampleEvents() (string, map[string][]string) {
	e.t.Helper()
	files, _ := filepath.Glob(filepath.Join("..", "examples", "events", "*.jsonl"))
	var cs []chunk
	ids := map[string][]string{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			e.t.Fatal(err)
		}
		var c chunk
		c.tag = strings.TrimSuffix(filepath.Base(file), ".jsonl")
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var ev struct {
				ID  string `json:"id"`
				Org string `json:"org_id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				e.t.Fatalf("%s: %v", file, err)
			}
			body, err := chunks.FromJSON(sc.Bytes())
			if err != nil {
				e.t.Fatal(err)
			}
			c.data = append(c.data, chunks.V2(chunks.EventTime(time.Now()), body)...)
			ids[ev.Org] = append(ids[ev.Org], ev.ID)
		}
		cs = append(cs, c)
	}
	return e.input("events.chunks", cs), ids
}

// runClassicExample runs examples/fluent-bit.conf through the host with the given plugin against moto, where
// the two customers of examples/destinations.json have set up their buckets and roles with the External IDs
// the file lists, and checks that each customer's bucket holds exactly its organisation's sample events, under
// the key prefix the file gives it.
func runClassicExample(t *testing.T, plugin string) {
	e := newEnv(t)
	data, err := os.ReadFile(filepath.Join("..", "examples", "destinations.json"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []map[string]string
	if err := json.Unmarshal(data, &entries); err != nil {
		t.Fatal(err)
	}
	for i, d := range entries {
		secret(d["external_id"])
		if d["bucket_name"] == e.p.Bucket && d["external_id"] == e.p.ExternalID {
			d["role_arn"] = e.p.RoleARN
		} else if d["role_arn"], err = e.moto.AddCustomer(context.Background(), e.p, d["bucket_name"], "wiv-example-"+string(rune('a'+i)), d["external_id"]); err != nil {
			t.Fatal(err)
		}
		delete(d, "region") // moto keeps every bucket in one region
	}
	destinations := filepath.Join(e.dir, "destinations.json")
	out, _ := json.Marshal(entries)
	if err := os.WriteFile(destinations, out, 0o600); err != nil {
		t.Fatal(err)
	}
	input, ids := e.exampleEvents()

	h := host
	h.Plugin = plugin
	p, err := h.Start(e.localClassicExample(destinations), input, e.p.Env(), true)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Wait(3 * time.Minute)
	t.Logf("host stderr:\n%s", tail(r.Stderr, 20))
	if r.ExitCode != 0 || r.Summary("error") != 0 || r.Summary("retry") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	listed := map[string]bool{}
	for _, d := range entries {
		listed[d["org_id"]] = true
		got := e.bucketRecords(d["bucket_name"])
		want := ids[d["org_id"]]
		if len(want) == 0 || len(got) != len(want) {
			t.Errorf("%s holds %d events, want the %d of %s", d["bucket_name"], len(got), len(want), d["org_id"])
		}
		for _, id := range want {
			keys := got[id]
			if len(keys) != 1 || !strings.HasPrefix(keys[0], d["key_prefix"]+d["org_id"]+"/") {
				t.Errorf("event %s of %s is at %v in %s, want once under %s%s/", id, d["org_id"], keys, d["bucket_name"], d["key_prefix"], d["org_id"])
			}
		}
	}
	// The samples also hold an event whose org_id is not a safe organisation ID: it is kept aside.
	var rejected []string
	for org, evs := range ids {
		if !listed[org] {
			rejected = append(rejected, evs...)
		}
	}
	dead := e.deadLettersIn("wivaudit")
	if len(rejected) == 0 || len(dead) != len(rejected) {
		t.Errorf("dead letters %v, want the events of organisations the file does not list: %v", dead, rejected)
	}
	for _, m := range dead {
		if id := asString(at(m, "record", "id")); !slices.Contains(rejected, id) {
			t.Errorf("dead letter %v is not one of %v", m, rejected)
		}
	}
}

// TestClassicExampleDelivers: the shipped production configuration, run as it is through the host, delivers
// the sample events of both customers to their own buckets.
func TestClassicExampleDelivers(t *testing.T) {
	runClassicExample(t, host.Plugin)
}

// dockerfile is what the tests need from the Dockerfile.
type dockerfile struct {
	goBuild    []string // the RUN line that builds the plugin, split into words
	baseImages []string
	args       map[string]string
	volumes    []string
	copied     []string // files copied from the build context
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{args: map[string]string{}}
	for _, line := range strings.Split(string(data), "\n") {
		words := strings.Fields(line)
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		switch words[0] {
		case "RUN":
			if slices.Contains(words, "build") && slices.Contains(words, "go") {
				d.goBuild = words[1:]
			}
		case "FROM":
			d.baseImages = append(d.baseImages, words[1])
		case "ARG":
			k, v, _ := strings.Cut(words[1], "=")
			d.args[k] = v
		case "VOLUME":
			d.volumes = append(d.volumes, words[1:]...)
		case "COPY":
			if !strings.HasPrefix(words[1], "--from") && words[1] != "." {
				d.copied = append(d.copied, words[1:len(words)-1]...)
			}
		}
	}
	return d
}

// TestDockerfile: the image's Fluent Bit version is a build argument, its storage is a volume that holds the
// classic example's storage.path and Store_Dir, and every file it copies exists.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if v := d.args["FLUENT_BIT_VERSION"]; !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("ARG FLUENT_BIT_VERSION=%q, want a default version such as 4.2.8", v)
	}
	if !slices.Contains(d.baseImages, "fluent/fluent-bit:${FLUENT_BIT_VERSION}") {
		t.Errorf("FROM %v: the Fluent Bit image does not use the FLUENT_BIT_VERSION argument", d.baseImages)
	}
	if !slices.ContainsFunc(d.baseImages, func(s string) bool { return strings.HasSuffix(s, "-bookworm") }) {
		t.Errorf("FROM %v: the plugin is not built on Debian 12 (bookworm), the Fluent Bit image's release", d.baseImages)
	}
	for _, s := range readSections(t, filepath.Join("..", "examples", "fluent-bit.conf")) {
		for _, key := range []string{"storage.path", "Store_Dir", "DB"} {
			if p := s.keys.Get(key); p != "" {
				if _, ok := mountFor(mountsAt(d.volumes), p); !ok {
					t.Errorf("%s %s is on no VOLUME %v", key, p, d.volumes)
				}
			}
		}
	}
	for _, f := range d.copied {
		if _, err := os.Stat(filepath.Join("..", f)); err != nil {
			t.Errorf("COPY %s: %v", f, err)
		}
	}
}

func mountsAt(paths []string) []mount {
	var out []mount
	for _, p := range paths {
		out = append(out, mount{path: p})
	}
	return out
}

// TestDockerfileBuildDelivers: the .so built by the Dockerfile's own build command (its output moved to a
// temporary folder) loads in the host and delivers the classic example.
func TestDockerfileBuildDelivers(t *testing.T) {
	words := readDockerfile(t).goBuild
	var env []string
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env, words = append(env, words[0]), words[1:]
	}
	o := slices.Index(words, "-o")
	if len(words) < 2 || words[0] != "go" || words[1] != "build" || o < 0 || !slices.Contains(words, "-buildmode=c-shared") {
		t.Fatalf("the Dockerfile's build line is not a go build -buildmode=c-shared -o ...: %v", words)
	}
	so := filepath.Join(t.TempDir(), "out_wivaudit.so")
	words[o+1] = so
	cmd := exec.Command(words[0], words[1:]...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", words, err, out)
	}
	runClassicExample(t, so)
}
