#!/usr/bin/env bash
# Starts what mc-broker's ssh:// engine tests need, the way CI does it (as
# root, on a machine with a Docker engine from scripts/docker-env.sh):
#   - Debian's openssh-server, installed when missing;
#   - an sshd of its own on 127.0.0.1 (port 22022, or the next free one),
#     key authentication only, root only, with its own host key, started in
#     the background when not running yet (state and log in $DIR);
#   - a key for the tests, authorised for root on that sshd;
#   - the host alias mc-broker-test-sshd in
#     /etc/ssh/ssh_config.d/mc-broker-test.conf (address, port, user, key,
#     the host key pinned), so that `ssh mc-broker-test-sshd` and
#     DOCKER_HOST=ssh://mc-broker-test-sshd work as for a user who set up
#     ~/.ssh/config for a build box. The "remote" docker CLI is this
#     machine's: `docker system dial-stdio` talks to its engine.
# Used by `make test` (after docker-env.sh) and so by .ci/run. Idempotent.
# Not root: prints why and exits 0; the ssh tests then skip, or fail under
# CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

ALIAS=mc-broker-test-sshd
DIR=/run/mc-broker-test-sshd
CLIENT_CONF=/etc/ssh/ssh_config.d/mc-broker-test.conf
say() { echo "ssh-env: $*" >&2; }

works() { timeout 20 ssh -o BatchMode=yes "$ALIAS" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if [ -f "$CLIENT_CONF" ] && works; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  say "not root: cannot start an sshd for the ssh:// engine tests; they will be skipped (they fail under CI=true)"
  exit 0
fi
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
  say "installing openssh-server"
  apt-get update -qq >&2
  # Debian's policy-rc.d (or no init system) keeps the package from starting
  # a system sshd on port 22; only ours runs.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >&2
fi

mkdir -p "$DIR" /run/sshd
chmod 700 "$DIR"
[ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C mc-broker-test-host -f "$DIR/host_ed25519"
[ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C mc-broker-test-client -f "$DIR/id_ed25519"
cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
echo "$ALIAS $(cut -d' ' -f1-2 "$DIR/host_ed25519.pub")" >"$DIR/known_hosts"

# Our sshd, if one from an earlier run is still there.
if [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; then
  kill "$(cat "$DIR/sshd.pid")" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null || break; sleep 0.1; done
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=22022
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done

cat >"$DIR/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
PermitTunnel no
PrintMotd no
# The test sessions run docker; a busy test run opens many at once.
MaxStartups 100:30:200
MaxSessions 100
EOF

cat >"$CLIENT_CONF" <<EOF
# Written by mc-broker's scripts/ssh-env.sh for its ssh:// engine tests.
Host $ALIAS
    HostName 127.0.0.1
    Port $PORT
    User root
    IdentityFile $DIR/id_ed25519
    IdentitiesOnly yes
    HostKeyAlias $ALIAS
    UserKnownHostsFile $DIR/known_hosts
    StrictHostKeyChecking yes
    GSSAPIAuthentication no
EOF

say "starting sshd on 127.0.0.1:$PORT (log: $DIR/sshd.log)"
/usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"
for _ in $(seq 1 100); do
  if works; then exit 0; fi
  sleep 0.1
done
say "ssh $ALIAS docker version did not work; last lines of $DIR/sshd.log:"
tail -n 20 "$DIR/sshd.log" >&2 || true
ssh -o BatchMode=yes "$ALIAS" docker version >&2 || true
exit 1
