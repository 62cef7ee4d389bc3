// Command demo runs the plugin end to end on local defaults: a local moto as S3, STS and IAM where two customers
// set up their bucket and role as the delivery guide tells them, a destinations file listing both, the sample
// events in examples/events (of both organisations) sent through the Fluent Bit stand-in and the real plugin,
// then each customer's bucket, and one object of each as `aws s3 cp ... - | gunzip | jq .` shows it.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/hostrun"
	"github.com/wiv/out_wivaudit/vfs"
)

func main() {
	host := flag.String("host", "build/flbhost", "the Fluent Bit stand-in")
	plugin := flag.String("plugin", "build/out_wivaudit.so", "the plugin")
	config := flag.String("config", "examples/demo.conf", "the Fluent Bit configuration")
	events := flag.String("events", "examples/events", "folder of <tag>.jsonl files")
	flag.Parse()
	if err := run(*host, *plugin, *config, *events); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// customer is one organisation of the sample events and what it submitted in guide step 3.3.
type customer struct {
	name, org, bucket, role, externalID, keyPrefix string
	roleARN                                        string
}

var customers = []*customer{
	{name: "Your Organization", org: "3f7539ad-7f8b-4688-aee0-b9dbf2db728e", bucket: "your-company-audit-logs",
		role: "wiv-audit-logs-sync", externalID: "681d1539-fd63-4e6e-9426-fccdfdae1862"},
	{name: "Acme Corp", org: "9b2d6c1e-41a7-4f0e-8c55-2f1e7a0d3b64", bucket: "acme-corp-audit-logs",
		role: "acme-wiv-audit-logs-sync", externalID: "0c8e5b1a-3f2d-4c6e-9a7b-5d4e3f2a1b0c", keyPrefix: "wiv/"},
}

func run(host, plugin, config, events string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "wivaudit-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("Starting moto (S3, STS, IAM) on loopback; two customers set up their bucket and role")
	m, err := backend.Start(dir)
	if err != nil {
		return err
	}
	defer m.Stop()
	first := customers[0]
	p, err := m.Setup(ctx, first.bucket, first.externalID)
	if err != nil {
		return err
	}
	first.roleARN = p.RoleARN
	for _, c := range customers[1:] {
		if c.roleARN, err = m.AddCustomer(ctx, p, c.bucket, c.role, c.externalID); err != nil {
			return err
		}
	}
	destinations := filepath.Join(dir, "destinations.json")
	if err := writeDestinations(destinations); err != nil {
		return err
	}
	for _, c := range customers {
		fmt.Printf("%s (org_id %s): bucket %s, role %s; the trust policy requires its External ID, the policy grants only s3:PutObject, s3:PutObjectAcl\n",
			c.name, c.org, c.bucket, c.roleARN)
	}
	fmt.Printf("both listed in %s (Destinations_File)\n", destinations)

	input := filepath.Join(dir, "input.chunks")
	n, err := writeInput(events, input)
	if err != nil {
		return err
	}
	step(fmt.Sprintf("Sending %d events from %s through the Fluent Bit host and out_wivaudit.so", n, events))
	env := append(p.Env(), "WIV_DESTINATIONS="+destinations, "WIV_ENDPOINT="+m.URL, "WIV_STORE_DIR="+filepath.Join(dir, "store"))
	proc, err := hostrun.Host{Bin: host, Plugin: plugin}.Start(config, input, env, true)
	if err != nil {
		return err
	}
	res := proc.Wait(2 * time.Minute)
	fmt.Print(res.Stderr)
	if res.ExitCode != 0 {
		return fmt.Errorf("the host exited with %d", res.ExitCode)
	}

	for _, c := range customers {
		if err := show(ctx, m, c); err != nil {
			return err
		}
	}
	dead, err := os.ReadFile(filepath.Join(dir, "store", "deadletter.jsonl"))
	if err == nil {
		step("Rejected records (Store_Dir/deadletter.jsonl)")
		fmt.Print(string(dead))
	}
	step("The delivery ledger (wivaudit store ledger STORE_DIR)")
	recorded := 0
	for e, err := range ledger.Read(vfs.OS, filepath.Join(filepath.Join(dir, ledger.Folder), "store"), ledger.Filter{}) {
		if err != nil {
			return err
		}
		recorded++
		fmt.Printf("%s %s s3://%s/%s: %d records, %d bytes, sha256 %s\n", e.Time.Format(time.RFC3339), e.Status, e.Bucket, e.Key, e.Records, e.Bytes, e.SHA256)
	}
	fmt.Printf("%d objects\n", recorded)
	return nil
}

// writeDestinations writes the destinations file: one entry per customer, as they submitted it.
func writeDestinations(path string) error {
	type entry struct {
		Org        string `json:"org_id"`
		Bucket     string `json:"bucket_name"`
		RoleARN    string `json:"role_arn"`
		ExternalID string `json:"external_id"`
		KeyPrefix  string `json:"key_prefix,omitempty"`
	}
	var list []entry
	for _, c := range customers {
		list = append(list, entry{c.org, c.bucket, c.roleARN, c.externalID, c.keyPrefix})
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// show lists a customer's bucket and prints its first object, checking that it holds only that customer's
// organisation.
func show(ctx context.Context, m *backend.Moto, c *customer) error {
	step(fmt.Sprintf("%s's bucket (aws s3 ls s3://%s/ --recursive)", c.name, c.bucket))
	objects, err := m.Objects(ctx, c.bucket)
	if err != nil {
		return err
	}
	keys := backend.SortedKeys(objects)
	for _, k := range keys {
		fmt.Println(k)
		if !strings.HasPrefix(k, c.keyPrefix+c.org+"/") {
			return fmt.Errorf("%s holds %s, which is not under %s%s/", c.bucket, k, c.keyPrefix, c.org)
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("nothing was delivered to %s", c.bucket)
	}
	step("aws s3 cp s3://" + c.bucket + "/" + keys[0] + " - | gunzip | jq .")
	body, err := m.Get(ctx, c.bucket, keys[0])
	if err != nil {
		return err
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return err
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, plain, "", "  "); err != nil {
		return err
	}
	fmt.Println(pretty.String())
	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

// writeInput turns every <tag>.jsonl file into V2 chunks of up to three events, as an input plugin would.
func writeInput(dir, out string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return 0, err
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	total := 0
	for _, path := range files {
		tag := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		in, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(in)
		var chunk []byte
		count := 0
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			body, err := chunks.FromJSON(sc.Bytes())
			if err != nil {
				in.Close()
				return 0, fmt.Errorf("%s: %w", path, err)
			}
			chunk = append(chunk, chunks.V2(chunks.EventTime(time.Now()), body)...)
			count++
			total++
			if count%3 == 0 {
				if err := chunks.WriteFrame(f, tag, chunk); err != nil {
					return 0, err
				}
				chunk = nil
			}
		}
		in.Close()
		if len(chunk) > 0 {
			if err := chunks.WriteFrame(f, tag, chunk); err != nil {
				return 0, err
			}
		}
	}
	return total, f.Close()
}
