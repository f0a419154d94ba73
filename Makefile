# mc-broker's tasks. `make test` is what CI runs (through .ci/run).
GO      ?= go
BIN     ?= bin/mc-broker
PREFIX  ?= $(HOME)/.local
# The version comes from Go's build info (the module version Go stamps from
# git), so go build, go install and make install of one commit print the
# same. VERSION=v1.2.3 stamps a build from a tree without git (a tarball).
VERSION ?=
LDFLAGS := $(if $(VERSION),-X github.com/mc-broker/mc-broker/cmd/internal/cli.Version=$(VERSION))

.PHONY: build test test-env install bench vet fmt-check cross

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mc-broker

# Installs what the tests need (test-env, below), checks formatting and vets,
# then runs every test with the race detector. scripts/k8s-env.sh builds
# kube-apiserver and etcd from the Go module proxy (cached outside the
# clone, keyed by version) and prints their directory for the Kubernetes
# tests.
test: test-env fmt-check vet cross
	assets=$$(./scripts/k8s-env.sh) && \
	MC_BROKER_SIM_LATER=1 KUBEBUILDER_ASSETS="$$assets" PATH="$(CURDIR)/.cache/clis/node_modules/.bin:$$PATH" $(GO) test -race -count=1 ./...
	$(GO) test -race -count=1 -run '^TestLockMirrorSimulation$$' ./bench/
	$(GO) -C third_party/reference test -race -count=1 ./...

# scripts/test-env.sh: the real claude and codex CLIs from the npm registry,
# used offline to judge copies; scripts/docker-env.sh: a Docker engine and
# the FROM-scratch busybox test image. First, so that under CI=true a
# registry or engine that does not answer fails in seconds, not after the
# builds.
test-env:
	./scripts/test-env.sh
	./scripts/docker-env.sh

install:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(PREFIX)/bin/mc-broker ./cmd/mc-broker

# Benchmarks; method and figures are in docs/BENCHMARKS.md.
# The watch benchmarks time one change per iteration and report p50/p99, so
# they run a fixed number of iterations; the idle one takes 60 s per
# iteration. The refresh simulation (BenchmarkLogouts) runs for minutes: once.
# The Kubernetes ones need the API server scripts/k8s-env.sh builds.
bench:
	$(GO) test -run '^$$' -bench 'Sync|CpLoop|ProcessStart|StartupInit|VolumeSync|DockerRunCat|VolumePoll|LockMirror' -benchmem -count 5 ./bench/ | tee bench.out
	$(GO) test -run '^$$' -bench 'WatchPropagation|FloorPropagation|WatchAdoption' -benchtime 300x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'PollLoopPropagation' -benchtime 30x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'WatchIdle' -benchtime 1x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Logouts' -count 1 -timeout 30m ./bench/ | tee -a bench.out
	assets=$$(./scripts/k8s-env.sh) && \
	KUBEBUILDER_ASSETS="$$assets" $(GO) test -run '^$$' -bench 'SecretWrite|SecretTakeBack' -benchtime 300x ./bench/ | tee -a bench.out && \
	KUBEBUILDER_ASSETS="$$assets" $(GO) test -run '^$$' -bench 'KubectlApplySecret' -benchtime 30x ./bench/ | tee -a bench.out

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
