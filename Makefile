# mc-broker's tasks. `make test` is what CI runs (through .ci/run).
GO      ?= go
BIN     ?= bin/mc-broker
PREFIX  ?= $(HOME)/.local
# The version comes from Go's build info (the module version Go stamps from
# git), so go build, go install and make install of one commit print the
# same. VERSION=v1.2.3 stamps a build from a tree without git (a tarball).
VERSION ?=
LDFLAGS := $(if $(VERSION),-X github.com/mc-broker/mc-broker/cmd/internal/cli.Version=$(VERSION))

.PHONY: build test test-env install bench vet fmt-check cross agent-binaries

# On Linux the binary is built static (CGO_ENABLED=0): it is also the
# volume copies' resident agent, which runs in an empty image inside the
# engine (docs/VOLUMES.md). On macOS cgo stays on (the Keychain), and the
# agent is a Linux binary beside it: `make agent-binaries`.
HOSTOS  := $(shell $(GO) env GOOS)
STATIC  := $(if $(filter linux,$(HOSTOS)),CGO_ENABLED=0)
AGENTS  ?= amd64 arm64

build:
	$(STATIC) $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mc-broker

# mc-broker-linux-<arch> beside $(BIN), for engines of each architecture
# (Docker Desktop, OrbStack and colima run a linux/arm64 VM on Apple
# silicon, linux/amd64 on Intel): mc-broker finds them there.
agent-binaries:
	for arch in $(AGENTS); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -ldflags '$(LDFLAGS)' -o $(dir $(BIN))mc-broker-linux-$$arch ./cmd/mc-broker || exit 1; \
	done

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
	$(GO) -C third_party/go-digest test -race -count=1 ./...
	$(GO) -C third_party/yaml test -race -count=1 ./...

# scripts/test-env.sh: the real claude and codex CLIs from the npm registry,
# used offline to judge copies; scripts/docker-env.sh: a Docker engine and
# the FROM-scratch busybox test image; scripts/podman-env.sh: rootful and
# rootless Podman services; scripts/ssh-env.sh: an sshd on 127.0.0.1 for
# ssh:// engines. First, so that under CI=true a registry or engine that
# does not answer fails in seconds, not after the builds.
test-env:
	./scripts/test-env.sh
	./scripts/docker-env.sh
	./scripts/podman-env.sh
	./scripts/ssh-env.sh

install:
	$(STATIC) $(GO) build -ldflags '$(LDFLAGS)' -o $(PREFIX)/bin/mc-broker ./cmd/mc-broker
	$(if $(STATIC),,$(MAKE) agent-binaries BIN=$(PREFIX)/bin/mc-broker)

# Benchmarks; method and figures are in docs/BENCHMARKS.md.
# The watch benchmarks time one change per iteration and report p50/p99, so
# they run a fixed number of iterations; so do the Podman and ssh engine
# ones, whose iterations take seconds. The volume watch ones (the resident
# agent) need Docker and root (they read the volumes' Mountpoints); their
# poll and docker-run-loop comparisons take about a second an iteration,
# so they run 20. The idle one takes 60 s per
# iteration. The refresh simulation (BenchmarkLogouts) runs for minutes: once.
# The Kubernetes ones need the API server scripts/k8s-env.sh builds.
bench:
	$(GO) test -run '^$$' -bench '^Benchmark(Sync|BinarySync|CpLoop|CpLoopInstallAtomic|ProcessStart|StartupInit|VolumeSync|DockerRunCat|VolumePollUnchanged|LockMirror)$$' -benchmem -count 5 ./bench/ | tee bench.out
	$(GO) test -run '^$$' -bench 'VolumeSyncEngines|DockerRunCatEngines' -benchtime 5x -benchmem -count 5 ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'WatchPropagation|FloorPropagation|WatchAdoption' -benchtime 300x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'PollLoopPropagation' -benchtime 30x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench '^BenchmarkWatchVolume(Propagation|Adoption)$$' -benchtime 100x ./bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench '^Benchmark(PollVolumePropagation|PollVolumeAdoption|DockerRunLoopPropagation)$$' -benchtime 20x ./bench/ | tee -a bench.out
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
