// Command demo runs the plugin end to end on local defaults: a local moto as S3, STS and IAM set up as the
// delivery guide tells customers, the sample events in examples/events sent through the Fluent Bit stand-in and
// the real plugin, then the delivered keys and one object as `aws s3 cp ... - | gunzip | jq .` shows it.
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

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/hostrun"
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

func run(host, plugin, config, events string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "wivaudit-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("Starting moto (S3, STS, IAM) on loopback")
	m, err := backend.Start(dir)
	if err != nil {
		return err
	}
	defer m.Stop()
	p, err := m.Setup(ctx, "your-company-audit-logs", "681d1539-fd63-4e6e-9426-fccdfdae1862")
	if err != nil {
		return err
	}
	fmt.Printf("bucket %s, role %s (trust policy requires the External ID; policy grants only s3:PutObject, s3:PutObjectAcl)\n",
		p.Bucket, p.RoleARN)

	input := filepath.Join(dir, "input.chunks")
	n, err := writeInput(events, input)
	if err != nil {
		return err
	}
	step(fmt.Sprintf("Sending %d events from %s through the Fluent Bit host and out_wivaudit.so", n, events))
	env := append(p.Env(), "WIV_BUCKET="+p.Bucket, "WIV_ROLE_ARN="+p.RoleARN, "WIV_EXTERNAL_ID="+p.ExternalID,
		"WIV_ENDPOINT="+m.URL, "WIV_STORE_DIR="+filepath.Join(dir, "store"))
	proc, err := hostrun.Host{Bin: host, Plugin: plugin}.Start(config, input, env, true)
	if err != nil {
		return err
	}
	res := proc.Wait(2 * time.Minute)
	fmt.Print(res.Stderr)
	if res.ExitCode != 0 {
		return fmt.Errorf("the host exited with %d", res.ExitCode)
	}

	step("Delivered objects (aws s3 ls s3://" + p.Bucket + "/ --recursive)")
	objects, err := m.Objects(ctx, p.Bucket)
	if err != nil {
		return err
	}
	keys := backend.SortedKeys(objects)
	for _, k := range keys {
		fmt.Println(k)
	}
	if len(keys) == 0 {
		return fmt.Errorf("nothing was delivered")
	}
	step("aws s3 cp s3://" + p.Bucket + "/" + keys[0] + " - | gunzip | jq .")
	body, err := m.Get(ctx, p.Bucket, keys[0])
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

	dead, err := os.ReadFile(filepath.Join(dir, "store", "deadletter.jsonl"))
	if err == nil {
		step("Rejected records (Store_Dir/deadletter.jsonl)")
		fmt.Print(string(dead))
	}
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
