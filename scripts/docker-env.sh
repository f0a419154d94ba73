#!/usr/bin/env bash
# Starts what mc-broker's Docker tests need, the way CI does it (as root, on a
# machine that has only the docker client):
#   - Debian's docker.io engine and busybox-static, installed when missing;
#   - dockerd in the background (log: /tmp/dockerd.log), when no engine
#     answers yet;
#   - the test image mc-broker-test-busybox:latest, built FROM scratch with
#     busybox (there is no registry to pull from).
# Used by `make test` (the README's test command) and so by .ci/run.
# Idempotent. Not root and no engine: prints why and exits 0; the Docker
# tests then skip, or fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=mc-broker-test-busybox:latest
say() { echo "docker-env: $*" >&2; }

engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! engine_up; then
  if [ "$(id -u)" != 0 ]; then
    say "no Docker engine answers and this is not root: Docker tests will be skipped (they fail under CI=true)"
    exit 0
  fi
  if ! command -v dockerd >/dev/null || [ ! -x /bin/busybox ]; then
    say "installing docker.io and busybox-static"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static docker-compose >&2
  fi
  say "starting dockerd (log: /tmp/dockerd.log)"
  # From /: a daemon started in a clone keeps it as its working directory.
  env -C / dockerd >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 300); do
    if [ -S /var/run/docker.sock ] && engine_up; then break; fi
    sleep 0.1
  done
  if ! engine_up; then
    say "dockerd did not answer within 30 s; last lines of /tmp/dockerd.log:"
    tail -n 20 /tmp/dockerd.log >&2 || true
    exit 1
  fi
fi

if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >&2 || say "docker-compose not installed; compose tests will be skipped"
fi

# A FROM-scratch image has no dynamic loader: only a static busybox runs in
# it (Debian's busybox package is dynamic; busybox-static is not).
static_busybox() {
  local b
  for b in /bin/busybox "$(command -v busybox || true)"; do
    if [ -n "$b" ] && [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then
      echo "$b"
      return 0
    fi
  done
  return 1
}

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  if ! busybox=$(static_busybox) && [ "$(id -u)" = 0 ]; then
    say "installing busybox-static"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2
  fi
  if ! busybox=$(static_busybox); then
    say "no statically linked busybox: cannot build $IMAGE; install busybox-static (as root: apt-get install busybox-static)"
    exit 1
  fi
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp "$busybox" "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
LABEL org.mc-broker.test=true
DOCKERFILE
  say "building $IMAGE"
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >&2
fi
