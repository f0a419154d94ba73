#!/usr/bin/env bash
# Starts what mc-broker's Podman tests need, the way CI does it (as root, on a
# machine where scripts/docker-env.sh has run):
#   - Debian's podman (4.3 on bookworm), installed when missing;
#   - rootful Podman's Docker-compatible API: `podman system service` on
#     unix:///run/podman/podman.sock (its standard place; dockerd's socket and
#     storage are not touched), in the background (log: /tmp/podman-service.log);
#   - rootless Podman's: the same as the user mcb-podman (created when
#     missing, with subordinate ids), on /run/user/<uid>/podman/podman.sock
#     (log: /tmp/podman-rootless-service.log);
#   - the test image mc-broker-test-busybox:latest in both stores, loaded from
#     Docker's (nothing is pulled).
# The tests find the services at those paths (MC_BROKER_TEST_PODMAN_HOST and
# MC_BROKER_TEST_PODMAN_ROOTLESS_HOST override them).
# Used by `make test` (after docker-env.sh) and so by .ci/run. Idempotent.
# Not root: prints why and exits 0; the Podman tests then skip, or fail under
# CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=mc-broker-test-busybox:latest
ROOTFUL=/run/podman/podman.sock
USER_NAME=mcb-podman
say() { echo "podman-env: $*" >&2; }
answers() { timeout 10 docker -H "unix://$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
has_image() { timeout 10 docker -H "unix://$1" image inspect "$IMAGE" >/dev/null 2>&1; }

if [ "$(id -u)" != 0 ]; then
  say "not root: cannot start Podman services for the Podman tests; they will be skipped (they fail under CI=true)"
  exit 0
fi
if ! command -v podman >/dev/null; then
  say "installing podman"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman uidmap >&2
fi

# wait_for SOCKET LOG: until the service answers, at most 30 s.
wait_for() {
  for _ in $(seq 1 300); do
    if answers "$1"; then return 0; fi
    sleep 0.1
  done
  say "no answer on $1 within 30 s; last lines of $2:"
  tail -n 20 "$2" >&2 || true
  return 1
}

if ! answers "$ROOTFUL"; then
  say "starting rootful podman system service on $ROOTFUL (log: /tmp/podman-service.log)"
  mkdir -p "$(dirname "$ROOTFUL")"
  # From /: a service started in a clone would break (conmon cannot get
  # its working directory) once that clone is removed.
  setsid env -C / podman system service --time=0 "unix://$ROOTFUL" >/tmp/podman-service.log 2>&1 </dev/null &
  wait_for "$ROOTFUL" /tmp/podman-service.log
fi
if ! has_image "$ROOTFUL"; then
  say "loading $IMAGE into rootful Podman"
  docker save "$IMAGE" | podman load -q >&2
fi

if ! id "$USER_NAME" >/dev/null 2>&1; then
  say "creating the user $USER_NAME for rootless Podman"
  useradd --create-home --shell /bin/sh "$USER_NAME"
fi
uid=$(id -u "$USER_NAME")
if ! grep -q "^$USER_NAME:" /etc/subuid; then
  echo "$USER_NAME:200000:65536" >>/etc/subuid
  echo "$USER_NAME:200000:65536" >>/etc/subgid
fi
runtime=/run/user/$uid
ROOTLESS=$runtime/podman/podman.sock
mkdir -p "$runtime"
chown "$USER_NAME:" "$runtime"
chmod 700 "$runtime"
as_user() { su "$USER_NAME" -s /bin/sh -c "cd && XDG_RUNTIME_DIR=$runtime $1"; }
if ! answers "$ROOTLESS"; then
  say "starting rootless podman system service as $USER_NAME on $ROOTLESS (log: /tmp/podman-rootless-service.log)"
  : >/tmp/podman-rootless-service.log
  chown "$USER_NAME:" /tmp/podman-rootless-service.log
  as_user "setsid podman system service --time=0 >/tmp/podman-rootless-service.log 2>&1 </dev/null &"
  wait_for "$ROOTLESS" /tmp/podman-rootless-service.log
fi
if ! has_image "$ROOTLESS"; then
  say "loading $IMAGE into $USER_NAME's Podman"
  docker save "$IMAGE" | as_user "podman load -q" >&2
fi
