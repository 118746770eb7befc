# Chime: `make run` starts a single node; `make test` runs the test suite.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin/chime
TEST_FLAGS ?= -race -count=1 -timeout 25m

.PHONY: help build run cluster test unit e2e chaos chaos-compose bench lint clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/chime (static, tz database embedded)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/chime

run: build ## start a single node on http://127.0.0.1:8700 with data in ./chime-data
	$(BIN) agent --data-dir ./chime-data --http-addr 127.0.0.1:8700 --raft-addr 127.0.0.1:8701 --gossip-addr 127.0.0.1:8702 --allow-private-targets

cluster: build ## start a local 3-node cluster (HTTP on 8710, 8720, 8730); Ctrl-C stops it
	@scripts/local-cluster.sh $(BIN)

test: lint ## the whole suite: unit, in-process cluster and real-process e2e tests, with -race
	$(GO) test $(TEST_FLAGS) ./...

unit: ## the fast tests only (no multi-process e2e)
	$(GO) test $(TEST_FLAGS) -short ./...

e2e: ## only the real-process tests in e2e/
	$(GO) test $(TEST_FLAGS) ./e2e/...

# Every fault scenario (docs/reliability.md), including those too long or too special for make test; prints the
# FAULT figure lines of each. CHIME_FAULT_RUN sets the leader-kill run (default 3m).
chaos: ## the whole fault suite: real processes and the compose cluster, with its figures (about 20 minutes)
	set -o pipefail; CHIME_CHAOS=1 CHIME_CHAOS_COMPOSE=1 $(GO) test -count=1 -timeout 60m -v -run 'TestFault' ./e2e | grep -E 'FAULT|^\s+\S+_test.go:[0-9]+: [^+]|^(ok|FAIL|---|panic)'

# The same fault suite on docker-compose.yml's containers (make image, then its own compose project chime-e2e on
# 127.0.0.1:20000-32000 and 172.28.72.0/24, CHIME_E2E_NET overrides; never make up's); removed when it ends.
chaos-compose: ## the fault suite on the compose cluster: docker kill and network disconnect of the leader (about 3 minutes)
	set -o pipefail; CHIME_CHAOS_COMPOSE=1 $(GO) test -count=1 -timeout 20m -v -run 'TestFaultCompose' ./e2e | grep -E 'FAULT|^\s+\S+_test.go:[0-9]+: [^+]|^(ok|FAIL|---|panic)'

bench: ## pipeline, schedule and state benchmarks (figures for docs/benchmarks.md; no -race)
	set -o pipefail; CHIME_BENCH=1 $(GO) test -count=1 -timeout 30m -v -run 'TestBenchPipeline|TestBenchFanout' ./e2e | grep -E 'BENCH|_test.go|^(ok|FAIL|---)'
	$(GO) test -count=1 -run '^$$' -bench . -benchmem ./scheduler
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 20m ./fsm

lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean: ## remove build output and local data dirs
	rm -rf bin chime-data cluster-data

# A cluster in Docker containers (docker-compose.yml; docs/operations.md, "Docker and compose"). Uses the compose
# plugin (docker compose) or the standalone docker-compose, whichever is installed; COMPOSE=... overrides.
.PHONY: image up down
IMAGE ?= chime
COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo docker compose; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
COMPOSE_PROJECT ?= chime
CHIME_ENV := deploy/chime.env
UP_TIMEOUT ?= 60
UP_PORTS := $(foreach n,1 2 3$(if $(FIVE), 4 5),$(or $(CHIME_PORT$(n)),871$(n)))
compose_cmd = $(or $(COMPOSE),$(error neither "docker compose" nor docker-compose is installed)) -p $(COMPOSE_PROJECT)
compose = $(compose_cmd) -f docker-compose.yml$(if $(FIVE), -f docker-compose.five.yml)

image: build ## container image chime:latest: bin/chime on scratch (nothing is pulled)
	mkdir -p bin/image/data && chmod 0700 bin/image/data
	cp /etc/ssl/certs/ca-certificates.crt bin/image/ca-certificates.crt
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):latest -t $(IMAGE):$(VERSION) .

# Made once, never overwritten: the root token only takes effect when the cluster is created.
$(CHIME_ENV):
	@umask 077; { echo "# Written by make up on $$(date -u +%FT%TZ); see chime.env.example. Secret: git-ignored."; \
	  echo "CHIME_CLUSTER_KEY=$$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"; \
	  echo "CHIME_ROOT_TOKEN=chime_$$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"; } > $@.tmp
	@mv $@.tmp $@ && echo "wrote $@ (cluster key and root token)"

up: image $(CHIME_ENV) ## cluster in Docker, API on 127.0.0.1:8711-8713 (FIVE=1: five nodes, to 8715); waits until ready
	@grep -q '^CHIME_CLUSTER_KEY=.' $(CHIME_ENV) || { echo "$(CHIME_ENV): set CHIME_CLUSTER_KEY (or delete the file to get a new one)"; exit 1; }
	@if [ -z "$(FIVE)" ] && docker volume inspect $(COMPOSE_PROJECT)_chime4-data >/dev/null 2>&1; then \
	  echo "this cluster has five nodes (volume $(COMPOSE_PROJECT)_chime4-data): make up FIVE=1, or make down V=1 to start over"; exit 1; fi
	$(compose) up -d
	@echo "waiting up to $(UP_TIMEOUT)s for /v1/ready on $(UP_PORTS)..."
	@deploy/wait-ready.sh $(UP_TIMEOUT) $(UP_PORTS) || { $(compose) ps; $(compose) logs --no-color --tail 30; exit 1; }
	@echo "cluster ready:"; for p in $(UP_PORTS); do echo "  http://127.0.0.1:$$p"; done
	@tok=$$(sed -n 's/^CHIME_ROOT_TOKEN=//p' $(CHIME_ENV)); \
	if [ -n "$$tok" ]; then echo "root token (valid if this env file created the cluster): $$tok"; \
	else echo "root token: generated by the first leader, see: $(compose) logs | grep 'root API token'"; fi
	@echo "try: curl -s -H \"Authorization: Bearer \$$TOKEN\" 127.0.0.1:8711/v1/cluster/status"

# Always names both files, so chime4 and chime5 go too; the env file is not needed to stop containers.
down: ## stop and remove the Docker cluster, keeping its data volumes (V=1 deletes them too)
	CHIME_ENV_FILE=deploy/chime.env.example $(compose_cmd) -f docker-compose.yml -f docker-compose.five.yml down --remove-orphans $(if $(V),--volumes)
