package keycheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/flbconf"
)

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"bucket", "bucket", 0},
		{"bukcet", "bucket", 1}, // a swap
		{"destination_file", "destinations_file", 1},
		{"storedir", "store_dir", 1},
		{"store-dir", "store_dir", 1},
		{"ca", "abc", 3}, // optimal string alignment: no edit of a swapped pair
		{"kitten", "sitting", 3},
	} {
		if got := distance(c.a, c.b); got != c.want {
			t.Errorf("distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestNearest(t *testing.T) {
	var names []string
	for _, k := range conf.Keys() {
		names = append(names, k.Name)
	}
	for _, c := range []struct{ key, want string }{
		{"Destination_File", "Destinations_File"},
		{"Destinations_Files", "Destinations_File"},
		{"Upload_Timout", "Upload_Timeout"},
		{"Bukcet", "Bucket"},
		{"BUCKETS", "Bucket"},
		{"StoreDir", "Store_Dir"},
		{"store-dir", "Store_Dir"},
		{"Digest", "Digests"},
		{"STS_Endpont", "STS_Endpoint"},
		{"Endpont", "Endpoint"},
		{"External_Id_", "External_ID"},
		{"Role_Arn_", "Role_ARN"},
		{"OrgID", "Org_ID"},
		// Variants: a key of the plugin, word for word, with more words.
		{"Bucket_Name", "Bucket"}, // as in the destinations file
		{"S3_Bucket", "Bucket"},
		{"Region_Name", "Region"},
		{"Endpoint_URL", "Endpoint"},
		{"sts_endpoint_url", "STS_Endpoint"},
		{"Store_Dir_Path", "Store_Dir"},
		// Neither: out_s3's keys and the like are named without a guess.
		{"Compress", ""},
		{"Tag", ""},
		{"Bucketname", ""},
		{"s3_key_format", ""},
		{"upload_chunk_size", ""},
	} {
		got, ok := nearest(c.key, names)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("nearest(%q) = %q %v, want %q", c.key, got, ok, c.want)
		}
	}
}

func TestFluentBitKey(t *testing.T) {
	for _, k := range []string{"name", "match", "match_regex", "alias", "log_level", "workers", "retry_limit", "tls",
		"tls.verify", "net.keepalive", "oauth2.enable", "storage.total_limit_size", "routes", "host", "port"} {
		if !fluentBitKey(k) {
			t.Errorf("%s is Fluent Bit's", k)
		}
	}
	for _, k := range conf.Keys() {
		if fluentBitKey(strings.ToLower(k.Name)) {
			t.Errorf("%s is the plugin's, but taken for Fluent Bit's", k.Name)
		}
	}
	if fluentBitKey("tlsx") || fluentBitKey("matches") {
		t.Error("a key that only starts like Fluent Bit's is taken for it")
	}
}

// section builds an output section written at file f from key value pairs.
func section(line int, kv ...string) flbconf.Section {
	s := flbconf.Section{File: "f.conf", Line: line}
	for i := 0; i+1 < len(kv); i += 2 {
		s.Props = append(s.Props, flbconf.Prop{Key: kv[i], Value: kv[i+1], File: "f.conf", Line: line + 1 + i/2})
	}
	return s
}

func TestPick(t *testing.T) {
	a := section(1, "Name", "wivaudit", "Match", "a.*", "Org_ID", "org-a", "Bucket", "b-a")
	b := section(10, "Name", "wivaudit", "Match", "b.*", "Org_ID", "org-b", "Bucket", "b-b", "Upload_Timout", "1m")
	bAgain := section(20, "Name", "WivAudit", "Org_ID", "org-b", "Bucket", "b-b", "Extra", "x")
	env := section(30, "name", "wivaudit", "Org_ID", "${ORG}", "Bucket", "b-${ORG}")
	other := section(40, "Name", "stdout", "Org_ID", "org-a", "Bucket", "b-a")
	for _, c := range []struct {
		name     string
		sections []flbconf.Section
		index    int
		src      conf.Map
		want     int // Line of the section picked, 0 for none
		why      string
	}{
		{"the only one", []flbconf.Section{other, a}, 0, conf.Map{"org_id": "org-a", "bucket": "b-a"}, 1, ""},
		{"by values, whatever the index", []flbconf.Section{a, b}, 0, conf.Map{"Org_ID": "org-b", "Bucket": "b-b"}, 10, ""},
		{"values given that the section does not have", []flbconf.Section{a}, 0, conf.Map{"Org_ID": "org-a", "Bucket": "b-a", "Region": "eu-west-1"}, 0, "has this instance's values"},
		{"values the section has that were not given", []flbconf.Section{a}, 0, conf.Map{"Org_ID": "org-a"}, 0, "has this instance's values"},
		{"two agree: the index decides", []flbconf.Section{a, b, bAgain}, 2, conf.Map{"Org_ID": "org-b", "Bucket": "b-b"}, 20, ""},
		{"two agree: the index decides, 1", []flbconf.Section{a, b, bAgain}, 1, conf.Map{"Org_ID": "org-b", "Bucket": "b-b"}, 10, ""},
		{"two agree, the index names neither", []flbconf.Section{a, b, bAgain}, 0, conf.Map{"Org_ID": "org-b", "Bucket": "b-b"}, 0, "2 outputs named wivaudit"},
		{"${VAR} is not compared", []flbconf.Section{env}, 0, conf.Map{"Org_ID": "org-x", "Bucket": "b-org-x"}, 30, ""},
		{"no output of ours", []flbconf.Section{other}, 0, conf.Map{"Org_ID": "org-a", "Bucket": "b-a"}, 0, "no output named wivaudit"},
		{"nothing", nil, 0, conf.Map{}, 0, "no output named wivaudit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, why := pick(c.sections, "wivaudit", c.index, c.src)
			if s.Line != c.want || (c.why == "") != (why == "") || !strings.Contains(why, c.why) {
				t.Errorf("picked line %d, %q; want %d, %q", s.Line, why, c.want, c.why)
			}
		})
	}
}

func TestCheckSection(t *testing.T) {
	s := section(1, "Name", "wivaudit", "Match", "*", "Workers", "2", "tls.verify", "off", "Destination_File", "/etc/d.json",
		"bucket", "b-1", "Bucket", "b-2", "Upload_Timout", "1m", "Upload_Timeout", "2m", "Compress", "gzip", "Digest", "on")
	r := checkSection(s)
	want := []string{
		"Destination_File (f.conf:6) is not a key of this output and is ignored; did you mean Destinations_File?",
		"Bucket is written again at f.conf:8; that value is ignored: the first, at f.conf:7, is in effect",
		"Upload_Timout (f.conf:9) is not a key of this output and is ignored; did you mean Upload_Timeout?",
		"Compress (f.conf:11) is not a key of this output and is ignored (docs/configuration.md lists every key)",
		"Digest (f.conf:12) is not a key of this output and is ignored; did you mean Digests?",
	}
	if r.Info != "keys checked against the section at f.conf:1" || !slices.Equal(r.Warnings, want) {
		t.Errorf("info %q\nwarnings:\n%s\nwant:\n%s", r.Info, strings.Join(r.Warnings, "\n"), strings.Join(want, "\n"))
	}
	// Upload_Timeout is written, so its misspelling explains no error; Destinations_File and Digests are not.
	wantHints := []string{"the section has Destination_File (f.conf:6): did you mean Destinations_File?",
		"the section has Digest (f.conf:12): did you mean Digests?"}
	if !slices.Equal(r.hints, wantHints) {
		t.Errorf("hints %q, want %q", r.hints, wantHints)
	}
	if clean := checkSection(section(1, "Name", "wivaudit", "Match", "*", "Org_ID", "a", "Bucket", "b")); len(clean.Warnings) != 0 || len(clean.hints) != 0 {
		t.Errorf("warnings for a section without a wrong key: %q", clean.Warnings)
	}
}

// TestMisspeltKeyExplainsTheError: the case of issue 17, end to end from the command line and the file on disk
// through conf.Parse. A misspelt Destinations_File made the error name only Bucket.
func TestMisspeltKeyExplainsTheError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fluent-bit.conf")
	write(t, path, "[OUTPUT]\n    Name wivaudit\n    Match audit.*\n    Destination_File /etc/fluent-bit/destinations.json\n    Store_Dir /var/lib/w\n")
	src := conf.Map{"Store_Dir": "/var/lib/w"} // what Fluent Bit hands the plugin: it does not know the misspelt key
	r := check([]string{"-e", "/p/out_wivaudit.so", "-c", path}, flbconf.OS, "wivaudit", 0, src)
	_, err := conf.Parse(src)
	got := r.Explain(err).Error()
	if !strings.HasPrefix(got, "Bucket: not set") ||
		!strings.HasSuffix(got, "; the section has Destination_File ("+path+":4): did you mean Destinations_File?") {
		t.Errorf("error: %s", got)
	}
	if r.Info != "keys checked against the section at "+path+":1" || len(r.Warnings) != 1 ||
		r.Warnings[0] != "Destination_File ("+path+":4) is not a key of this output and is ignored; did you mean Destinations_File?" {
		t.Errorf("report %+v", r)
	}
	if r.Explain(nil) != nil || (Report{}).Explain(err).Error() != err.Error() {
		t.Error("Explain changed what it had nothing to add to")
	}
}

func TestCheckFindsTheFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, filepath.Join(dir, "fb.yaml"), "includes: [outputs/*.yaml]\n")
	write(t, filepath.Join(dir, "outputs", "a.yaml"), "pipeline:\n  outputs:\n    - name: wivaudit\n      org_id: org-a\n      bucket: b-a\n      bucketname: x\n")
	write(t, filepath.Join(dir, "broken.conf"), "[OUTPUT]\n    Name\n")
	src := conf.Map{"Org_ID": "org-a", "Bucket": "b-a"}
	for _, c := range []struct {
		name     string
		args     []string
		info     string
		warnings int
	}{
		{"YAML, relative, through an include", []string{"--config=fb.yaml"}, "keys checked against the section at outputs/a.yaml:3", 1},
		{"no -c", []string{"-i", "dummy", "-o", "wivaudit", "-p", "bucket=b-a"}, "keys not checked: Fluent Bit was started without a configuration file (-c)", 0},
		{"no such file", []string{"-c", "nothere.conf"}, "keys not checked: reading nothere.conf: ", 0},
		{"a file Fluent Bit would refuse", []string{"-c", "broken.conf"}, "keys not checked: reading broken.conf: broken.conf:2: a key without a value", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := check(c.args, flbconf.OS, "wivaudit", 0, src)
			if !strings.HasPrefix(r.Info, c.info) || len(r.Warnings) != c.warnings {
				t.Errorf("info %q, warnings %q", r.Info, r.Warnings)
			}
		})
	}
}

// TestCheckReadsThisProcess: Check reads this process's command line, which names no configuration file.
func TestCheckReadsThisProcess(t *testing.T) {
	if r := Check("wivaudit", 0, conf.Map{}); r.Info != "keys not checked: Fluent Bit was started without a configuration file (-c)" {
		t.Errorf("info %q", r.Info)
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestShippedExamples: the wivaudit outputs of the shipped configurations have no key the plugin does not
// read and none written twice.
func TestShippedExamples(t *testing.T) {
	var checked int
	for _, pattern := range []string{"../examples/*.conf", "../examples/*.yaml"} {
		paths, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range paths {
			sections, err := flbconf.Outputs(flbconf.OS, path)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sections {
				if s.Name() == "wivaudit" {
					checked++
					if w := checkSection(s).Warnings; len(w) > 0 {
						t.Errorf("%s: %q", path, w)
					}
				}
			}
		}
	}
	if checked < 3 {
		t.Errorf("%d wivaudit outputs checked in the examples, want the 3 or more they have", checked)
	}
}
