# hms-bus operator. `make help` lists the targets.
# Everything this Makefile needs besides Go, kubectl and gcc is built into
# bin/ at pinned versions (bin/ is git-ignored and reused between runs).

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

CONTROLLER_GEN_VERSION := v0.23.0
GOLANGCI_LINT_VERSION  := v2.15.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# envtest and the demo find kube-apiserver and etcd here.
export KUBEBUILDER_ASSETS := $(BIN)

GO_TEST_FLAGS ?= -count=1 -timeout 25m

.DEFAULT_GOAL := help

##@ Main

.PHONY: demo
demo: controlplane build ## Run the fee-update story on a local control plane and embedded broker (DEMO_EXIT=1 to exit at the end).
	go build -o $(BIN)/hmsbus-demo ./hack/demo
	$(BIN)/hmsbus-demo --bin-dir $(BIN) --state-dir $(CURDIR)/.demo

.PHONY: test
test: controlplane build ## Run every test tier: unit, integration (real apiserver + broker) and e2e (built binaries + kubectl).
	go test $(GO_TEST_FLAGS) ./...

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

.PHONY: bench
bench: controlplane ## Run benchmarks (speed and memory figures; not part of make test).
	go test -run '^$$' -bench . -benchmem -timeout 30m ./...

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
