# Chime: `make run` starts a single node; `make test` runs the test suite.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin/chime
TEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: help build run cluster test unit e2e bench lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-10s %s\n", $$1, $$2}'

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
