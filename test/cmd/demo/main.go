// Command demo runs the plugin end to end on local defaults: a local moto as S3, STS and IAM where two customers
// set up their bucket and role as the delivery guide tells them, a destinations file listing both, the sample
// events in examples/events (of both organisations) sent through the Fluent Bit stand-in and the real plugin,
// then each customer's bucket, and one object of each as `aws s3 cp ... - | gunzip | jq .` shows it.
package main

import (
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
	"github.com/wiv/out_wivaudit/test/hostrun"
	"github.com/wiv/out_wivaudit/test/sample"
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

// customer is one organisation of the sample events and the role its customer set up.
type customer struct {
	sample.Org
	roleARN string
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
	p, err := m.SetupPlatform(ctx)
	if err != nil {
		return err
	}
	var customers []*customer
	var entries []sample.Entry
	for _, o := range sample.Orgs {
		c := &customer{Org: o}
		if c.roleARN, err = m.AddCustomer(ctx, p, o.Bucket, o.Role, o.ExternalID); err != nil {
			return err
		}
		customers = append(customers, c)
		entries = append(entries, sample.Entry{Org: o.ID, Bucket: o.Bucket, RoleARN: c.roleARN, ExternalID: o.ExternalID, KeyPrefix: o.KeyPrefix})
		fmt.Printf("%s (org_id %s): bucket %s, role %s; the trust policy requires its External ID, the policy grants only s3:PutObject, s3:PutObjectAcl\n",
			o.Name, o.ID, o.Bucket, c.roleARN)
	}
	destinations := filepath.Join(dir, "destinations.json")
	if err := sample.WriteDestinations(destinations, entries); err != nil {
		return err
	}
	fmt.Printf("both listed in %s (Destinations_File)\n", destinations)

	input := filepath.Join(dir, "input.chunks")
	n, err := sample.WriteInput(events, input)
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

	delivered := 0
	for _, c := range customers {
		n, err := show(ctx, m, c)
		if err != nil {
			return err
		}
		delivered += n
	}
	dead, err := os.ReadFile(filepath.Join(dir, "store", "deadletter.jsonl"))
	if err == nil {
		step("Rejected records (Store_Dir/deadletter.jsonl)")
		fmt.Print(string(dead))
	}
	step("The delivery ledger (wivaudit store ledger STORE_DIR)")
	recorded := 0
	for e, err := range ledger.Read(vfs.OS, filepath.Join(dir, "store", ledger.Folder), ledger.Filter{}) {
		if err != nil {
			return err
		}
		recorded++
		fmt.Printf("%s %s s3://%s/%s: %d records, %d bytes, sha256 %s\n", e.Time.Format(time.RFC3339), e.Status, e.Bucket, e.Key, e.Records, e.Bytes, e.SHA256)
	}
	fmt.Printf("%d objects\n", recorded)
	if recorded != delivered {
		return fmt.Errorf("the ledger lists %d objects, the buckets hold %d", recorded, delivered)
	}
	return nil
}

// show lists a customer's bucket and prints its first object, checking that it holds only that customer's
// organisation, and returns how many objects it holds.
func show(ctx context.Context, m *backend.Moto, c *customer) (int, error) {
	step(fmt.Sprintf("%s's bucket (aws s3 ls s3://%s/ --recursive)", c.Name, c.Bucket))
	objects, err := m.Objects(ctx, c.Bucket)
	if err != nil {
		return 0, err
	}
	keys := backend.SortedKeys(objects)
	for _, k := range keys {
		fmt.Println(k)
		if !strings.HasPrefix(k, c.KeyPrefix+c.ID+"/") {
			return 0, fmt.Errorf("%s holds %s, which is not under %s%s/", c.Bucket, k, c.KeyPrefix, c.ID)
		}
	}
	if len(keys) == 0 {
		return 0, fmt.Errorf("nothing was delivered to %s", c.Bucket)
	}
	step("aws s3 cp s3://" + c.Bucket + "/" + keys[0] + " - | gunzip | jq .")
	body, err := m.Get(ctx, c.Bucket, keys[0])
	if err != nil {
		return 0, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return 0, err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, plain, "", "  "); err != nil {
		return 0, err
	}
	fmt.Println(pretty.String())
	return len(keys), nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }
