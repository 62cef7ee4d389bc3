package plugin

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/metrics"
	"github.com/wiv/out_wivaudit/record"
	"github.com/wiv/out_wivaudit/upload"
)

// uploadBuckets are the upload latency histogram's buckets, in seconds: from a fast PutObject to one that
// the SDK retried up to its deadline (4 x Request_Timeout).
var uploadBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// metricsName is the output label: the instance's own name, "wivaudit.0", as Fluent Bit's own metrics label
// its outputs (the log prefix name is "output:wivaudit:wivaudit.0").
func metricsName(name string) string { return name[strings.LastIndexByte(name, ':')+1:] }

func newUploadSeconds(name string) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wivaudit_upload_duration_seconds",
		Help:        "How long upload attempts took (PutObject, with the role's credentials and the SDK's retries), whatever their outcome.",
		ConstLabels: prometheus.Labels{"output": metricsName(name)}, Buckets: uploadBuckets})
}

// joinMetrics puts the instance on the listener of Metrics_Listen.
func (in *Instance) joinMetrics(name string) error {
	if in.cfg.MetricsListen == "" {
		return nil
	}
	m, err := metrics.Join(in.cfg.MetricsListen, metrics.Output{Name: metricsName(name), Collector: newCollector(in, name),
		Destinations: func() (list []metrics.Destination) {
			in.scraped(func() { list = in.destinations() }, "/destinations answered without them")
			return list
		},
		Ready: func() (why string) {
			why = "its readiness could not be told"
			in.scraped(func() { why = in.ready() }, "/healthz answered not ready")
			return why
		},
		File: func() (f *metrics.DestinationsFile) {
			in.scraped(func() { f, _ = in.dests.fileStatus() }, "the request got no destinations file")
			return f
		}})
	in.member = m
	return err
}

// ready says why the instance does not take records, or "" when it does.
func (in *Instance) ready() string {
	used, limit := in.store.Usage()
	switch {
	case in.closing.Load():
		return "shutting down"
	case !in.store.Present():
		return fmt.Sprintf("Store_Dir %s was removed; the next flush creates it again", in.cfg.StoreDir)
	case limit > 0 && used*100 >= limit*95: // as it stands: a seal or an upload may have freed room since the last flush
		return fmt.Sprintf("Store_Dir holds %d of %d bytes (Store_Dir_Limit_Size), over 95%%: flushes are about to be refused until uploads free space", used, limit)
	}
	return ""
}

// scraped runs f for the metrics listener, which runs it in a goroutine of its own, and logs a panic in it
// with what the request got instead.
func (in *Instance) scraped(f func(), instead string) {
	if p := in.contain(metricsLoop, f); p != nil {
		in.logPanic(p, instead)
	}
}

// collector reads the instance's counters and state when Prometheus scrapes: nothing is counted twice.
type collector struct {
	in     *Instance
	perOrg bool

	accepted, rejected, deadLettered, discarded, delivered          *prometheus.Desc
	uploads, uploadErrors, quarantined, corrupt, lost, panics       *prometheus.Desc
	assumed, renewed, reassumed, digests                            *prometheus.Desc
	storeUsed, storeLimit, batches, records, bytes, oldest, byState *prometheus.Desc
	reloads, reloadFailing                                          *prometheus.Desc
}

func newCollector(in *Instance, name string) *collector {
	output := prometheus.Labels{"output": metricsName(name)}
	var org []string // the org label, on the per-organisation series with Metrics_Per_Org
	if in.cfg.MetricsPerOrg {
		org = []string{"org"}
	}
	desc := func(metric, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("wivaudit_"+metric, help, labels, output)
	}
	return &collector{in: in, perOrg: in.cfg.MetricsPerOrg,
		accepted:      desc("records_accepted_total", "Records buffered durably and acknowledged."),
		rejected:      desc("records_rejected_total", "Records rejected into the dead-letter file, by reason class.", "reason"),
		deadLettered:  desc("records_dead_lettered_total", "Rejected records kept in the dead-letter file."),
		discarded:     desc("records_discarded_total", "Rejected records discarded because the dead-letter file was full (Dead_Letter_Limit_Size)."),
		delivered:     desc("records_delivered_total", "Records delivered to S3.", org...),
		uploads:       desc("uploads_total", "Upload attempts by outcome: delivered, retriable, key_conflict (412: the key existed), credentials, refused.", append(org, "outcome")...),
		uploadErrors:  desc("upload_errors_total", "Failed upload attempts by error class (the problem the log line and /destinations name).", append(org, "class")...),
		quarantined:   desc("batches_quarantined_total", "Batches moved to quarantine: refused for Quarantine_After, or altered in Store_Dir (batches_corrupt_total)."),
		corrupt:       desc("batches_corrupt_total", "Batches whose object no longer matched its manifest (SHA-256, size, MD5) before an upload: quarantined without being sent."),
		panics:        desc("panics_total", "Panics contained in the plugin's background work, by loop; each was logged with its stack.", "loop"),
		lost:          desc("batches_lost_total", "Batches whose files were deleted from Store_Dir before their upload."),
		assumed:       desc("role_assumptions_total", "AssumeRole calls, by result.", "result"),
		renewed:       desc("role_renewals_total", "AssumeRole calls that renewed a session's credentials (before they expired, or after they were refused)."),
		reassumed:     desc("role_reassumptions_total", "Role sessions dropped because S3 refused their credentials."),
		digests:       desc("digests_total", "Signed digests by outcome: written (S3 stored it, or had it already), failed (not made, or an upload attempt failed).", "outcome"),
		storeUsed:     desc("store_used_bytes", "Bytes the log and the sealed batches take in Store_Dir."),
		storeLimit:    desc("store_limit_bytes", "Store_Dir_Limit_Size (0: no limit)."),
		batches:       desc("batches_waiting", "Batches not yet delivered: sealed and waiting for upload, or still filling.", org...),
		records:       desc("records_waiting", "Records not yet delivered.", org...),
		bytes:         desc("bytes_waiting", "JSON bytes of the records not yet delivered.", org...),
		oldest:        desc("oldest_undelivered_age_seconds", "Age of the oldest record not yet delivered (0: none).", org...),
		byState:       desc("destinations", "Organisations by state: ok, retrying, refused, held, quarantined.", "state"),
		reloads:       desc("destinations_reloads_total", "Changes of Destinations_File found by its reloads, by result: ok (a new version applied, or the version in use put back), failed (each version or reason it could not be used, once).", "result"),
		reloadFailing: desc("destinations_reload_failing", "1 while Destinations_File cannot be used (invalid, unreadable, or its organisations not remembered in Store_Dir): the version loaded last is in use."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.accepted, c.rejected, c.deadLettered, c.discarded, c.delivered, c.uploads,
		c.uploadErrors, c.quarantined, c.corrupt, c.lost, c.panics, c.assumed, c.renewed, c.reassumed, c.digests, c.storeUsed, c.storeLimit, c.batches,
		c.records, c.bytes, c.oldest, c.byState, c.reloads, c.reloadFailing} {
		ch <- d
	}
	c.in.uploadSeconds.Describe(ch)
}

var states = []metrics.State{metrics.OK, metrics.Retrying, metrics.Refused, metrics.Held, metrics.Quarantined}

// Collect sends the metrics. Prometheus would turn a panic here into a scrape error that says nothing in the
// log; it is logged and counted instead, and the scrape gets what was sent before it.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.in.scraped(func() { c.collect(ch) }, "the scrape got what was collected before it")
}

func (c *collector) collect(ch chan<- prometheus.Metric) {
	in := c.in
	count := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	count(c.accepted, in.accepted.Load())
	for r := record.Malformed; r < record.Reasons; r++ {
		count(c.rejected, in.rejects[r].Load(), r.String())
	}
	count(c.deadLettered, in.deadLettered.Load())
	count(c.discarded, in.discarded.Load())
	count(c.quarantined, in.quarantined.Load())
	count(c.corrupt, in.corrupt.Load())
	count(c.lost, in.lost.Load())
	for l := range loops {
		count(c.panics, in.panics[l].Load(), loopLabels[l])
	}
	used, limit := in.store.Usage()
	gauge(c.storeUsed, float64(used))
	gauge(c.storeLimit, float64(limit))

	list := in.destinations()
	n := map[metrics.State]int{}
	for _, d := range list {
		n[d.State]++
	}
	for _, s := range states {
		gauge(c.byState, float64(n[s]), string(s))
	}
	if c.perOrg {
		c.collectPerOrg(list, count, gauge)
	} else {
		c.collectTotals(list, count, gauge)
	}
	// Read after the uploads, as the histogram: an upload is counted after its AssumeRole call and its
	// latency, so a scrape never shows more uploads than either.
	count(c.assumed, in.roles.Assumed.Load(), "ok")
	count(c.assumed, in.roles.Failed.Load(), "failed")
	count(c.renewed, in.roles.Renewed.Load())
	count(c.reassumed, in.reassumed.Load())
	var written, failed int64 // 0 without Digest_Signing_Key: every series from the start
	if in.digests != nil {
		written, failed = in.digests.written.Load(), in.digests.failed.Load()
	}
	count(c.digests, written, "written")
	count(c.digests, failed, "failed")
	if file, reloads := in.dests.fileStatus(); file != nil {
		for r, v := range reloads {
			count(c.reloads, v, reloadResults[r])
		}
		failing := 0.0
		if file.Failing {
			failing = 1
		}
		gauge(c.reloadFailing, failing)
	}
	in.uploadSeconds.Collect(ch)
}

// collectTotals gives the output's totals, without an org label.
func (c *collector) collectTotals(list []metrics.Destination, count func(*prometheus.Desc, int64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	in := c.in
	count(c.delivered, in.delivered.Load())
	count(c.uploads, in.objects.Load(), outcomeNames[delivered])
	for class := range upload.Classes {
		count(c.uploads, in.failed[class].Load(), outcomeNames[class])
	}
	in.health.mu.Lock()
	for _, p := range upload.Problems {
		count(c.uploadErrors, in.health.problems[p], string(p))
	}
	in.health.mu.Unlock()
	var batches int
	var records, bytes int64
	var oldest float64
	for _, d := range list {
		batches, records, bytes = batches+d.BatchesWaiting, records+d.RecordsWaiting, bytes+d.BytesWaiting
		oldest = max(oldest, d.OldestAgeSeconds)
	}
	gauge(c.batches, float64(batches))
	gauge(c.records, float64(records))
	gauge(c.bytes, float64(bytes))
	gauge(c.oldest, oldest)
}

// collectPerOrg gives the per-organisation series with their org label (Metrics_Per_Org). Each organisation
// known has its records delivered and its uploads by outcome from the start; its upload errors only by the
// classes that occurred, as sixteen series per organisation would cost more than they tell.
func (c *collector) collectPerOrg(list []metrics.Destination, count func(*prometheus.Desc, int64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	h := c.in.health
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range list {
		gauge(c.batches, float64(d.BatchesWaiting), d.OrgID)
		gauge(c.records, float64(d.RecordsWaiting), d.OrgID)
		gauge(c.bytes, float64(d.BytesWaiting), d.OrgID)
		gauge(c.oldest, d.OldestAgeSeconds, d.OrgID)
		var o orgHealth
		if seen := h.orgs[conf.OrgKey(d.OrgID)]; seen != nil {
			o = *seen
		}
		count(c.delivered, o.delivered, d.OrgID)
		for outcome, v := range o.uploads {
			count(c.uploads, v, d.OrgID, outcomeNames[outcome])
		}
		for p, v := range o.problems {
			count(c.uploadErrors, v, d.OrgID, string(p))
		}
	}
}
