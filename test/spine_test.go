package test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/wiv/out_wivaudit/test/chunks"
	"github.com/wiv/out_wivaudit/test/hostrun"
)

var orgs = []string{"3f7539ad-7f8b-4688-aee0-b9dbf2db728e", "9b2d6c1e-41a7-4f0e-8c55-2f1e7a0d3b64"}
var kinds = []string{"org", "user", "api"}

type genEvent struct {
	id, org, kind string
	canon         string // the record as canonical JSON
	body          []byte // the record as msgpack
}

// genEvents makes n audit records spread over orgs and kinds, with the value types a real record carries.
// Their ids are prefix + a sequence number.
func genEvents(t *testing.T, n int, rng *rand.Rand, prefix string) []genEvent {
	return genEventsFor(t, n, rng, prefix, orgs)
}

// genEventsFor is genEvents over the given organisations.
func genEventsFor(t *testing.T, n int, rng *rand.Rand, prefix string, orgs []string) []genEvent {
	notes := []string{"héllo wörld", "line1\nline2", `quote " and backslash \`, "emoji 😀", "tab\there", "<b>&amp;</b>", ""}
	floats := []float64{0.5, -2.25, 1e-07, 6.02e23, 3.141592653589793, 0}
	out := make([]genEvent, n)
	for i := range out {
		org, kind := orgs[i%len(orgs)], kinds[(i/len(orgs))%len(kinds)]
		note, _ := json.Marshal(notes[rng.IntN(len(notes))])
		score, _ := json.Marshal(floats[rng.IntN(len(floats))])
		email := "null"
		if rng.IntN(2) == 0 {
			email = fmt.Sprintf("%q", fmt.Sprintf("user%d@example.com", i))
		}
		id := fmt.Sprintf("%s%06d", prefix, i)
		text := fmt.Sprintf(`{"id":%q,"org_id":%q,"audit_kind":%q,"event_type":"UserRoleChanged","event_data":{"seq":%d,"nested":{"list":[1,"two",3.5,null,true,false],"big":18446744073709551615,"neg":-42},"note":%s},"created_at":%d,"score":%s,"caused_by_type":"ApiKey","relevant_user_email":%s}`,
			id, org, kind, i, note, 1769611845+i, score, email)
		body, err := chunks.FromJSON([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		canon, err := chunks.Canonical([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = genEvent{id: id, org: org, kind: kind, canon: canon, body: body}
	}
	return out
}

// randomTimestamp is an EventTime, an integer or a float, as Fluent Bit's inputs produce them.
func randomTimestamp(rng *rand.Rand) []byte {
	now := time.Now()
	switch rng.IntN(3) {
	case 0:
		return chunks.EventTime(now)
	case 1:
		b, _ := msgpack.Marshal(now.Unix())
		return b
	}
	b, _ := msgpack.Marshal(float64(now.UnixNano()) / 1e9)
	return b
}

// chunkEvents packs events into chunks of one tag each, of random sizes, mixing V2 and legacy layouts and
// adding group markers now and then.
func chunkEvents(events []genEvent, rng *rand.Rand, maxPerChunk int) []chunk {
	byKind := map[string][]genEvent{}
	for _, ev := range events {
		byKind[ev.kind] = append(byKind[ev.kind], ev)
	}
	var out []chunk
	for len(byKind) > 0 {
		kind := kinds[rng.IntN(len(kinds))]
		evs := byKind[kind]
		if len(evs) == 0 {
			continue
		}
		n := min(len(evs), 1+rng.IntN(maxPerChunk))
		var data []byte
		group := rng.IntN(5) == 0
		if group {
			data = append(data, chunks.GroupStart()...)
		}
		for _, ev := range evs[:n] {
			if rng.IntN(2) == 0 {
				data = append(data, chunks.V2(randomTimestamp(rng), ev.body)...)
			} else {
				data = append(data, chunks.Legacy(randomTimestamp(rng), ev.body)...)
			}
		}
		if group {
			data = append(data, chunks.GroupEnd()...)
		}
		out = append(out, chunk{tag: "audit." + kind, data: data})
		if byKind[kind] = evs[n:]; len(byKind[kind]) == 0 {
			delete(byKind, kind)
		}
	}
	return out
}

// Hand-made msgpack, following the spec byte by byte, for the golden object.
func fixstr(s string) []byte { return append([]byte{0xa0 | byte(len(s))}, s...) }

func goldenChunk() []byte {
	be64 := func(code byte, v uint64) []byte {
		b := []byte{code, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(b[1:], v)
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	rec1 := cat([]byte{0x8d},
		fixstr("org_id"), fixstr("golden-org"),
		fixstr("id"), fixstr("g-1"),
		fixstr("str"), fixstr("héllo \"w\"\n"),
		fixstr("bin"), []byte{0xc4, 3, 'a', 'b', 0xff},
		fixstr("u64"), be64(0xcf, 0xffffffffffffffff),
		fixstr("i64"), be64(0xd3, 0x8000000000000000),
		fixstr("f32"), []byte{0xca, 0x3f, 0xc0, 0x00, 0x00},
		fixstr("f64"), be64(0xcb, 0xbfb999999999999a),
		fixstr("nil"), []byte{0xc0},
		fixstr("t"), []byte{0xc3},
		fixstr("arr"), []byte{0x93, 0x01, 0x90, 0x80},
		fixstr("ext"), []byte{0xd5, 0x05, 0x01, 0x02},
		fixstr("ts"), []byte{0xd7, 0x00, 0x69, 0x7a, 0x22, 0x45, 0x1d, 0xcd, 0x65, 0x00},
	)
	rec2 := cat([]byte{0x83}, fixstr("org_id"), fixstr("golden-org"), fixstr("id"), fixstr("g-2"),
		fixstr("utf8"), fixstr("ü€😀"))
	rec3 := cat([]byte{0x84}, fixstr("org_id"), fixstr("golden-org"), fixstr("id"), fixstr("g-3"),
		fixstr("u2028"), fixstr("a\u2028b"), fixstr("ctl"), []byte{0xa1, 0x01})
	ts := []byte{0xd7, 0x00, 0x69, 0x7a, 0x22, 0x45, 0, 0, 0, 0}
	return cat(
		[]byte{0x92, 0x92}, ts, []byte{0x80}, rec1, // V2 with EventTime
		[]byte{0x92, 0xce, 0x69, 0x7a, 0x22, 0x45}, rec2, // legacy with an integer timestamp
		[]byte{0x92, 0x92, 0xcb, 0x41, 0xda, 0x5e, 0x88, 0x91, 0x50, 0x00, 0x00, 0x80}, rec3, // V2 with a float (1769611845.25)
	)
}

// TestDeliverySpine: 2 orgs x 3 kinds, 10,200 events in chunks of varied sizes, V2 and legacy mixed,
// Workers 2, through the real .so in the host against moto with auth on.
func TestDeliverySpine(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(1, 2))
	events := genEvents(t, 10200, rng, "ev-")
	cs := chunkEvents(events, rng, 250)
	cs = append(cs[:len(cs)/2], append([]chunk{{tag: "audit.org", data: goldenChunk()}}, cs[len(cs)/2:]...)...)
	r := e.runToEnd(e.config("fluent-bit.conf", nil), e.input("input.chunks", cs))

	if r.ExitCode != 0 || r.Summary("ok") != len(cs) || r.Summary("error") != 0 || r.Summary("dropped") != 0 {
		t.Fatalf("host: exit %d, summary %v", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	want := map[string]genEvent{}
	for _, ev := range events {
		want[ev.id] = ev
	}
	seen := map[string]int{}
	objects := e.delivered()
	for key, recs := range objects {
		m := keyPattern.FindStringSubmatch(key)
		if m == nil {
			continue
		}
		if m[1] == "golden-org" {
			continue
		}
		for _, raw := range recs {
			var head struct {
				ID    string `json:"id"`
				Org   string `json:"org_id"`
				Kind  string `json:"audit_kind"`
				Stray string `json:"date"`
			}
			json.Unmarshal(raw, &head)
			ev, ok := want[head.ID]
			if !ok {
				t.Errorf("%s holds an unknown record %s", key, raw)
				continue
			}
			seen[head.ID]++
			if ev.org != m[1] || ev.kind != m[2] {
				t.Errorf("record %s of %s/%s is in %s", head.ID, ev.org, ev.kind, key)
			}
			got, err := chunks.Canonical(raw)
			if err != nil || got != ev.canon {
				t.Errorf("record %s differs:\n got %s\nwant %s", head.ID, got, ev.canon)
			}
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("event %s delivered %d times", id, seen[id])
		}
	}
	t.Logf("%d events in %d objects", len(seen), len(objects))

	golden, err := os.ReadFile("testdata/golden-object.json")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for key := range objects {
		if strings.HasPrefix(key, "golden-org/org-audit-logs-") {
			found++
			body, _ := e.moto.Get(t.Context(), e.p.Bucket, key)
			plain, _ := gunzip(body)
			if !bytes.Equal(plain, golden) {
				t.Errorf("golden object differs:\n got %s\nwant %s", plain, golden)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d golden objects, want 1", found)
	}
	ops := e.onlyAllowedCalls()
	if ops["AssumeRole"] == 0 || ops["PutObject"] != len(objects) {
		t.Errorf("server calls %v for %d objects", ops, len(objects))
	}
	e.checkPutHeaders()
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Errorf("%d records rejected, want none: %v", len(dl), dl[0])
	}
}

func smallInput(t *testing.T, n int) ([]genEvent, []chunk) {
	rng := rand.New(rand.NewPCG(3, 4))
	events := genEvents(t, n, rng, "ev-")
	return events, chunkEvents(events, rng, 10)
}

func countDelivered(e *env) int {
	n := 0
	for _, recs := range e.delivered() {
		n += len(recs)
	}
	return n
}

// TestWrongExternalID: nothing is uploaded and nothing lost; the log names the External ID and the trust
// policy and never shows the value; with the right value and a restart, everything is delivered.
func TestWrongExternalID(t *testing.T) {
	e := newEnv(t)
	events, cs := smallInput(t, 120)
	const wrong = "0000dead-beef-4e6e-9426-fccdfdae1862"
	secret(wrong)
	r := e.runToEnd(e.config("wrong.conf", map[string]string{"External_ID": wrong, "Shutdown_Timeout": "3s"}),
		e.input("input.chunks", cs))
	if r.ExitCode != 0 || r.Summary("ok") != len(cs) {
		t.Fatalf("host: exit %d, %v", r.ExitCode, r.Stdout)
	}
	if n := countDelivered(e); n != 0 {
		t.Fatalf("%d records delivered with a wrong External ID", n)
	}
	if !strings.Contains(r.Stderr, "External_ID") || !strings.Contains(r.Stderr, "trust policy") {
		t.Errorf("the log does not point at the External ID and the trust policy:\n%s", r.Stderr)
	}
	if strings.Contains(r.Stderr, wrong) || strings.Contains(r.Stderr, externalID) {
		t.Errorf("the log shows an External ID")
	}
	if !strings.Contains(r.Stderr, "batches stay in") {
		t.Errorf("shutdown does not say the batches stay on disk")
	}

	r = e.runToEnd(e.config("fixed.conf", nil), "")
	if r.ExitCode != 0 {
		t.Fatalf("host exit %d", r.ExitCode)
	}
	if n := countDelivered(e); n != len(events) {
		t.Errorf("%d of %d records delivered after fixing the External ID", n, len(events))
	}
	e.onlyAllowedCalls()
}

// TestKillBeforeUpload: records acknowledged, the host killed with SIGKILL before any upload, then restarted:
// everything is delivered once.
func TestKillBeforeUpload(t *testing.T) {
	e := newEnv(t)
	events, cs := smallInput(t, 600)
	conf := e.config("fluent-bit.conf", map[string]string{"Upload_Timeout": "1h", "Total_File_Size": "50M"})
	p := e.start(conf, e.input("input.chunks", cs), false)
	err := p.WaitFor(time.Minute, func(r *hostrun.Result) bool { return r.Count("flush ") >= len(cs) })
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Snapshot(); r.Count("flush ") != r.Count("flush wivaudit.0 ") || strings.Count(strings.Join(r.Stdout, "\n"), " OK") != len(cs) {
		t.Fatalf("not every chunk was acknowledged: %v", r.Stdout)
	}
	p.Signal(syscall.SIGKILL)
	p.Wait(time.Minute)
	if n := countDelivered(e); n != 0 {
		t.Fatalf("%d records were uploaded before the kill; the test needs them buffered", n)
	}

	r := e.runToEnd(e.config("restart.conf", nil), "")
	if r.ExitCode != 0 {
		t.Fatalf("host exit %d", r.ExitCode)
	}
	if n := countDelivered(e); n != len(events) {
		t.Errorf("%d of %d acknowledged records delivered after SIGKILL and restart", n, len(events))
	}
}

// v2JSON is one V2 event whose body is the JSON object js.
func v2JSON(t *testing.T, ts []byte, js string) []byte {
	t.Helper()
	b, err := chunks.FromJSON([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return chunks.V2(ts, b)
}

// TestBadRecords: rejected records go to the dead-letter file with a reason, the host does not crash, and the
// good records of the same chunks are delivered.
func TestBadRecords(t *testing.T) {
	e := newEnv(t)
	ts := chunks.EventTime(time.Now())
	good := func(id string) []byte { return v2JSON(t, ts, fmt.Sprintf(`{"id":%q,"org_id":"org-a"}`, id)) }
	bad := func(js string) []byte { return v2JSON(t, ts, js) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	truncated := good("cut")[:12]
	// Values JSON cannot hold as they are: each rejects its record, which the dead-letter file keeps as it came.
	head := cat([]byte{0x83}, fixstr("org_id"), fixstr("org-a"))
	unfaithful := [][]byte{
		chunks.V2(ts, cat(head, fixstr("id"), fixstr("nan"), fixstr("f"), []byte{0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1})),
		chunks.V2(ts, cat(head, fixstr("id"), fixstr("intkey"), []byte{0x01}, fixstr("x"))),
		chunks.V2(ts, cat(head, fixstr("id"), fixstr("utf8"), fixstr("s"), []byte{0xa2, 0xc3, 0x28})),
		bad(`{"id":"dup","org_id":"org-a","id":"dup2"}`),
		bad(`{"id":"reserved","org_id":"org-a","_wivaudit_base64":{}}`),
	}
	cs := []chunk{
		{"audit.user", cat(good("u1"), bad(`{"id":"no-org"}`), bad(`{"id":"trav","org_id":"../x"}`), good("u2"),
			chunks.V2(ts, fixstr("a string body")), bad(`{"id":"num","org_id":123}`), good("u3"))},
		{"audit.bogus", cat(bad(`{"id":"kind","org_id":"org-a"}`))},
		{"audit.api", cat(good("a1"), []byte{0x93, 0x01, 0x02, 0x03}, good("a2"), truncated)},
		{"audit.org", cat(unfaithful...)},
	}
	r := e.runToEnd(e.config("fluent-bit.conf", map[string]string{"Match": "*"}), e.input("input.chunks", cs))
	if r.ExitCode != 0 || r.Summary("ok") != len(cs) {
		t.Fatalf("host: exit %d, %v", r.ExitCode, r.Stdout)
	}
	got := map[string]bool{}
	for _, recs := range e.delivered() {
		for _, raw := range recs {
			var h struct{ ID string }
			json.Unmarshal(raw, &h)
			got[h.ID] = true
		}
	}
	for _, id := range []string{"u1", "u2", "u3", "a1", "a2"} {
		if !got[id] {
			t.Errorf("good record %s was not delivered", id)
		}
	}
	if len(got) != 5 {
		t.Errorf("delivered %v, want only the 5 good records", got)
	}
	reasons := []string{}
	for _, d := range e.deadLetters() {
		reasons = append(reasons, d["reason"].(string))
	}
	joined := strings.Join(reasons, "\n")
	for _, want := range []string{`no "org_id" field`, `org_id "../x" is not a safe organisation ID`, "record body is not a map",
		`"org_id" is not a string`, `kind "bogus" (from the last part of tag "audit.bogus")`,
		"event is not a [header, body] array", "malformed msgpack",
		`record body: NaN at "/f"`, `record body: a key of type integer in the object at the top level`,
		`record body: invalid UTF-8 in the string at "/s"`, `record body: the key "id" appears more than once`,
		`record body: the record has a top-level key "_wivaudit_base64"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("no dead letter says %q; reasons:\n%s", want, joined)
		}
	}
	if len(reasons) != 12 {
		t.Errorf("%d dead letters, want 12:\n%s", len(reasons), joined)
	}
	kept := map[string]bool{}
	for _, d := range e.deadLetters() {
		if raw, ok := d["msgpack_base64"].(string); ok {
			kept[raw] = true
		}
	}
	for _, ev := range unfaithful {
		if !kept[base64.StdEncoding.EncodeToString(ev)] {
			t.Errorf("the dead-letter file does not keep %x as it came", ev)
		}
	}
}

// TestDeadLetterLimit: the dead-letter file keeps the rejected records that fit in Dead_Letter_Limit_Size; the
// rest are discarded and counted, while the good records of the same chunks keep flowing and are delivered.
// The first chunk's rejections alone overflow the file, so part of them is kept.
func TestDeadLetterLimit(t *testing.T) {
	e := newEnv(t)
	ts := chunks.EventTime(time.Now())
	rec := func(js string) []byte { return v2JSON(t, ts, js) }
	pad := strings.Repeat("x", 200)
	var cs []chunk
	for i := range 20 {
		var data []byte
		for j := range 3 {
			data = append(data, rec(fmt.Sprintf(`{"id":"g%d-%d","org_id":"org-a"}`, i, j))...)
		}
		bad := 2
		if i == 0 {
			bad = 10
		}
		for j := range bad {
			data = append(data, rec(fmt.Sprintf(`{"id":"b%d-%d","org_id":"../x","pad":%q}`, i, j, pad))...)
		}
		cs = append(cs, chunk{"audit.user", data})
	}
	const limit = 2000
	// One worker, so that the first chunk is the first to meet the dead-letter file.
	r := e.runToEnd(e.config("fluent-bit.conf", map[string]string{"Dead_Letter_Limit_Size": "2K", "Workers": "1"}), e.input("input.chunks", cs))
	if r.ExitCode != 0 || r.Summary("ok") != len(cs) {
		t.Fatalf("host: exit %d, %v", r.ExitCode, r.Stdout)
	}
	got := e.deliveredIDs()
	for i := range 20 {
		for j := range 3 {
			if id := fmt.Sprintf("g%d-%d", i, j); got[id] != 1 {
				t.Errorf("good record %s delivered %d times", id, got[id])
			}
		}
	}
	if len(got) != 60 {
		t.Errorf("%d records delivered, want the 60 good ones", len(got))
	}
	fi, err := os.Stat(filepath.Join(e.dir, "store", "deadletter.jsonl"))
	if err != nil || fi.Size() > limit {
		t.Fatalf("dead-letter file: %v, %v", fi, err)
	}
	kept := len(e.deadLetters())
	first := regexp.MustCompile(`is full \(.*\): kept ([1-9][0-9]*) and discarded [1-9][0-9]* of a chunk's 10 rejected record\(s\) with tag "audit.user" .*raise Dead_Letter_Limit_Size`).FindStringSubmatch(r.Stderr)
	stop := regexp.MustCompile(`stopped: 60 records accepted, 48 rejected \(([0-9]+) discarded: the dead-letter file was full\)`).FindStringSubmatch(r.Stderr)
	if first == nil || stop == nil {
		t.Fatalf("no log line reports the records kept and discarded:\n%s", tail(r.Stderr, 20))
	}
	if discarded, _ := strconv.Atoi(stop[1]); first[1] != strconv.Itoa(kept) || kept+discarded != 48 {
		t.Errorf("%d rejected records in the file, %s kept of the first chunk, %d discarded: want all of the file from the first chunk, 48 in all",
			kept, first[1], discarded)
	}
	t.Logf("48 rejected records: %d kept in %d bytes (limit %d, all from the first chunk of 10), %s discarded and reported; the 60 good records delivered once",
		kept, fi.Size(), limit, stop[1])
}

// TestBadSettings: Init fails with a message that names the key, on one error line (Fluent Bit prints only a
// message's first line with its time and level), and the host refuses to start.
func TestBadSettings(t *testing.T) {
	e := &env{t: t, dir: t.TempDir(), moto: nil}
	badFile := filepath.Join(e.dir, "destinations.json")
	os.WriteFile(badFile, []byte("[\n  {\"org_id\": \"a\",\n   \"bucket_name\": bucket-a}\n]"), 0o600)
	fileOnly := map[string]string{"Org_ID": "", "Bucket": "", "Role_ARN": "", "External_ID": "", "Destinations_File": badFile}
	cases := []struct {
		name string
		over map[string]string
		key  string
	}{
		{"no bucket", map[string]string{"Bucket": ""}, "Bucket: not set although Org_ID is"},
		{"bucket without organisation", map[string]string{"Org_ID": ""}, "Org_ID: not set: a Bucket at the [OUTPUT] level is one organisation's destination"},
		{"hold without a file", map[string]string{"Unlisted_Orgs": "hold"}, "Unlisted_Orgs: set together with Org_ID"},
		{"organisation with a file", map[string]string{"Destinations_File": badFile}, "Org_ID: set together with Destinations_File"},
		{"old default", map[string]string{"Org_ID": "", "Unlisted_Orgs": "default"}, "Unlisted_Orgs: default is no longer accepted"},
		{"destinations syntax", fileOnly, "Destinations_File " + badFile + ": line 3, column 19: invalid character 'b' looking for beginning of value"},
		{"malformed role", map[string]string{"Role_ARN": "arn:aws:iam::123:role/x"}, "Role_ARN: \"arn:aws:iam::123:role/x\" is not an IAM role ARN"},
		{"role without external id", map[string]string{"External_ID": ""}, "External_ID: not set although Role_ARN is"},
		{"bad size", map[string]string{"Total_File_Size": "12XB"}, "Total_File_Size: \"12XB\" is not a size"},
		{"bad duration", map[string]string{"Upload_Timeout": "ten minutes"}, "Upload_Timeout: \"ten minutes\" is not a duration"},
		{"relative store", map[string]string{"Store_Dir": "relative/dir"}, "Store_Dir: \"relative/dir\" is not an absolute path"},
		{"plain http", map[string]string{"Allow_Plain_HTTP": ""}, "Endpoint: \"http://127.0.0.1:9\" uses plain HTTP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			over := map[string]string{"Org_ID": "org-a", "Bucket": "b-ok", "Role_ARN": "arn:aws:iam::123456789012:role/r", "External_ID": externalID,
				"Endpoint": "http://127.0.0.1:9", "STS_Endpoint": "http://127.0.0.1:9", "Store_Dir": e.dir + "/store",
				"Allow_Plain_HTTP": "on"}
			for k, v := range c.over {
				over[k] = v
			}
			p, err := host.Start(e.bareConfig(over), "", nil, true)
			if err != nil {
				t.Fatal(err)
			}
			r := p.Wait(time.Minute)
			if r.ExitCode == 0 || r.Count("init-failed") != 1 {
				t.Fatalf("Init did not fail: exit %d, %v", r.ExitCode, r.Stdout)
			}
			line := regexp.MustCompile(`(?m)^.*` + regexp.QuoteMeta(c.key) + `.*$`).FindString(r.Stderr)
			if !regexp.MustCompile(`^\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\] \[error\] \[output:wivaudit:wivaudit\.0\] `).MatchString(line) {
				t.Errorf("no error line names the key (%q):\n%s", c.key, r.Stderr)
			}
		})
	}
}

// bareConfig writes a config without a backend, for settings that fail before any network use.
func (e *env) bareConfig(over map[string]string) string {
	var b strings.Builder
	b.WriteString("[OUTPUT]\n    Name wivaudit\n    Match *\n")
	for k, v := range over {
		if v != "" {
			fmt.Fprintf(&b, "    %s %s\n", k, v)
		}
	}
	path := e.dir + "/bad.conf"
	os.WriteFile(path, []byte(b.String()), 0o600)
	return path
}
