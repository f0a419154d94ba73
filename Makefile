# mc-broker's tasks. `make test` is what CI runs (through .ci/run).
GO      ?= go
BIN     ?= bin/mc-broker
PREFIX  ?= $(HOME)/.local
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/mc-broker/mc-broker/cmd/internal/cli.Version=$(VERSION)

.PHONY: build test install bench vet fmt-check cross

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mc-broker

# Installs what the tests need (scripts/test-env.sh: the real claude and codex
# CLIs from the npm registry, used offline to judge copies; scripts/docker-env.sh:
# a Docker engine and the FROM-scratch busybox test image), then runs every
# test with the race detector.
test: fmt-check vet cross
	./scripts/test-env.sh
	./scripts/docker-env.sh
	PATH="$(CURDIR)/.cache/clis/node_modules/.bin:$$PATH" $(GO) test -race -count=1 ./...
	$(GO) -C third_party/reference test -race -count=1 ./...

install:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(PREFIX)/bin/mc-broker ./cmd/mc-broker

# Benchmarks; method and figures are in docs/BENCHMARKS.md.
# The watch benchmarks time one change per iteration and report p50/p99, so
# they run a fixed number of iterations; the idle one takes 60 s per
# iteration. The refresh simulation (BenchmarkLogouts) runs for minutes: once.
bench:
	$(GO) test -run '^$$' -bench 'Sync|CpLoop|ProcessStart|StartupInit|VolumeSync|DockerRunCat|VolumePoll|LockMirror' -benchmem -count 5 ./bench/ | tee bench.out
	$(GO) test -run '^$$' -bench 'WatchPropagation|WatchAdoption' -benchtime 300x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'PollLoopPropagation' -benchtime 30x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'WatchIdle' -benchtime 1x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Logouts' -count 1 -timeout 30m ./bench/ | tee -a bench.out

vet:
	$(GO) vet ./...

# Builds and vets for macOS without cgo, as CI cannot run a Mac: the
# Keychain code that shells out to security must compile there. The cgo
# file (sources/keychain/attributes_darwin.go, go-keychain) builds only on
# a Mac: run `make build` there (cgo is on by default on macOS).
cross:
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) build ./...
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./...
	GOOS=darwin GOARCH=amd64 CGO_ENABLED=0 $(GO) build ./...
	GOOS=darwin GOARCH=amd64 CGO_ENABLED=0 $(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
