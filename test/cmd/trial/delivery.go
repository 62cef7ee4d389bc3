package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/buffer"
	"github.com/wiv/out_wivaudit/digest"
	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/sample"
)

// deliverSamples sends the sample events and waits until each customer's bucket holds its own and a digest
// lists every object.
func deliverSamples(ctx context.Context, o options, t *trial, plugin *pluginProc) ([]*bucketView, map[string][]string, error) {
	ids, err := sample.IDs(o.events)
	if err != nil {
		return nil, nil, err
	}
	step("Sending the sample events of " + o.events)
	if err := send(ctx, o.events, t.intakePort); err != nil {
		return nil, nil, err
	}
	var views []*bucketView
	for _, c := range t.customers {
		views = append(views, newBucketView(t.moto, c))
	}
	if err := waitDelivered(ctx, views, plugin, ids, 1); err != nil {
		return nil, nil, err
	}
	if err := waitUntil(ctx, views, plugin, 2*time.Minute+o.digestInterval, func(v *bucketView) string {
		if u := v.unlisted(); len(u) > 0 || len(v.digested) == 0 {
			return fmt.Sprintf("a digest listing %d objects", len(u))
		}
		return ""
	}); err != nil {
		return nil, nil, fmt.Errorf("%w (see %s)", err, display(t.logPath))
	}
	for _, v := range views {
		fmt.Printf("%s: s3://%s/%s holds %d objects and %d digests listing them\n", v.c.Name, v.c.dest.Bucket, v.c.prefix(), len(v.objects), len(v.digested))
		for _, k := range v.keys() {
			fmt.Printf("    %s (%d events)\n", k, len(v.objects[k]))
		}
	}
	if err := printRejected(t.storeDir); err != nil {
		return nil, nil, err
	}
	return views, ids, nil
}

// printRejected says which sample records the plugin rejected (the samples hold one on purpose), why, and
// where it kept them: Store_Dir's dead-letter file. The plugin writes it before it takes the chunk, so it is
// complete once the chunk's events are delivered.
func printRejected(storeDir string) error {
	path := filepath.Join(storeDir, buffer.DeadLetterFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Printf("no sample record was rejected (%s does not exist)\n", display(path))
		return nil
	}
	if err != nil {
		return err
	}
	lines := slices.Collect(strings.Lines(string(data)))
	fmt.Printf("rejected, delivered to no one and kept in the dead-letter file %s: %d of the sample records (they hold an invalid one on purpose)\n",
		display(path), len(lines))
	for _, line := range lines {
		var l struct {
			Tag, Reason string
			Record      struct {
				ID  string `json:"id"`
				Org any    `json:"org_id"`
			}
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Printf("    %s (org_id %q, tag %s): %s\n", l.Record.ID, fmt.Sprint(l.Record.Org), l.Tag, l.Reason)
	}
	return nil
}

// send posts each <tag>.jsonl file of dir to the event intake, as the printed curl command does.
func send(ctx context.Context, dir string, port int) error {
	files, err := sample.EventFiles(dir)
	if err != nil {
		return err
	}
	for _, tag := range backend.SortedKeys(files) {
		data, err := os.ReadFile(files[tag])
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/%s", port, tag), bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("POST %s: %w", tag, err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: %s", tag, resp.Status)
		}
		fmt.Printf("POST /%s: %s (%s)\n", tag, resp.Status, display(files[tag]))
	}
	return nil
}

// waitDelivered waits until each sample event of each customer is in its bucket at least times times.
func waitDelivered(ctx context.Context, views []*bucketView, plugin *pluginProc, ids map[string][]string, times int) error {
	err := waitUntil(ctx, views, plugin, 2*time.Minute, func(v *bucketView) string {
		if missing := v.missing(ids[v.c.ID], times); len(missing) > 0 {
			return fmt.Sprintf("%d of its %d sample events", len(missing), len(ids[v.c.ID]))
		}
		return ""
	})
	if err != nil {
		return fmt.Errorf("%w (see %s)", err, display(plugin.log.Name()))
	}
	return nil
}

// bucketView is what the trial has read of a customer's bucket: the audit log objects under the customer's
// prefix with the event ids each holds, and the objects its digests list. Objects are never overwritten, so
// each is read once.
type bucketView struct {
	m        *backend.Moto
	c        *customer
	objects  map[string][]string // audit log object key -> event ids
	digested map[string]bool     // digest key -> read
	listed   map[string]bool     // object keys some digest lists
}

func newBucketView(m *backend.Moto, c *customer) *bucketView {
	return &bucketView{m: m, c: c, objects: map[string][]string{}, digested: map[string]bool{}, listed: map[string]bool{}}
}

// refresh reads the objects and digests that appeared since the last call.
func (v *bucketView) refresh(ctx context.Context) error {
	keys, err := v.m.Keys(ctx, v.c.dest.Bucket)
	if err != nil {
		return err
	}
	digests := v.c.prefix() + "digests/"
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, digests) && !v.digested[k]:
			body, err := v.m.Get(ctx, v.c.dest.Bucket, k)
			if err != nil {
				return err
			}
			var doc digest.Document
			if err := json.Unmarshal(body, &doc); err != nil {
				return fmt.Errorf("digest %s: %w", k, err)
			}
			for _, o := range doc.Objects {
				v.listed[o.Key] = true
			}
			v.digested[k] = true
		case strings.HasPrefix(k, v.c.prefix()) && strings.HasSuffix(k, ".json.gz") && v.objects[k] == nil:
			ids, err := v.eventIDs(ctx, k)
			if err != nil {
				return err
			}
			v.objects[k] = ids
		}
	}
	return nil
}

func (v *bucketView) eventIDs(ctx context.Context, key string) ([]string, error) {
	body, err := v.m.Get(ctx, v.c.dest.Bucket, key)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	var records []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(plain, &records); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	ids := make([]string, 0, len(records))
	for _, r := range records {
		ids = append(ids, r.ID)
	}
	return ids, nil
}

// missing returns the ids found fewer than times in the objects.
func (v *bucketView) missing(ids []string, times int) []string {
	count := map[string]int{}
	for _, held := range v.objects {
		for _, id := range held {
			count[id]++
		}
	}
	var out []string
	for _, id := range ids {
		if count[id] < times {
			out = append(out, id)
		}
	}
	return out
}

// unlisted returns the objects no digest lists yet.
func (v *bucketView) unlisted() []string {
	var out []string
	for k := range v.objects {
		if !v.listed[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// keys returns the audit log objects read so far, in order.
func (v *bucketView) keys() []string { return backend.SortedKeys(v.objects) }

// waitUntil refreshes every view until done holds for all of them, the plugin's process ends, or timeout
// passes; what is still wanted is named by done's answer.
func waitUntil(ctx context.Context, views []*bucketView, plugin *pluginProc, timeout time.Duration, done func(*bucketView) string) error {
	deadline := time.Now().Add(timeout)
	for {
		var wanted []string
		for _, v := range views {
			if err := v.refresh(ctx); err != nil {
				return err
			}
			if w := done(v); w != "" {
				wanted = append(wanted, v.c.Name+": "+w)
			}
		}
		if len(wanted) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s, still waiting for %s", timeout, strings.Join(wanted, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-plugin.exited:
			return fmt.Errorf("the plugin's process ended (exit %d) while waiting for %s", plugin.cmd.ProcessState.ExitCode(), strings.Join(wanted, "; "))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
