#!/usr/bin/env bash
# Installs what mc-broker's tests need and that Go does not fetch by itself.
# Used by `make test` (the README's test command) and so by .ci/run.
# Idempotent: a second run finds everything in place and does nothing.
#
# - The real claude and codex CLIs from the npm registry, into .cache/clis:
#   the end-to-end tests point them at copies mc-broker wrote and ask
#   `claude auth status` / `codex login status`, which judge a login offline.
# - systemd-analyze (Debian's systemd package), when root and missing: the
#   launch/service tests run `systemd-analyze verify --user` on the unit
#   file. Nothing is started; a container needs no running systemd for it.
#
# Without npm, or with the npm registry unreachable (checked first, within
# seconds), it says so and exits 0: the real-CLI tests then skip. Under
# CI=true it exits 1 at once instead, rather than after the builds and a
# long npm retry, since those tests must run there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-env: installing Debian's systemd package for systemd-analyze" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >&2
  else
    echo "test-env: systemd-analyze not found and cannot install it; the unit file check will be skipped (it fails under CI=true)" >&2
  fi
fi

CLAUDE_VERSION=2.1.332
CODEX_VERSION=0.171.0
clis=.cache/clis

have() { [ -x "$clis/node_modules/.bin/$1" ] && grep -q "\"version\": \"$2\"" "$clis/node_modules/$3/package.json" 2>/dev/null; }

if have claude "$CLAUDE_VERSION" @anthropic-ai/claude-code && have codex "$CODEX_VERSION" @openai/codex; then
  exit 0
fi
# without REASON: the real CLIs cannot be installed. Outside CI their tests
# skip; under CI=true that is a failure, said now.
without() {
  if [ "${CI:-}" = true ]; then
    echo "test-env: $1; CI=true needs the real claude and codex CLIs (from the npm registry) for the end-to-end tests: failing now" >&2
    exit 1
  fi
  echo "test-env: $1; the real-CLI tests will be skipped (they fail under CI=true)" >&2
  exit 0
}

if ! command -v npm >/dev/null; then
  without "npm not found"
fi
# npm's own retries take minutes on an unreachable registry: ask once, for
# at most 10 s (npm ping honours .npmrc's registry and proxy settings; its
# --fetch-timeout does not cover a connection that hangs, timeout does).
registry=$(npm config get registry 2>/dev/null || echo "the npm registry")
ping=(npm ping --fetch-timeout=10000 --fetch-retries=0 --loglevel=silent)
if command -v timeout >/dev/null; then ping=(timeout 10 "${ping[@]}"); fi
if ! "${ping[@]}" >/dev/null 2>&1; then
  without "$registry does not answer (npm ping, 10 s)"
fi
mkdir -p "$clis"
echo "test-env: installing @anthropic-ai/claude-code@$CLAUDE_VERSION and @openai/codex@$CODEX_VERSION into $clis" >&2
# Claude's postinstall moves the native binary for this platform (from the
# optional dependency npm just installed) into place; it fetches nothing else.
if ! npm install --prefix "$clis" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$CLAUDE_VERSION" "@openai/codex@$CODEX_VERSION" >&2; then
  without "npm install from $registry failed (above)"
fi
