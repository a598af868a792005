# hms-bus operator. `make help` lists the targets.
# Everything this Makefile needs besides Go, kubectl and gcc is built into
# bin/ at pinned versions (bin/ is git-ignored and reused between runs).

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

CONTROLLER_GEN_VERSION := v0.23.0
GOLANGCI_LINT_VERSION  := v2.15.0
# Apache Kafka for the real-broker tests (make kafka); written only here.
KAFKA_VERSION          := 4.4.0
# confluent-kafka (librdkafka for Python) for the interop tests (make pyclients).
CONFLUENT_KAFKA_VERSION := 2.16.1
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# envtest and the demo find kube-apiserver and etcd here.
export KUBEBUILDER_ASSETS := $(BIN)

GO_TEST_FLAGS ?= -count=1 -timeout 25m

# The broker-facing packages: `make test` runs them a second time with
# HMSBUS_TEST_BROKER=kafka (test/interop and test/identity run on Kafka only,
# so only there: they need its client-certificate and OAUTHBEARER listeners).
# One package at a time: each starts its own Kafka JVM, most beside a
# kube-apiserver and etcd, and two such stacks at once on a 2-core machine
# stretch timeouts instead of saving time.
KAFKA_TIER_PKGS := ./test/harness/brokers/... ./internal/kafka/... ./pkg/bus/... ./cmd/hmsbus/... \
	./controllers/... ./test/interop/... ./test/identity/... ./test/e2e/...
KAFKA_TIER_P    ?= 1
BROKER_REPORT   := $(BIN)/.broker-under-test

# The broker `make demo` runs: embedded (default, fast) or kafka.
BROKER ?= embedded

.DEFAULT_GOAL := help

##@ Main

.PHONY: demo
demo: controlplane build $(if $(filter kafka,$(BROKER)),kafka) ## Run the fee-update story on a local control plane and the embedded broker (BROKER=kafka: Apache Kafka; DEMO_EXIT=1 to exit at the end).
	go build -o $(BIN)/hmsbus-demo ./hack/demo
	$(BIN)/hmsbus-demo --bin-dir $(BIN) --state-dir $(CURDIR)/.demo --broker $(BROKER)

.PHONY: test
test: controlplane build kafka pyclients ## Run every test tier (unit, integration, e2e) on the embedded broker, then the broker-facing ones on Apache Kafka.
	@echo "== make test: every package, embedded broker =="
	go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v -e '/test/interop$$' -e '/test/identity$$' -e '/test/fault$$')
	@echo "== make test: broker-facing packages on Apache Kafka $(KAFKA_VERSION) (HMSBUS_TEST_BROKER=kafka) =="
	@rm -f $(BROKER_REPORT)
	HMSBUS_TEST_BROKER=kafka HMSBUS_TEST_BROKER_REPORT=$(BROKER_REPORT) \
		go test $(GO_TEST_FLAGS) -p $(KAFKA_TIER_P) $(KAFKA_TIER_PKGS)
	@echo "== make test: each fuzz target for $(FUZZTIME_TEST) (make fuzz runs them longer) =="
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_TEST)
	@echo "== make test: fault suite (test/fault; faults injected mid-batch), embedded broker then Apache Kafka =="
	go test -count=1 -timeout 40m ./test/fault/
	HMSBUS_TEST_BROKER=kafka HMSBUS_TEST_BROKER_REPORT=$(BROKER_REPORT) go test -count=1 -timeout 40m ./test/fault/
	@sort $(BROKER_REPORT)

##@ Development

.PHONY: build
build: ## Build the operator (bin/manager), the CLI (bin/hmsbus, bin/kubectl-bus) and the embedded dev broker (bin/hmsbus-broker).
	go build -o $(BIN)/manager .
	go build -o $(BIN)/hmsbus ./cmd/hmsbus
	ln -sf hmsbus $(BIN)/kubectl-bus
	go build -o $(BIN)/hmsbus-broker ./hack/broker

.PHONY: controlplane
controlplane: ## Build kube-apiserver and etcd from Go modules into bin/ (first time about 8 minutes).
	hack/build-controlplane.sh

.PHONY: kafka
kafka: ## Fetch Apache Kafka (KAFKA_VERSION) through Maven into bin/kafka/ for the real-broker tests.
	hack/kafka/fetch.sh $(KAFKA_VERSION)

PYCLIENTS := $(BIN)/pyclients

.PHONY: pyclients
pyclients: ## Install confluent-kafka (CONFLUENT_KAFKA_VERSION, librdkafka for Python) from PyPI into bin/pyclients for the interop tests.
	@if [ -f $(PYCLIENTS)/.stamp-$(CONFLUENT_KAFKA_VERSION) ]; then \
		echo "pyclients: confluent-kafka $(CONFLUENT_KAFKA_VERSION) already in $(PYCLIENTS)"; \
	else \
		echo "pyclients: installing confluent-kafka $(CONFLUENT_KAFKA_VERSION) from PyPI into $(PYCLIENTS)"; \
		rm -rf $(PYCLIENTS) && python3 -m venv $(PYCLIENTS) && \
		$(PYCLIENTS)/bin/pip install --quiet --disable-pip-version-check confluent-kafka==$(CONFLUENT_KAFKA_VERSION) && \
		$(PYCLIENTS)/bin/python -c 'import confluent_kafka as c; print("pyclients: confluent-kafka", c.version()[0], "with librdkafka", c.libversion()[0])' && \
		touch $(PYCLIENTS)/.stamp-$(CONFLUENT_KAFKA_VERSION); \
	fi

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Regenerate deepcopy code, CRDs and the operator's RBAC role.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=hmsbus-operator paths=./controllers/... output:rbac:artifacts:config=config/rbac

GENERATED = api/v1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml

.PHONY: verify
verify: $(CONTROLLER_GEN) $(GOLANGCI_LINT) ## fmt, go.mod tidy, vet, lint, and fail if generated files are stale.
	@before=$$(find $(GENERATED) -type f | sort | xargs sha256sum); \
	$(MAKE) --no-print-directory generate >/dev/null; \
	after=$$(find $(GENERATED) -type f | sort | xargs sha256sum); \
	if [ "$$before" != "$$after" ]; then echo "generated files were stale: 'make generate' updated them, review and commit:"; \
		diff <(echo "$$before") <(echo "$$after") | grep '^>' | awk '{print "  " $$3}'; exit 1; fi
	@out=$$(gofmt -l $$(git ls-files '*.go') ); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	go mod tidy -diff
	go vet ./...
	$(GOLANGCI_LINT) run ./...
	@echo "verify: ok"

# BENCH_N objects of each kind for BenchmarkScale (make bench BENCH_N=2000 for
# a quick run); its figures go to BENCH_OUT as JSON, its report, logs and
# profiles beside it.
BENCH_N   ?= 10000
BENCH_OUT ?= $(BIN)/bench/results.json

.PHONY: bench
bench: controlplane build ## Run benchmarks: the floor-vs-operator scale run (BENCH_N, default 10000), then the others. Not part of make test.
	BENCH_N=$(BENCH_N) BENCH_OUT=$(BENCH_OUT) BENCH_MANAGER=$(BIN)/manager \
		go test -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 4h ./test/bench/
	go test -run '^$$' -bench . -skip '^BenchmarkScale$$' -benchmem -timeout 30m ./...

# Fuzz targets (package:FuzzName) that `make fuzz` runs one after another.
# Their seed corpora (f.Add and testdata/fuzz/) also run in every `go test`.
FUZZTIME ?= 60s
# How long make test fuzzes each target, beyond the seed corpora every go test runs.
FUZZTIME_TEST ?= 3s
FUZZ_TARGETS := \
	./internal/plan:FuzzPlanTopic ./internal/plan:FuzzDiffACLs ./internal/plan:FuzzDesiredACLs \
	./pkg/bus:FuzzEventRecordRoundTrip ./pkg/bus:FuzzEventFromRecord ./pkg/bus:FuzzCredentialsFromSecretData \
	./pkg/bus:FuzzValidate ./pkg/bus:FuzzClientConfigQuoting ./pkg/bus:FuzzParseOffset \
	./internal/governance:FuzzSpecHash ./internal/governance:FuzzEvaluate ./internal/audit:FuzzVerifyChain

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 60s), one after another; a crasher is saved under the package's testdata/fuzz/.
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz: $$name ($$pkg) for $(FUZZTIME)"; \
		go test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

.PHONY: clean
clean: ## Remove build output and demo state (keeps the control plane binaries).
	rm -rf $(BIN)/manager $(BIN)/hmsbus $(BIN)/kubectl-bus $(BIN)/hmsbus-demo .demo

##@ Tools (pinned, built into bin/)

$(CONTROLLER_GEN):
	@echo "installing controller-gen $(CONTROLLER_GEN_VERSION) into bin/"
	GOBIN=$(BIN)/.tools go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/.tools/controller-gen $@

$(GOLANGCI_LINT):
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) into bin/ (takes a few minutes the first time)"
	GOBIN=$(BIN)/.tools go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/.tools/golangci-lint $@

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
