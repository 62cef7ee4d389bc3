package test

import (
	"regexp"
	"strings"
	"testing"
	"time"
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
				strings.Contains(r.Stderr, "Upload_Timout") {
				t.Errorf("settings line:\n%s", r.Stderr)
			}
		})
	}
}
