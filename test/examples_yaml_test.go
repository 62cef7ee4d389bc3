package test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wiv/out_wivaudit/conf"
)

// yamlDocs decodes every document of a YAML file (Kubernetes manifests hold several).
func yamlDocs(t *testing.T, data []byte, where string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asList(v any) []any         { l, _ := v.([]any); return l }
func asString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// at follows a path of map keys.
func at(v any, keys ...string) any {
	for _, k := range keys {
		v = asMap(v)[k]
	}
	return v
}

// flbOutput is one wivaudit output of a Fluent Bit configuration: its settings as written, and as the plugin
// reads them.
type flbOutput struct {
	raw conf.Map
	c   *conf.Config
}

// flbYAML is what the checks of a deployment need from a Fluent Bit YAML configuration.
type flbYAML struct {
	storagePath string
	grace       time.Duration
	tailPaths   []string
	outputs     []flbOutput
}

// Fluent Bit 4.x's root sections of a YAML configuration.
var flbRootSections = []string{"env", "includes", "service", "parsers", "multiline_parsers", "pipeline", "plugins", "customs"}

// checkFluentBitYAML checks a Fluent Bit YAML configuration as the examples promise it: only known root
// sections; filesystem storage for every input; tags whose last part is a kind, and matched by an output;
// parsers defined; every wivaudit output valid for the plugin, with its own Store_Dir. dir is where a relative
// parsers_file is looked up.
func checkFluentBitYAML(t *testing.T, where string, doc map[string]any, dir string) flbYAML {
	t.Helper()
	for k := range doc {
		if !slices.Contains(flbRootSections, k) {
			t.Errorf("%s: %q is not a section of Fluent Bit's YAML configuration", where, k)
		}
	}
	var out flbYAML
	service := asMap(doc["service"])
	if out.storagePath = asString(service["storage.path"]); !filepath.IsAbs(out.storagePath) {
		t.Errorf("%s: service needs an absolute storage.path for filesystem buffering, has %q", where, out.storagePath)
	}
	out.grace = 5 * time.Second // Fluent Bit's default
	if g := asString(service["grace"]); g != "" {
		d, err := conf.ParseDuration(g)
		if err != nil {
			t.Errorf("%s: grace %q: %v", where, g, err)
		}
		out.grace = d
	}
	parsers := map[string]bool{}
	for _, p := range asList(doc["parsers"]) {
		parsers[asString(asMap(p)["name"])] = true
	}
	if file := asString(service["parsers_file"]); file != "" {
		for _, p := range readSections(t, filepath.Join(dir, file)) {
			parsers[p.keys.Get("Name")] = p.name == "PARSER"
		}
	}

	var matches []string
	stores := map[string]bool{}
	for i, o := range asList(at(doc, "pipeline", "outputs")) {
		m := asMap(o)
		matches = append(matches, asString(m["match"]))
		if !strings.EqualFold(asString(m["name"]), "wivaudit") {
			continue
		}
		raw := conf.Map{}
		for k, v := range m {
			raw[k] = asString(v)
		}
		c, err := conf.Parse(raw)
		if err != nil {
			t.Errorf("%s: output %d: %v", where, i, err)
			continue
		}
		if stores[c.StoreDir] {
			t.Errorf("%s: two outputs share Store_Dir %s (each needs its own)", where, c.StoreDir)
		}
		stores[c.StoreDir] = true
		if !c.Archive() && c.DestinationsFile == "" {
			t.Errorf("%s: output %d does not deliver through a destinations file, as the README recommends", where, i)
		}
		out.outputs = append(out.outputs, flbOutput{raw: raw, c: c})
	}
	if len(out.outputs) == 0 {
		t.Errorf("%s: no wivaudit output", where)
	}

	inputs := asList(at(doc, "pipeline", "inputs"))
	if len(inputs) == 0 {
		t.Errorf("%s: no input", where)
	}
	for i, in := range inputs {
		m := asMap(in)
		name := asString(m["name"])
		if st := asString(m["storage.type"]); st != "filesystem" {
			t.Errorf("%s: input %d (%s) has storage.type %q: audit events need filesystem", where, i, name, st)
		}
		if p := asString(m["parser"]); p != "" && !parsers[p] {
			t.Errorf("%s: input %d uses parser %q, which is not defined", where, i, p)
		}
		tag := asString(m["tag"])
		switch name {
		case "tail":
			out.tailPaths = append(out.tailPaths, asString(m["path"]))
		case "forward":
			if tag == "" { // the client's tag, with the prefix
				tag = asString(m["tag_prefix"]) + "org"
			}
		case "http":
			if tag == "" {
				continue // the URI is the tag
			}
		}
		if kind := tag[strings.LastIndex(tag, ".")+1:]; !slices.Contains(kinds, kind) {
			t.Errorf("%s: input %d (%s) tags its events %q, whose last part is not a kind", where, i, name, tag)
		}
		if !slices.ContainsFunc(matches, func(p string) bool { return tagMatches(p, tag) }) {
			t.Errorf("%s: input %d (%s): no output matches its tag %q", where, i, name, tag)
		}
	}
	return out
}

// tagMatches is Fluent Bit's wildcard match, '*' standing for any run of characters.
func tagMatches(pattern, tag string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$"
	return regexp.MustCompile(re).MatchString(tag)
}

// TestShippedYAMLConfigurations: every Fluent Bit YAML configuration in examples/ is one the plugin accepts,
// with filesystem storage and tags per kind.
func TestShippedYAMLConfigurations(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if len(files) < 2 {
		t.Fatalf("examples/*.yaml: %v, want fluent-bit.yaml and multi-tenant.yaml", files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			docs := yamlDocs(t, data, file)
			if len(docs) != 1 {
				t.Fatalf("%d documents, want one", len(docs))
			}
			checkFluentBitYAML(t, file, docs[0], filepath.Dir(file))
		})
	}
}

// TestYAMLMatchesClassicExample: fluent-bit.yaml says what fluent-bit.conf says, key for key.
func TestYAMLMatchesClassicExample(t *testing.T) {
	classic := map[string][]conf.Map{}
	for _, s := range readSections(t, filepath.Join("..", "examples", "fluent-bit.conf")) {
		classic[s.name] = append(classic[s.name], s.keys)
	}
	data, err := os.ReadFile(filepath.Join("..", "examples", "fluent-bit.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := yamlDocs(t, data, "fluent-bit.yaml")[0]
	yamlSections := map[string][]any{"SERVICE": {doc["service"]}, "INPUT": asList(at(doc, "pipeline", "inputs")),
		"OUTPUT": asList(at(doc, "pipeline", "outputs"))}
	for name, sections := range yamlSections {
		if len(sections) != len(classic[name]) {
			t.Errorf("%d %s sections in YAML, %d in the classic file", len(sections), name, len(classic[name]))
			continue
		}
		for i, s := range sections {
			keys := asMap(s)
			if len(keys) != len(classic[name][i]) {
				t.Errorf("%s %d: %d keys in YAML, %d in the classic file", name, i, len(keys), len(classic[name][i]))
			}
			for k, v := range keys {
				if want := classic[name][i].Get(k); !strings.EqualFold(asString(v), want) {
					t.Errorf("%s %d: %s is %q in YAML, %q in the classic file", name, i, k, asString(v), want)
				}
			}
		}
	}
}

// manifests indexes a file's Kubernetes objects by kind and name.
type manifests map[string]map[string]any

func (m manifests) get(kind, name string) map[string]any { return asMap(m[kind+"/"+name]) }

// mount is one of a container's volume mounts.
type mount struct {
	volume, path string
	readOnly     bool
}

func mounts(container map[string]any) []mount {
	var out []mount
	for _, v := range asList(container["volumeMounts"]) {
		vm := asMap(v)
		out = append(out, mount{volume: asString(vm["name"]), path: asString(vm["mountPath"]), readOnly: vm["readOnly"] == true})
	}
	return out
}

// mountFor returns the mount a path lies under.
func mountFor(ms []mount, p string) (mount, bool) {
	for _, m := range ms {
		if p == m.path || strings.HasPrefix(p, strings.TrimSuffix(m.path, "/")+"/") {
			return m, true
		}
	}
	return mount{}, false
}

// checkWorkload checks a pod template running Fluent Bit with the plugin: its configuration and the
// destinations file come from a ConfigMap of the same file, storage.path and Store_Dir are on writable volumes,
// AWS credentials come from IRSA, the readiness probe asks the plugin's /healthz, and the pod has time to
// shut down. It returns the Fluent Bit container's mounts, the parsed configuration, and the pod spec.
func checkWorkload(t *testing.T, objs manifests, kind, name string) ([]mount, flbYAML, map[string]any) {
	t.Helper()
	where := kind + "/" + name
	pod := asMap(at(objs.get(kind, name), "spec", "template", "spec"))
	var fb map[string]any
	for _, list := range []string{"initContainers", "containers"} {
		for _, c := range asList(pod[list]) {
			if asString(asMap(c)["name"]) == "fluent-bit" {
				fb = asMap(c)
				if list == "initContainers" && asString(fb["restartPolicy"]) != "Always" {
					t.Errorf("%s: fluent-bit is an init container without restartPolicy Always: the pod would wait for it to end", where)
				}
			}
		}
	}
	if fb == nil {
		t.Fatalf("%s: no fluent-bit container", where)
	}
	ms := mounts(fb)
	args := asList(fb["args"])
	i := slices.IndexFunc(args, func(a any) bool { return asString(a) == "-c" })
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("%s: the fluent-bit container's args do not pick a configuration with -c: %v", where, args)
	}
	configPath := asString(args[i+1])
	configMapFile := func(p string) []byte {
		t.Helper()
		m, ok := mountFor(ms, p)
		if !ok {
			t.Fatalf("%s: %s is on no volume of the fluent-bit container", where, p)
		}
		for _, v := range asList(pod["volumes"]) {
			if vol := asMap(v); asString(vol["name"]) == m.volume {
				cm := asString(at(vol, "configMap", "name"))
				data := asString(at(objs.get("ConfigMap", cm), "data", path.Base(p)))
				if data == "" || path.Dir(p) != m.path {
					t.Fatalf("%s: %s is not a key of ConfigMap %q mounted at %s", where, p, cm, m.path)
				}
				return []byte(data)
			}
		}
		t.Fatalf("%s: volume %s of %s is not a ConfigMap", where, m.volume, p)
		return nil
	}
	flb := checkFluentBitYAML(t, where+" "+configPath, yamlDocs(t, configMapFile(configPath), configPath)[0], "")

	writable := func(what, p string) {
		if m, ok := mountFor(ms, p); !ok || m.readOnly {
			t.Errorf("%s: %s %s is not on a writable volume of the fluent-bit container", where, what, p)
		}
	}
	writable("storage.path", flb.storagePath)
	var metricsPort string
	var shutdown time.Duration
	for _, o := range flb.outputs {
		writable("Store_Dir", o.c.StoreDir)
		if o.c.DestinationsFile != "" {
			if _, err := conf.ParseDestinations(configMapFile(o.c.DestinationsFile), o.c); err != nil {
				t.Errorf("%s: %s: %v", where, o.c.DestinationsFile, err)
			}
		}
		if l := o.raw.Get("Metrics_Listen"); l != "" {
			metricsPort = l[strings.LastIndex(l, ":")+1:]
		}
		shutdown = max(shutdown, o.c.ShutdownTimeout)
	}

	sa := asString(pod["serviceAccountName"])
	arn := asString(at(objs.get("ServiceAccount", sa), "metadata", "annotations", "eks.amazonaws.com/role-arn"))
	if !regexp.MustCompile(`^arn:aws:iam::\d{12}:role/.+`).MatchString(arn) {
		t.Errorf("%s: ServiceAccount %q has no IRSA role annotation (eks.amazonaws.com/role-arn), has %q", where, sa, arn)
	}
	for _, e := range asList(fb["env"]) {
		if n := asString(asMap(e)["name"]); strings.HasPrefix(n, "AWS_ACCESS_KEY") || strings.HasPrefix(n, "AWS_SECRET") {
			t.Errorf("%s: AWS keys in the environment (%s): credentials come from the ServiceAccount", where, n)
		}
	}

	probe := asMap(at(fb, "readinessProbe", "httpGet"))
	port := asString(probe["port"])
	for _, p := range asList(fb["ports"]) {
		if asString(asMap(p)["name"]) == port {
			port = asString(asMap(p)["containerPort"])
		}
	}
	if asString(probe["path"]) != "/healthz" || metricsPort == "" || port != metricsPort {
		t.Errorf("%s: the readiness probe asks %v, want /healthz on the plugin's Metrics_Listen port %q", where, probe, metricsPort)
	}

	grace := 30 * time.Second // Kubernetes' default
	if g, ok := pod["terminationGracePeriodSeconds"].(int); ok {
		grace = time.Duration(g) * time.Second
	}
	if grace <= flb.grace+shutdown {
		t.Errorf("%s: terminationGracePeriodSeconds %s leaves no room for Fluent Bit's grace %s and the plugin's Shutdown_Timeout %s", where, grace, flb.grace, shutdown)
	}
	return ms, flb, pod
}

func readManifests(t *testing.T, name string) manifests {
	t.Helper()
	file := filepath.Join("..", "examples", "kubernetes", name)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs := manifests{}
	for _, d := range yamlDocs(t, data, file) {
		kind, n := asString(d["kind"]), asString(at(d, "metadata", "name"))
		if asString(d["apiVersion"]) == "" || kind == "" || n == "" {
			t.Fatalf("%s: an object without apiVersion, kind or metadata.name: %v", file, d)
		}
		objs[kind+"/"+n] = d
	}
	return objs
}

// TestKubernetesManifests: every manifest in examples/kubernetes parses, and every workload in them that runs
// Fluent Bit passes checkWorkload.
func TestKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "kubernetes", "*.yaml"))
	workloads := 0
	for _, file := range files {
		objs := readManifests(t, filepath.Base(file))
		for key := range objs {
			kind, name, _ := strings.Cut(key, "/")
			if kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" {
				t.Run(filepath.Base(file)+"/"+key, func(t *testing.T) { checkWorkload(t, objs, kind, name) })
				workloads++
			}
		}
	}
	if workloads < 2 {
		t.Errorf("%d workloads in %v, want the sidecar and the delivery tier", workloads, files)
	}
}

// TestKubernetesDeliveryTier: the StatefulSet keeps Fluent Bit's storage and Store_Dir on a persistent volume
// per replica, and the Service sends events to the inputs the configuration opens.
func TestKubernetesDeliveryTier(t *testing.T) {
	objs := readManifests(t, "delivery-tier.yaml")
	ms, flb, _ := checkWorkload(t, objs, "StatefulSet", "wivaudit")
	var claims []string
	for _, c := range asList(at(objs.get("StatefulSet", "wivaudit"), "spec", "volumeClaimTemplates")) {
		claims = append(claims, asString(at(c, "metadata", "name")))
	}
	onClaim := func(what, p string) {
		if m, _ := mountFor(ms, p); !slices.Contains(claims, m.volume) {
			t.Errorf("%s %s is on volume %q, not on one of the volumeClaimTemplates %v", what, p, m.volume, claims)
		}
	}
	onClaim("storage.path", flb.storagePath)
	for _, o := range flb.outputs {
		onClaim("Store_Dir", o.c.StoreDir)
	}
	var ports []string
	for _, p := range asList(at(objs.get("Service", "wivaudit"), "spec", "ports")) {
		ports = append(ports, asString(asMap(p)["port"]))
	}
	if !slices.Equal(ports, []string{"24224", "9880"}) {
		t.Errorf("Service wivaudit exposes ports %v, want forward 24224 and http 9880", ports)
	}
}

// TestKubernetesSidecar: the app and Fluent Bit share the folder the app writes its audit files to, and the
// tail inputs read it.
func TestKubernetesSidecar(t *testing.T) {
	objs := readManifests(t, "sidecar.yaml")
	ms, flb, pod := checkWorkload(t, objs, "Deployment", "platform-api")
	if len(flb.tailPaths) != 3 {
		t.Fatalf("tail inputs read %v, want one per kind", flb.tailPaths)
	}
	apps := asList(pod["containers"])
	if len(apps) == 0 {
		t.Fatal("no app container")
	}
	appMounts := mounts(asMap(apps[0]))
	for _, p := range flb.tailPaths {
		fm, ok := mountFor(ms, p)
		am, shared := mountFor(appMounts, p)
		if !ok || !shared || fm.volume != am.volume || am.readOnly {
			t.Errorf("tail path %s: the app does not write it to a volume fluent-bit reads (fluent-bit %+v, app %+v)", p, fm, am)
		}
	}
}
