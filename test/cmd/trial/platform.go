package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/wiv/out_wivaudit/digest"
	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/sample"
)

// platformSide writes the destinations file, the digest signing key and the Fluent Bit configuration, with
// ports it picks, and returns the configuration's path.
func platformSide(t *trial, dir string, digestInterval time.Duration) (string, error) {
	s := settings{Destinations: filepath.Join(dir, "destinations.json"), StoreDir: t.storeDir, Key: filepath.Join(dir, "digest-key.pem"),
		Endpoint: t.moto.URL, DigestInterval: seconds(digestInterval), UploadTimeout: "5s",
		StatusInterval: seconds(statusInterval)}
	if err := sample.WriteDestinations(s.Destinations, entries(t.customers)); err != nil {
		return "", err
	}
	signer, err := digest.GenerateKeyFile(s.Key)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(t.publicKey, []byte(signer.PublicKeyPEM()), 0o644); err != nil {
		return "", err
	}
	metricsPort, err := backend.FreePort()
	if err != nil {
		return "", err
	}
	if t.intakePort, err = backend.FreePort(); err != nil {
		return "", err
	}
	t.metricsListen = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	s.MetricsListen, s.IntakePort = t.metricsListen, t.intakePort
	conf := filepath.Join(dir, "fluent-bit.conf")
	if err := writeConfig(conf, s); err != nil {
		return "", err
	}
	fmt.Printf("%s lists both customers (the second with the key prefix %s)\n", display(s.Destinations), t.customers[1].KeyPrefix)
	fmt.Printf("%s signs their digests (every %s); customers verify with %s\n", display(s.Key), s.DigestInterval, display(t.publicKey))
	fmt.Printf("%s is the configuration\n", display(conf))
	return conf, nil
}

// statusInterval is the trial's Status_Interval: the printed tail -f shows a status line that soon.
const statusInterval = 30 * time.Second

func seconds(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds())) }

// settings are what the trial's Fluent Bit configuration names; paths absolute, so that it runs from anywhere.
type settings struct {
	IntakePort                    int
	Destinations, StoreDir, Key   string
	Endpoint, MetricsListen       string
	DigestInterval, UploadTimeout string // in seconds, as Fluent Bit spells them
	StatusInterval                string
}

var configTemplate = template.Must(template.New("conf").Parse(`# The Fluent Bit configuration of make trial (test/cmd/trial wrote it): one wivaudit output for the two
# customers of destinations.json, against the trial's moto.
[SERVICE]
    Flush      1
    Grace      5
    Log_Level  info

# Events come in over HTTP: POST /<tag> with JSON objects, one after another or in an array. In the test host,
# which has no inputs, the trial serves this port the same way.
[INPUT]
    Name    http
    Listen  127.0.0.1
    Port    {{.IntakePort}}

[OUTPUT]
    Name               wivaudit
    Match              audit.*
    Workers            2
    Retry_Limit        no_limits
    Destinations_File  {{.Destinations}}
    Region             us-east-1
    Endpoint           {{.Endpoint}}
    STS_Endpoint       {{.Endpoint}}
    # moto serves plain HTTP on loopback; production endpoints are HTTPS.
    Allow_Plain_HTTP   on
    Store_Dir          {{.StoreDir}}
    Upload_Timeout     {{.UploadTimeout}}
    Metrics_Listen     {{.MetricsListen}}
    Digests            on
    Digest_Signing_Key {{.Key}}
    Digest_Interval    {{.DigestInterval}}
    # A status line every 30 s (5m by default), so that a short trial's log shows some.
    Status_Interval    {{.StatusInterval}}
`))

func writeConfig(path string, s settings) error {
	var b strings.Builder
	if err := configTemplate.Execute(&b, s); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
