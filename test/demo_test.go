package test

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// TestDemo: make demo's command delivers the sample events to both customers and ends with the delivery
// ledger, which lists the objects the buckets hold (it once read the ledger from a wrong folder and printed
// "0 objects").
func TestDemo(t *testing.T) {
	cmd := exec.Command("go", "run", "./test/cmd/demo", "-host", host.Bin, "-plugin", host.Plugin)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	t.Logf("make demo:\n%s", tail(string(out), 30))
	if err != nil {
		t.Fatalf("the demo failed: %v", err)
	}
	m := regexp.MustCompile(`(?m)^==> The delivery ledger.*\n(?:.*\n)*?([0-9]+) objects$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatal("the demo does not end with the delivery ledger")
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Error("the demo's ledger lists no object")
	}
}
