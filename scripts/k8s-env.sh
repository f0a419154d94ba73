#!/usr/bin/env bash
# Builds what mc-broker's Kubernetes tests run against: a real kube-apiserver
# and etcd, compiled from the Go module proxy (there is no other way to get
# them here: no registry, and Debian's etcd and kubectl are years too old).
# The tests start and stop private copies themselves, on loopback and free
# ports (internal/kubetest); this script only makes sure the binaries exist.
#
# Prints the directory holding kube-apiserver and etcd on stdout (everything
# else goes to stderr), so `make test` can pass it on as KUBEBUILDER_ASSETS.
#
# The build is cached outside the clone, keyed by version, with its own
# module and build caches:
#   ${MC_BROKER_CACHE:-/var/cache/mc-broker}/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
# (or ~/.cache/mc-broker/... when /var/cache is not writable). Cold, it takes
# about 25 minutes of CPU (some 13 minutes on 2 idle cores); afterwards a run
# only checks two files.
# Idempotent and safe to run concurrently (flock).
set -euo pipefail

K8S_VERSION=v1.37.2     # kube-apiserver; needs go >= 1.26.0
ETCD_VERSION=v3.7.0     # go.etcd.io/etcd/server/v3, the version K8S_VERSION pins
STAGING_VERSION=v0.${K8S_VERSION#v1.}   # k8s.io/api etc. are published as v0.X.Y

say() { echo "k8s-env: $*" >&2; }

base=${MC_BROKER_CACHE:-/var/cache/mc-broker}
if ! mkdir -p "$base" 2>/dev/null || [ ! -w "$base" ]; then
  base=${XDG_CACHE_HOME:-$HOME/.cache}/mc-broker
  mkdir -p "$base"
fi
cache=$base/k8s-$K8S_VERSION-etcd-${ETCD_VERSION}
bin=$cache/bin

built() { [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] && [ -f "$bin/.complete" ]; }

if built; then
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null; then
  say "go not found: cannot build kube-apiserver; the Kubernetes tests will be skipped (they fail under CI=true)"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if built; then   # another run finished the build while this one waited
  echo "$bin"
  exit 0
fi

export GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOPATH=$cache/gopath
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
export GOWORK=off

src=$cache/src
mkdir -p "$src/cmd/etcd" "$bin"
cd "$src"
say "building kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION into $bin (about 25 CPU-minutes, once)"
start=$(date +%s)

# A main module that requires k8s.io/kubernetes and points every one of its
# ./staging replacements at the published v0.X.Y module (the sample
# controller and CLI plugin are not needed and not on the proxy).
if [ ! -f go.mod ]; then
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || { say "could not download k8s.io/kubernetes@$K8S_VERSION's go.mod"; exit 1; }
  {
    echo "module mc-broker-k8s-env"
    echo
    awk '/^go /{print; exit}' "$gomod"
    echo
    grep '^godebug' "$gomod" || true
    echo
    echo "require ("
    echo "	k8s.io/kubernetes $K8S_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo ")"
    echo
    echo "replace ("
    sed -n '/^replace (/,/^)/p' "$gomod" \
      | awk -v v="$STAGING_VERSION" '/=> \.\/staging/{print "\t" $1 " => " $1 " " v}' \
      | grep -v -e sample-cli-plugin -e sample-controller
    echo ")"
  } >go.mod.tmp
  mv go.mod.tmp go.mod
fi
cat >tools.go <<'EOF'
//go:build tools

package k8senv

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
cat >cmd/etcd/main.go <<'EOF'
// etcd, built from the server module kube-apiserver is tested with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
go mod tidy >&2
got=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
if [ "$got" != "$ETCD_VERSION" ]; then
  say "k8s.io/kubernetes@$K8S_VERSION resolves etcd $got, not $ETCD_VERSION: update ETCD_VERSION"
  exit 1
fi

minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
go build -ldflags "$ldflags" -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
go build -ldflags "-s -w" -o "$bin/etcd.tmp" ./cmd/etcd
mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
mv "$bin/etcd.tmp" "$bin/etcd"
touch "$bin/.complete"
say "built in $(($(date +%s) - start)) s"
echo "$bin"
