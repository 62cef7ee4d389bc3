package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wiv/out_wivaudit/test/hostrun"
)

// TestSettingsLineOnEitherABI: the plugin registers into Fluent Bit 4.x's 32-byte struct without writing
// past it (the host checks the bytes after it) and into 5.1.1's without setting config_map, since it cannot
// tell the two apart; either way Fluent Bit does not refuse a misspelt key, and the settings line Init logs
// shows it as the default it leaves in effect.
func TestSettingsLineOnEitherABI(t *testing.T) {
	for _, abi := range []string{"4", "5.1.1"} {
		t.Run(abi, func(t *testing.T) {
			e := &env{t: t, dir: t.TempDir()}
			conf := e.bareConfig(map[string]string{"Org_ID": "org-a", "Bucket": "b-ok", "Endpoint": "http://127.0.0.1:9",
				"Allow_Plain_HTTP": "on", "Store_Dir": e.dir + "/store", "Upload_Timout": "5s"})
			h := host
			h.ABI = abi
			p, err := h.Start(conf, "", nil, true)
			if err != nil {
				t.Fatal(err)
			}
			r := p.Wait(time.Minute)
			if r.ExitCode != 0 {
				t.Fatalf("exit %d:\n%s", r.ExitCode, r.Stderr)
			}
			if abi == "5.1.1" && r.Count("registered abi=5.1.1 event_type=0 config_map=none") != 1 {
				t.Errorf("stdout %v", r.Stdout)
			}
			line := regexp.MustCompile(`\[ info\] \[output:wivaudit:wivaudit\.0\] settings: (.*); defaults: (.*)`).FindStringSubmatch(r.Stderr)
			if line == nil || !strings.Contains(line[1], "Org_ID=org-a Bucket=b-ok") || !strings.Contains(" "+line[2]+" ", " Upload_Timeout=10m ") ||
				strings.Contains(line[0], "Upload_Timout") {
				t.Errorf("settings line:\n%s", r.Stderr)
			}
		})
	}
}

// TestMisspeltKeys: through the real .so, the plugin finds the configuration file on the host's command line
// (-c FILE, as Fluent Bit's), finds each instance's own section in it, and names a misspelt key with the file,
// the line and the key it most likely means: as a warning when the output still starts, and in the error when
// the misspelling leaves a required setting unset (Destination_File gave only "Bucket: not set" before).
func TestMisspeltKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fluent-bit.conf")
	output := func(org, extra string) string {
		return fmt.Sprintf("[OUTPUT]\n    Name wivaudit\n    Match %s.*\n    Org_ID %s\n    Bucket b-%s\n    Endpoint http://127.0.0.1:9\n"+
			"    Allow_Plain_HTTP on\n    Store_Dir %s\n%s", org, org, org, filepath.Join(dir, org), extra)
	}
	run := func(t *testing.T, config string) *hostrun.Result {
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := host.Start(path, "", nil, true)
		if err != nil {
			t.Fatal(err)
		}
		return p.Wait(time.Minute)
	}
	logLine := `(?m)^\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\] `

	t.Run("warning", func(t *testing.T) {
		// The second output starts at line 11; its misspelt key is on line 19.
		r := run(t, "[SERVICE]\n    Grace 1\n"+output("org-a", "")+output("org-b", "    Upload_Timout 5s\n    Workers 2\n"))
		if r.ExitCode != 0 {
			t.Fatalf("exit %d:\n%s", r.ExitCode, r.Stderr)
		}
		for _, want := range []string{
			`\[ info\] \[output:wivaudit:wivaudit\.0\] keys checked against the section at ` + regexp.QuoteMeta(path) + `:3$`,
			`\[ info\] \[output:wivaudit:wivaudit\.1\] keys checked against the section at ` + regexp.QuoteMeta(path) + `:11$`,
			`\[ warn\] \[output:wivaudit:wivaudit\.1\] Upload_Timout \(` + regexp.QuoteMeta(path) + `:19\) is not a key of this output and is ignored; did you mean Upload_Timeout\?$`,
		} {
			if !regexp.MustCompile(logLine + want).MatchString(r.Stderr) {
				t.Errorf("no line %s in:\n%s", want, r.Stderr)
			}
		}
		if n := strings.Count(r.Stderr, "[ warn]"); n != 1 {
			t.Errorf("%d warnings, want the one:\n%s", n, r.Stderr)
		}
	})

	t.Run("error", func(t *testing.T) {
		r := run(t, "[OUTPUT]\n    Name wivaudit\n    Match *\n    Destination_File /etc/fluent-bit/destinations.json\n    Store_Dir "+filepath.Join(dir, "s")+"\n")
		if r.ExitCode == 0 || r.Count("init-failed") != 1 {
			t.Fatalf("Init did not fail: exit %d, %v", r.ExitCode, r.Stdout)
		}
		where := regexp.QuoteMeta(path) + ":4"
		for _, want := range []string{
			`\[ warn\] \[output:wivaudit:wivaudit\.0\] Destination_File \(` + where + `\) is not a key of this output and is ignored; did you mean Destinations_File\?$`,
			`\[error\] \[output:wivaudit:wivaudit\.0\] invalid configuration: Bucket: not set; .*; the section has Destination_File \(` + where + `\): did you mean Destinations_File\?$`,
		} {
			if !regexp.MustCompile(logLine + want).MatchString(r.Stderr) {
				t.Errorf("no line %s in:\n%s", want, r.Stderr)
			}
		}
	})
}
