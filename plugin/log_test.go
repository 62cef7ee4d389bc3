package plugin

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRedactFindsSecretsWhereverTheyStand(t *testing.T) {
	sink := &logSink{}
	l := newLogger(sink.log, "[t] ", "681d1539-fd63-4e6e-9426-fccdfdae1862")
	l.setSecrets([]string{"corp:prod/7", "x.y@z"})
	for _, msg := range []string{
		"external id 681d1539-fd63-4e6e-9426-fccdfdae1862 refused",
		"ext=681d1539-fd63-4e6e-9426-fccdfdae1862,",
		`"externalId":"corp:prod/7"`,
		"arn:aws:iam::1:role/corp:prod/7",
		"user x.y@z.",
	} {
		l.logf(LevelInfo, "%s", msg)
	}
	l.logf(LevelInfo, "not a secret: 681d1539-fd63-4e6e-9426-fccdfdae18620 corp:prod/77")
	got := sink.joined()
	for _, s := range []string{"681d1539-fd63-4e6e-9426-fccdfdae1862 ", "corp:prod/7\"", "x.y@z."} {
		if strings.Contains(got, s) {
			t.Errorf("%q shown:\n%s", s, got)
		}
	}
	if strings.Count(got, "[redacted]") != 5 || !strings.Contains(got, "fccdfdae18620 corp:prod/77") {
		t.Errorf("redacted the wrong words:\n%s", got)
	}
}

// TestRedactionCostDoesNotGrowWithSecrets: a line is checked by looking its words up, not by searching it for
// every External ID loaded (200,000 of them here: 100 lines took 6 s that way).
func TestRedactionCostDoesNotGrowWithSecrets(t *testing.T) {
	secrets := make([]string, 200_000)
	for i := range secrets {
		secrets[i] = fmt.Sprintf("%08x-fd63-4e6e-9426-fccdfdae1862", i)
	}
	var out []string
	l := newLogger(func(_ Level, msg string) { out = append(out, msg) }, "[t] ", secrets...)
	start := time.Now()
	for i := range 100 {
		l.logf(LevelWarn, "upload of org-%d/org-audit-logs-1769602181000.json.gz (120 records) failed, attempt 3, next in 2s; the batch stays buffered: S3 PutObject to bucket-%d failed (503 SlowDown): Please reduce your request rate.", i, i)
	}
	took := time.Since(start)
	t.Logf("100 lines with %d secrets: %s", len(secrets), took)
	if took > 250*time.Millisecond {
		t.Errorf("100 lines took %s with %d secrets", took, len(secrets))
	}
	l.logf(LevelWarn, "a line with %s in it", secrets[123456])
	if last := out[len(out)-1]; strings.Contains(last, secrets[123456]) {
		t.Errorf("not redacted: %s", last)
	}
}

func TestLimiterCountsWhatItHeldBack(t *testing.T) {
	sink := &logSink{}
	l := newLogger(sink.log, "")
	t0 := time.Now()
	for i, at := range []time.Duration{0, time.Second, 2 * time.Second, 0, reportEvery + time.Second, reportEvery + 2*time.Second} {
		key := "refused\x00bucket-a"
		if i == 3 {
			key = "refused\x00bucket-b" // another destination has its own line
		}
		l.limitedf(LevelError, key, t0.Add(at), "refused %d", i)
	}
	want := "refused 0\nrefused 3\nrefused 4 (2 more like it since the last line)"
	if got := sink.joined(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
