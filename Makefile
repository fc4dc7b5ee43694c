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
run: tools ## Run everything locally: two simulated clusters, all functions on one port, SQLite in .data/ (STORE=cassandra: a local Cassandra; REPLICAS=N: each function as N processes on a local Cassandra).
	$(if $(filter cassandra,$(STORE))$(REPLICAS),@hack/cassandra.sh >/dev/null)
	$(GO) run ./cmd/omni run $(if $(filter cassandra,$(STORE)),-cassandra) $(if $(REPLICAS),-replicas $(REPLICAS))

.PHONY: test
test: tools ## Vet and run every test (real local clusters, a real local Cassandra; OMNI_TEST_CASSANDRA=host:port for another).
	$(GO) mod tidy -diff
	$(GO) vet ./...
	@# The pinned Cassandra (fetched once with Maven, then cached): a missing Java or Maven fails
	@# here, saying what to install. Its tests start one node per test binary that needs it.
	@hack/cassandra.sh >/dev/null
	@# Debian's chromium for the console tests (installed once when missing; without it, they
	@# skip saying why).
	@hack/chromium.sh >/dev/null || echo "make test: no chromium: the console tests will skip" >&2
	$(GO) test $(TEST_FLAGS) $$($(GO) list ./... | grep -v '/test/chaos$$')
	@# The end-to-end suite again, on a real local Cassandra (the production store).
	OMNI_E2E_STORE=cassandra $(GO) test $(TEST_FLAGS) ./test/e2e/
	@# Replicas and kills (docs/reliability.md): alone, and verbose so that its counts show.
	$(GO) test $(TEST_FLAGS) -v ./test/chaos/ 2>&1 | grep -v '^{"level"'

# How long `make fuzz` runs each fuzz target (a Go duration).
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## Fuzz every decoder reachable from the network for FUZZTIME each (default 30s; FUZZ=regexp picks targets; docs/reliability.md).
	@FUZZTIME=$(FUZZTIME) FUZZ='$(FUZZ)' GO=$(GO) hack/fuzz.sh

.PHONY: bench
bench: tools ## Run the benchmarks; each figure is printed next to a baseline measured in the same run.
	$(GO) test -run '^$$' -bench . -count=1 -timeout 30m ./test/bench/... ./shared/cassandra/

.PHONY: build
build: ## Build the function binaries and the omni operator binary into bin/.
	$(GO) build -o bin/ ./functions/... ./cmd/...

# --- Images and deployment (docs/deploy.md) ---------------------------------------------------
# ko and crane are built into the tools cache from hack/tools/ko (ko's dependencies do not fit in
# go.mod beside the newer golang.org/x modules of this module).
KO ?= $(OMNI_TOOLS_CACHE)/bin/ko
KUBECTL ?= kubectl
# Where images go, e.g. registry.example.com/omni (ko's KO_DOCKER_REPO).
export KO_DOCKER_REPO
# Base image of every function image; default in .ko.yaml (distroless static, nonroot).
export KO_DEFAULTBASEIMAGE
KO_FLAGS ?= --base-import-paths --sbom=none
# The binaries of the images: every function, the operator binary (the schema Job) and the
# dead-letter display.
IMAGE_PKGS = $(shell $(GO) list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./functions/... ./cmd/... ./hack/event-display)

.PHONY: image-tools
image-tools:
	@OMNI_TOOLS_IMAGES=1 hack/tools.sh >/dev/null

.PHONY: config
config: ## Regenerate the ConfigMaps of config/ from config/clusters/ and templates/.
	$(GO) run ./hack/genconfig

.PHONY: images
images: image-tools ## Build and push the function images (linux/amd64 + linux/arm64) to $KO_DOCKER_REPO.
	@test -n "$(KO_DOCKER_REPO)" || { echo "set KO_DOCKER_REPO, e.g. make images KO_DOCKER_REPO=registry.example.com/omni" >&2; exit 1; }
	$(KO) build $(KO_FLAGS) $(IMAGE_PKGS)

.PHONY: deploy
deploy: image-tools config ## Build, push and apply config/ to the current kubectl context (docs/deploy.md).
	@test -n "$(KO_DOCKER_REPO)" || { echo "set KO_DOCKER_REPO, e.g. make deploy KO_DOCKER_REPO=registry.example.com/omni" >&2; exit 1; }
	@# The schema first: the functions cannot open a keyspace that does not exist yet, and new
	@# code may need new migrations. A Job's pod template is immutable, so the previous run goes.
	$(KUBECTL) delete job omni-db-migrate -n omni --ignore-not-found
	$(KO) apply $(KO_FLAGS) -f config/100-namespace.yaml -f config/200-serviceaccounts.yaml -f config/210-config.yaml -f config/700-db-migrate.yaml
	$(KUBECTL) wait -n omni --for=condition=Complete --timeout=10m job/omni-db-migrate
	$(KO) apply $(KO_FLAGS) -f config/

.PHONY: sources
sources: image-tools ## Apply config/remote-source/: the event adapters of remote build clusters (docs/deploy.md).
	@test -n "$(KO_DOCKER_REPO)" || { echo "set KO_DOCKER_REPO" >&2; exit 1; }
	@# The adapter is a package of knative.dev/eventing, built from the module that pins it.
	cd hack/tools/adapter && GOFLAGS=-mod=mod KO_CONFIG_PATH=$(CURDIR)/.ko.yaml $(KO) apply $(KO_FLAGS) -f $(CURDIR)/config/remote-source/

.PHONY: undeploy
undeploy: ## Delete what deploy and sources applied, except the namespaces (your Secrets stay; so do Cassandra and remote clusters).
	$(KUBECTL) delete --ignore-not-found -f config/remote-source/
	$(KUBECTL) delete --ignore-not-found $(addprefix -f ,$(filter-out config/100-namespace.yaml,$(wildcard config/*.yaml)))
