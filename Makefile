# out_wivaudit: Fluent Bit output plugin (Go, c-shared) and its test host.
GO    ?= go
CC    ?= cc
BUILD := build
SO    := $(BUILD)/out_wivaudit.so
HOST  := $(BUILD)/flbhost
NULLOUT := $(BUILD)/nullout.so
CMD   := $(BUILD)/wivaudit
VERSITYGW := $(BUILD)/bin/versitygw
PKGS_PURE := ./conf/... ./flbconf/... ./keycheck/... ./record/... ./plugin/... ./upload/... ./lru/... ./buffer/... ./wal/... ./ledger/... ./vfs/... ./digest/... ./cmd/... ./metrics/...
GO_SOURCES := $(shell find . -name '*.go' -not -path './test/*' -not -name '*_test.go') go.mod go.sum

.PHONY: all build host demo trial test unit faults fuzz integration lint bench clean versitygw

all: build

## build: the plugin, build/out_wivaudit.so, and the wivaudit command, build/wivaudit
build: $(SO) $(CMD)

$(SO): $(GO_SOURCES)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -trimpath -o $@ .

$(CMD): $(GO_SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./cmd/wivaudit

## host: the Fluent Bit stand-in used by the demo and the integration tests
host: $(HOST)

$(HOST): test/host/flbhost.c test/host/flb_proxy.h
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -Wall -Wextra -Werror -o $@ $< -ldl -lpthread

## demo: local moto, the sample events through the host and the plugin, then what was delivered
## (the first, cold run downloads the Go modules and compiles the cgo plugin: about 2 minutes, then seconds)
demo:
	@echo "==> Building the plugin ($(SO)) and the Fluent Bit test host ($(HOST))"
	@echo "    the first time, Go downloads the modules and compiles the cgo plugin: about 2 minutes"
	@$(MAKE) --no-print-directory build host
	@echo "==> Compiling and starting the demo (the first time, the AWS SDK takes a minute more to compile)"
	$(GO) run ./test/cmd/demo -host $(HOST) -plugin $(SO)

## trial: a local trial that stays up: moto with IAM checks on, two customers set up by the customer kit itself
## (CloudFormation and Terraform), the plugin in Fluent Bit (FLUENT_BIT=/path/to/fluent-bit) or the test host,
## the sample events delivered and their digests signed; it prints what to try next and runs until Ctrl-C,
## leaving build/trial/. TRIALFLAGS=-once runs each printed command (verify must pass), then stops.
## (Built, then run: go run would end with status 1 on Ctrl-C whatever the trial's own exit.)
trial: build host
	@echo "==> Compiling the trial (the first time, the AWS SDK takes a minute more to compile)"
	$(GO) build -o $(BUILD)/bin/trial ./test/cmd/trial
	$(BUILD)/bin/trial -host $(HOST) -plugin $(SO) -cmd $(CMD) -dir $(BUILD)/trial $(TRIALFLAGS)

## test: formatting, vet, unit tests (with -race), a short fuzz run and the integration tests through the real .so;
## a line at least every 30 s (test/heartbeat.sh says when a compile or a test is still at work)
test:
	@bash test/heartbeat.sh $(MAKE) --no-print-directory lint unit fuzz integration

# filtered runs the command $(1) with its output (stdout and stderr) through the filter $(2), and exits with the
# command's status, not the filter's (POSIX sh has no pipefail).
filtered = rc=$$(mktemp) && { { $(1); echo $$? >$$rc; } 2>&1 | $(2); s=$$(cat $$rc); rm -f $$rc; exit $$s; }

# The fuzzer reports every 3 s; one line in 10 (about every 30 s) is progress enough.
FUZZFILTER := awk '/^fuzz: elapsed: / { if (++n % 10) next } { print; fflush() }'

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The unit tests include a sample of the fault matrix (plugin/faults_test.go): for each fault kind, the first and
# last 10 file operations N of its workload and every 40th in between (shifted by one per kind, so that the kinds
# together try other N): about 560 cases, under a minute with -race on 2 cores. Its summary line (T, cases,
# failures, duplicates) is printed after the tests.
unit:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/faults.txt
	WIVAUDIT_FAULTS_REPORT=$(abspath $(BUILD))/faults.txt $(GO) test -race -count=1 $(PKGS_PURE)
	@cat $(BUILD)/faults.txt 2>/dev/null || true

## faults: the fault matrix at every file operation N of its workload, for every fault kind (some 12,400 cases,
## without -race: about 2 minutes); one case reruns alone with WIVAUDIT_FAULTS=<N> go test ./plugin/ -run 'TestFaultMatrix/^<kind>$/^N=<N>$' -v
faults:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/faults.txt
	WIVAUDIT_FAULTS=all WIVAUDIT_FAULTS_REPORT=$(abspath $(BUILD))/faults.txt $(GO) test -count=1 -timeout 60m -run '^TestFaultMatrix$$' ./plugin/
	@cat $(BUILD)/faults.txt

## fuzz: the decoder, record-to-JSON, event-reference and configuration-file fuzz targets, FUZZTIME each (make fuzz
## FUZZTIME=30m for a long run); their corpus is in record/testdata/fuzz and replays with every go test. The default is a count of
## runs, about 10 s each on 2 cores: Go 1.26's fuzzer can fail a run whose duration ends while a worker is busy
## ("context deadline exceeded" with no failing input, golang/go#75804, fixed in Go 1.27), which a count avoids.
FUZZTIME ?= 200000x
fuzz:
	@for t in record:FuzzDecode record:FuzzRecordJSON record:FuzzRefOf flbconf:FuzzOutputs; do \
		pkg=$${t%%:*}; target=$${t#*:}; \
		echo "==> $$target, -fuzztime $(FUZZTIME)"; \
		( $(call filtered,$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) ./$$pkg,$(FUZZFILTER)) ) || exit 1; \
	done

## integration: the tests in test/ through the real .so; a line as each test starts and ends, the whole output of
## those that fail (test/progress.awk). -p 1: go test streams a package's output only when it runs one package at
## a time; with several at once it holds each package's output until that package ends
integration: build host versitygw
	@echo "==> Integration tests (several minutes; each test's name as it starts, and its time as it ends)"
	@$(call filtered,WIVAUDIT_PLUGIN=$(abspath $(SO)) WIVAUDIT_HOST=$(abspath $(HOST)) WIVAUDIT_CMD=$(abspath $(CMD)) WIVAUDIT_VERSITYGW=$(abspath $(VERSITYGW)) \
		$(GO) test -v -p 1 -count=1 -timeout 20m ./test/...,awk -f test/progress.awk)

## versitygw: the S3 server that checks what moto does not (bucket owner, checksums), pinned in tools/go.mod;
## the first build takes about 100 s
versitygw: $(VERSITYGW)

$(VERSITYGW): tools/go.mod tools/go.sum
	@echo "==> Building versitygw from tools/go.mod (the first time: about 100 s)"
	GOBIN=$(abspath $(BUILD)/bin) $(GO) -C tools install github.com/versity/versitygw/cmd/versitygw

## bench: one table, every figure from the same run (about 3 minutes): the Go benchmarks of decode, append,
## flush and seal, then the whole plugin through the host on the generated reference workload (100 orgs x 3) and
## on 10,000 orgs x 3, each next to the host alone and its floors (gzip alone; write + fdatasync per chunk).
## BENCHFLAGS passes options to test/cmd/bench, e.g. BENCHFLAGS="-orgs 100 -benchtime 200ms".
bench: build host $(NULLOUT)
	$(GO) run ./test/cmd/bench -host $(HOST) -plugin $(SO) -null $(NULLOUT) -pkgs "$(PKGS_PURE)" $(BENCHFLAGS)

# The do-nothing output that measures what the host itself costs in make bench.
$(NULLOUT): test/host/nullout.c test/host/flb_proxy.h
	@mkdir -p $(BUILD)
	$(CC) -O2 -shared -fPIC -Wall -Wextra -Werror -o $@ $<

clean:
	rm -rf $(BUILD)
