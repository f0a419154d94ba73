# mc-broker's tasks. `make test` is what CI runs (through .ci/run).
GO      ?= go
BIN     ?= bin/mc-broker
PREFIX  ?= $(HOME)/.local
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/mc-broker/mc-broker/cmd/internal/cli.Version=$(VERSION)

.PHONY: build test install bench vet fmt-check

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mc-broker

# Installs what the tests need (scripts/test-env.sh: the real claude and codex
# CLIs from the npm registry, used offline to judge copies; scripts/docker-env.sh:
# a Docker engine and the FROM-scratch busybox test image), then runs every
# test with the race detector.
test: fmt-check vet
	./scripts/test-env.sh
	./scripts/docker-env.sh
	PATH="$(CURDIR)/.cache/clis/node_modules/.bin:$$PATH" $(GO) test -race -count=1 ./...

install:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(PREFIX)/bin/mc-broker ./cmd/mc-broker

# Benchmarks; method and figures are in docs/BENCHMARKS.md.
# The refresh simulation (BenchmarkLogouts) runs for minutes: once, not 5 times.
bench:
	$(GO) test -run '^$$' -bench . -skip BenchmarkLogouts -benchmem -count 5 ./bench/ | tee bench.out
	$(GO) test -run '^$$' -bench BenchmarkLogouts -count 1 -timeout 30m ./bench/ | tee -a bench.out

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
