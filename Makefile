# omni-orchestrator — `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

GO ?= go
# Where the pinned platform tools are cached (outside the checkout, reused by every run).
export OMNI_TOOLS_CACHE ?= $(HOME)/.cache/omni-orchestrator/tools
TEST_FLAGS ?= -count=1 -timeout 45m

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Build the pinned local-platform tools (Kubernetes, etcd, kwok, Knative adapter) into $(OMNI_TOOLS_CACHE).
	@hack/tools.sh >/dev/null

.PHONY: run
run: tools ## Run everything locally: two simulated clusters, all functions on one port, SQLite in .data/.
	$(GO) run ./cmd/omni run

.PHONY: test
test: tools ## Vet and run every test (real local clusters; Cassandra only with OMNI_TEST_CASSANDRA=host:port).
	$(GO) vet ./...
	@# The Cassandra contract suite runs only against a real Cassandra; say so either way.
	$(GO) test -count=1 -v -run '^TestContract$$' ./shared/cassandra/ | grep -E '^(--- |ok|FAIL|\s+cassandra_test)'
	$(GO) test $(TEST_FLAGS) ./...

.PHONY: bench
bench: tools ## Run the benchmarks; each figure is printed next to a baseline measured in the same run.
	$(GO) test -run '^$$' -bench . -count=1 -timeout 30m ./test/bench/...

.PHONY: build
build: ## Build the function binaries and the omni operator binary into bin/.
	$(GO) build -o bin/ ./functions/... ./cmd/...
