// Command bench is `make bench`: one table, every figure from the same run. First the Go benchmarks of
// decode+transcode, append, flush and seal; then, per workload, the whole plugin (the real .so in the test host)
// next to the host alone and to two floors measured on the same bytes: gzip alone at the plugin's level, and one
// write + fdatasync per chunk in Store_Dir's filesystem.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/test/hostrun"
	"github.com/wiv/out_wivaudit/test/workload"
)

type options struct {
	host, plugin, null string
	pkgs, bench, time  string
	orgs               []int
	spec               workload.Spec
	uploadTimeout      string
	runTimeout         time.Duration
	totalFileSize      string
	dir                string
}

func main() {
	var o options
	var orgs string
	flag.StringVar(&o.host, "host", "build/flbhost", "the Fluent Bit stand-in")
	flag.StringVar(&o.plugin, "plugin", "build/out_wivaudit.so", "the plugin")
	flag.StringVar(&o.null, "null", "build/nullout.so", "the do-nothing output, to measure the host alone")
	flag.StringVar(&o.pkgs, "pkgs", "./conf/... ./plugin/... ./buffer/...", "packages whose benchmarks run (space-separated)")
	flag.StringVar(&o.bench, "bench", "^Benchmark(Decode|Append|Flush|Seal)", "which Go benchmarks run")
	flag.StringVar(&o.time, "benchtime", "1s", "go test -benchtime")
	flag.StringVar(&orgs, "orgs", "100,10000", "organisations of each workload (x 3 kinds)")
	flag.IntVar(&o.spec.Events, "events", workload.Reference.Events, "events per workload")
	flag.Uint64Var(&o.spec.Seed, "seed", workload.Reference.Seed, "generator seed")
	flag.IntVar(&o.spec.ChunkBytes, "chunk-bytes", workload.Reference.ChunkBytes, "bytes at which a chunk is handed over")
	flag.StringVar(&o.uploadTimeout, "upload-timeout", "10s", "the plugin's Upload_Timeout")
	flag.DurationVar(&o.runTimeout, "run-timeout", 120*time.Second, "how long a plugin run may take to deliver everything before the host is stopped (it delivers the rest at exit)")
	flag.StringVar(&o.totalFileSize, "total-file-size", "5M", "the plugin's Total_File_Size")
	flag.StringVar(&o.dir, "dir", "", "folder for Store_Dir, the floor's file and the inputs (default: a new temporary folder)")
	flag.Parse()
	for _, f := range strings.Split(orgs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench: -orgs: %q is not a positive number\n", f)
			os.Exit(2)
		}
		o.orgs = append(o.orgs, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	started, load := time.Now(), loadAverage()
	if o.dir == "" {
		dir, err := os.MkdirTemp("", "wivaudit-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dir = dir
	}
	for _, p := range []*string{&o.host, &o.plugin, &o.null} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	var t table
	progress("Go benchmarks %s in %s", o.bench, o.pkgs)
	if err := goBenchmarks(&t, o); err != nil {
		return err
	}
	var results []*workloadResult
	for _, orgs := range o.orgs {
		res, err := measureWorkload(&t, o, orgs)
		if err != nil {
			return fmt.Errorf("%d organisations: %w", orgs, err)
		}
		results = append(results, res)
	}

	fmt.Printf("make bench, %s, took %s: %s, %d CPUs, Go %s; load average %s at the start, %s at the end\n",
		started.Format("2006-01-02 15:04"), time.Since(started).Round(time.Second), cpuModel(), runtime.NumCPU(),
		strings.TrimPrefix(runtime.Version(), "go"), load, loadAverage())
	fmt.Printf("Plugin settings: Total_File_Size %s, Upload_Timeout %s, Compression_Level %d (the default), Workers 0; Store_Dir under %s\n",
		o.totalFileSize, o.uploadTimeout, conf.DefaultCompressionLevel, o.dir)
	for _, r := range results {
		fmt.Println(r.about)
	}
	if r, ok := perObjectRow(results); ok {
		t.add(r)
	}
	fmt.Println()
	t.print(os.Stdout)
	fmt.Println()
	fmt.Println("CPU columns: CPU-seconds per 1M events. \"output\": the host's CPU with the plugin (getrusage of the child,")
	fmt.Println("shutdown included) less the host alone on the same input. \"x floors\": output CPU / (floor a + floor b).")
	fmt.Println("\"CPU per delivered object\": user and sys in ms: the output CPU of the workload with the most organisations,")
	fmt.Println("less the per-event output CPU of the one with the fewest times its events, divided by its objects.")
	fmt.Println("Go benchmark rows: ns/op, MB/s, allocs/op (and ratio where the benchmark reports one).")
	incomplete := 0
	for _, r := range results {
		if r.note != "" {
			fmt.Printf("* %s: %s\n", r.label, r.note)
		}
		if r.incomplete {
			incomplete++
		}
	}
	if incomplete > 0 {
		return fmt.Errorf("%d workloads were not delivered completely within -run-timeout, so their rows cover part of the work; "+
			"to wait longer, make bench BENCHFLAGS=-run-timeout=10m", incomplete)
	}
	for _, r := range results[1:] {
		fmt.Printf("Output CPU per event, %s against %s: %.2fx\n", r.label, results[0].label, r.perEvent/results[0].perEvent)
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// goBenchmarks runs the Go benchmarks and adds a row for each.
func goBenchmarks(t *table, o options) error {
	args := append([]string{"test", "-run", "^$", "-bench", o.bench, "-benchmem", "-benchtime", o.time}, strings.Fields(o.pkgs)...)
	cmd := exec.Command("go", args...)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, os.Stderr)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	rows := parseBenchmarks(out.String())
	if len(rows) == 0 {
		return fmt.Errorf("go test ran no benchmark matching %s", o.bench)
	}
	for _, r := range rows {
		t.add(r)
	}
	return nil
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parseBenchmarks reads `go test -bench` output: "BenchmarkX-2  N  v unit  v unit ...", after "pkg: path".
func parseBenchmarks(out string) []row {
	var rows []row
	pkg := ""
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "pkg:" {
			pkg = filepath.Base(f[1])
			continue
		}
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		r := row{name: pkg + " " + procsSuffix.ReplaceAllString(f[0], "")}
		for i := 2; i+1 < len(f); i += 2 {
			switch f[i+1] {
			case "ns/op":
				r.nsPerOp = f[i]
			case "MB/s":
				r.mbPerS = f[i]
			case "allocs/op":
				r.allocs = f[i]
			case "ratio":
				r.ratio = f[i]
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// workloadResult is what one workload's measurement adds besides its rows.
type workloadResult struct {
	label, about string
	orgs, events int
	out          cpu // the output's CPU-seconds: the host with the plugin less the host alone
	objects      int64
	perEvent     float64 // output CPU-seconds per event
	note         string
	incomplete   bool
}

// perObjectRow is the CPU of a delivered object in the run of the workload with the most organisations: its
// output CPU less what the workload with the fewest costs per event, times its events, divided by its objects,
// in ms. Objects are small there, so that what is left is mostly the objects' own cost (seal, upload, ledger).
// False with fewer than two workloads, or no object.
func perObjectRow(results []*workloadResult) (row, bool) {
	if len(results) < 2 {
		return row{}, false
	}
	many, few := results[0], results[0]
	for _, r := range results {
		if r.orgs > many.orgs {
			many = r
		}
		if r.orgs < few.orgs {
			few = r
		}
	}
	if many == few || many.objects == 0 || few.events == 0 {
		return row{}, false
	}
	f := float64(many.events) / float64(few.events)
	ms := 1000 / float64(many.objects)
	return row{name: fmt.Sprintf("CPU per delivered object, ms: %s less %s's per event", many.label, few.label),
		perObject: &cpu{user: (many.out.user - few.out.user*f) * ms, sys: (many.out.sys - few.out.sys*f) * ms}}, true
}

// measureWorkload generates a workload, measures the floors, the host alone and the plugin, and adds their rows.
func measureWorkload(t *table, o options, orgs int) (*workloadResult, error) {
	spec := o.spec
	spec.Orgs = orgs
	res := &workloadResult{label: fmt.Sprintf("%d orgs x 3", orgs), orgs: orgs}
	progress("%s: generating %d events", res.label, spec.Events)
	w, err := workload.Generate(spec)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(o.dir, strconv.Itoa(orgs))
	if err := os.RemoveAll(dir); err != nil { // a Store_Dir left by an earlier run would deliver its records too
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	input := filepath.Join(dir, "input")
	if err := w.WriteInput(input); err != nil {
		return nil, err
	}
	streams := w.Streams()
	res.about = fmt.Sprintf("Workload %s: %d events, seed %d, %d streams, %.1f MB of JSON (%.0f B/event), %d chunks of ~%d KiB",
		res.label, len(w.Events), spec.Seed, len(streams), float64(w.JSONBytes)/1e6, float64(w.JSONBytes)/float64(len(w.Events)),
		len(w.Chunks), spec.ChunkBytes>>10)
	per := 1e6 / float64(len(w.Events))

	progress("%s: floor a, gzip level %d of %d streams", res.label, conf.DefaultCompressionLevel, len(streams))
	gz, err := floorGzip(streams, conf.DefaultCompressionLevel)
	if err != nil {
		return nil, err
	}
	progress("%s: floor b, write + fdatasync of %d chunks", res.label, len(w.Chunks))
	fsync, err := floorSync(w.Chunks, dir)
	if err != nil {
		return nil, err
	}
	progress("%s: the host alone (nullout)", res.label)
	alone, err := runAlone(o, dir, input, len(w.Chunks))
	if err != nil {
		return nil, err
	}
	progress("%s: the host with out_wivaudit, until the sink holds every event", res.label)
	plug, err := runPlugin(o, dir, input, w)
	if err != nil {
		return nil, err
	}

	out := cpu{user: plug.cpu.user - alone.cpu.user, sys: plug.cpu.sys - alone.cpu.sys}
	res.events, res.out, res.objects = len(w.Events), out, plug.objects
	res.perEvent, res.note, res.incomplete = out.total()/float64(len(w.Events)), plug.note, plug.incomplete
	name := "out_wivaudit output, " + res.label
	if plug.note != "" {
		name += " *"
	}
	t.add(row{name: "host alone (nullout), " + res.label, cpu: alone.cpu.scaled(per), rss: alone.rssMiB,
		p50: alone.p50, p99: alone.p99})
	t.add(row{name: name, cpu: out.scaled(per), rss: plug.rssMiB, objects: plug.objects,
		ratio: fmt.Sprintf("%.2f", float64(w.JSONBytes)/float64(plug.objectBytes)), p50: plug.p50, p99: plug.p99,
		floors: fmt.Sprintf("%.2f", out.total()/(gz.cpu.total()+fsync.total()))})
	t.add(row{name: fmt.Sprintf("floor a: gzip level %d, %s", conf.DefaultCompressionLevel, res.label), cpu: gz.cpu.scaled(per),
		ratio: fmt.Sprintf("%.2f", float64(w.JSONBytes)/float64(gz.bytes))})
	t.add(row{name: fmt.Sprintf("floor b: write+fdatasync x %d chunks, %s", len(w.Chunks), res.label), cpu: fsync.scaled(per)})
	return res, nil
}

// cpu is user and system CPU time, in seconds.
type cpu struct{ user, sys float64 }

func (c cpu) total() float64        { return c.user + c.sys }
func (c cpu) scaled(f float64) *cpu { return &cpu{user: c.user * f, sys: c.sys * f} }
func since(start cpu) cpu {
	now := self()
	return cpu{user: now.user - start.user, sys: now.sys - start.sys}
}
func seconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// self is this process's CPU time so far.
func self() cpu {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return cpu{user: seconds(ru.Utime), sys: seconds(ru.Stime)}
}

type gzipFloor struct {
	cpu   cpu
	bytes int64
}

// floorGzip compresses each stream's records with klauspost/compress gzip at level, one writer reset per stream.
func floorGzip(streams [][][]byte, level int) (gzipFloor, error) {
	var out countingWriter
	zw, err := gzip.NewWriterLevel(&out, level)
	if err != nil {
		return gzipFloor{}, err
	}
	bw := bufio.NewWriterSize(zw, 64<<10)
	runtime.GC()
	start := self()
	for _, s := range streams {
		zw.Reset(&out)
		bw.Reset(zw)
		for _, r := range s {
			bw.Write(r)
			bw.WriteString(",\n")
		}
		if err := bw.Flush(); err != nil {
			return gzipFloor{}, err
		}
		if err := zw.Close(); err != nil {
			return gzipFloor{}, err
		}
	}
	return gzipFloor{cpu: since(start), bytes: out.n}, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return len(b), nil
}

// floorSync appends each chunk to one file in dir with one write and one fdatasync.
func floorSync(chunks []workload.Chunk, dir string) (cpu, error) {
	path := filepath.Join(dir, "floor-b")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return cpu{}, err
	}
	defer os.Remove(path)
	defer f.Close()
	runtime.GC()
	start := self()
	for _, c := range chunks {
		if _, err := f.Write(c.Data); err != nil {
			return cpu{}, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return cpu{}, err
		}
	}
	return since(start), nil
}

// hostRun is what one host run measured.
type hostRun struct {
	cpu                  cpu
	rssMiB               float64
	p50, p99             float64 // ms
	objects, objectBytes int64
	note                 string // how the run fell short, if it did
	incomplete           bool
}

func measured(r *hostrun.Result, chunks int) (*hostRun, error) {
	if r.ExitCode != 0 || r.Summary("ok") != chunks || r.Summary("retry") != 0 || r.Summary("error") != 0 {
		return nil, fmt.Errorf("host exit %d, %d of %d chunks OK, %d retried, %d failed; stderr:\n%s",
			r.ExitCode, r.Summary("ok"), chunks, r.Summary("retry"), r.Summary("error"), tail(r.Stderr, 20))
	}
	return &hostRun{cpu: cpu{user: r.UserCPU.Seconds(), sys: r.SysCPU.Seconds()},
		rssMiB: float64(r.Summary("peak_rss_kb")) / 1024,
		p50:    float64(r.Summary("flush_us_p50")) / 1000, p99: float64(r.Summary("flush_us_p99")) / 1000}, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func runAlone(o options, dir, input string, chunks int) (*hostRun, error) {
	config := filepath.Join(dir, "null.conf")
	if err := writeConfig(config, [][2]string{{"Name", "nullout"}, {"Match", "audit.*"}}); err != nil {
		return nil, err
	}
	p, err := hostrun.Host{Bin: o.host, Plugin: o.null}.Start(config, input, nil, true)
	if err != nil {
		return nil, err
	}
	return measured(p.Wait(2*time.Minute), chunks)
}

// runPlugin runs the host with the plugin until the sink has every event, then stops it as Fluent Bit stops.
func runPlugin(o options, dir, input string, w *workload.Workload) (*hostRun, error) {
	seed := maphash.MakeSeed()
	var want uint64
	for _, ev := range w.Events {
		want += maphash.Bytes(seed, ev.JSON)
	}
	s, err := startSink(seed)
	if err != nil {
		return nil, err
	}
	defer s.close()
	delivered := s.expect(int64(len(w.Events)))
	store := filepath.Join(dir, "store")
	config := filepath.Join(dir, "wivaudit.conf")
	if err := writeConfig(config, [][2]string{{"Name", "wivaudit"}, {"Match", "audit.*"}, {"Retry_Limit", "no_limits"},
		{"Bucket", "bench-audit-logs"}, {"Unlisted_Orgs", "archive"}, {"Region", "us-east-1"}, {"Endpoint", s.url}, {"Allow_Plain_HTTP", "on"},
		{"Store_Dir", store}, {"Total_File_Size", o.totalFileSize}, {"Upload_Timeout", o.uploadTimeout}}); err != nil {
		return nil, err
	}
	// Every organisation into one archive bucket, with no Role_ARN: uploads are signed with these static
	// credentials directly.
	env := []string{"AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench-not-a-secret", "AWS_SESSION_TOKEN=",
		"AWS_PROFILE=", "AWS_CONFIG_FILE=" + filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED=true"}
	p, err := hostrun.Host{Bin: o.host, Plugin: o.plugin}.Start(config, input, env, false)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	stopped, err := waitDelivered(p, s, w, delivered, o.runTimeout)
	if err != nil {
		p.Signal(syscall.SIGKILL)
		p.Wait(time.Minute)
		return nil, err
	}
	p.Signal(syscall.SIGTERM)
	r := p.Wait(time.Minute)
	objects, objectBytes, records, sum, sinkErr := s.totals()
	if sinkErr != nil {
		return nil, sinkErr
	}
	progress("the host ended after %s", time.Since(start).Round(100*time.Millisecond))
	if records > int64(len(w.Events)) || (records == int64(len(w.Events)) && sum != want) {
		return nil, fmt.Errorf("the sink holds %d records (want %d) and they are not the input's (hash sum %x, want %x)",
			records, len(w.Events), sum, want)
	}
	h, err := measured(r, len(w.Chunks))
	if err != nil {
		return nil, err
	}
	h.objects, h.objectBytes = objects, objectBytes
	switch {
	case records < int64(len(w.Events)):
		h.incomplete = true
		h.note = fmt.Sprintf("INCOMPLETE: %d of %d events delivered; stopped after %s", records, len(w.Events), o.runTimeout)
	case stopped:
		h.note = fmt.Sprintf("stopped after %s, the rest delivered at exit", o.runTimeout)
	}
	return h, nil
}

// waitDelivered waits until the sink holds every event, logging progress, and reports whether it gave up at
// timeout instead. It fails when the host ends or stops flushing.
func waitDelivered(p *hostrun.Proc, s *sink, w *workload.Workload, delivered <-chan struct{}, timeout time.Duration) (bool, error) {
	start := time.Now()
	flushed := make(chan error, 1)
	go func() {
		flushed <- p.WaitFor(timeout, func(r *hostrun.Result) bool { return r.Count("flush ") == len(w.Chunks) })
	}()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-flushed:
			if err != nil {
				return false, fmt.Errorf("waiting for the host to flush every chunk: %w; host stderr:\n%s", err, tail(p.Snapshot().Stderr, 20))
			}
			progress("every chunk flushed after %s", time.Since(start).Round(100*time.Millisecond))
		case <-delivered:
			progress("every event in the sink after %s", time.Since(start).Round(100*time.Millisecond))
			return false, nil
		case <-tick.C:
			objects, _, records, _, _ := s.totals()
			progress("%d of %d chunks flushed, %d of %d events in the sink in %d objects",
				p.Snapshot().Count("flush "), len(w.Chunks), records, len(w.Events), objects)
		case <-deadline.C:
			_, _, records, _, _ := s.totals()
			progress("%d of %d events in the sink after %s (-run-timeout): stopping the host, which delivers what it can at exit",
				records, len(w.Events), timeout)
			return true, nil
		}
	}
}

func writeConfig(path string, output [][2]string) error {
	var b strings.Builder
	b.WriteString("[SERVICE]\n    Grace 30\n    Log_Level info\n\n[OUTPUT]\n")
	for _, kv := range output {
		fmt.Fprintf(&b, "    %s %s\n", kv[0], kv[1])
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// loadAverage is the 1-minute load average: other work on the machine shows in every figure.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
