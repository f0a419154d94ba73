#!/bin/sh
# Process start as a pre-run hook pays it, next to `true`, in one hyperfine
# run: `mc-broker version`, and `mc-broker sync` of 10 directory copies that
# are already in sync. Each BIN given is measured (e.g. a build of an older
# commit next to the current one); default: a build of this checkout.
#
#   bench/startup.sh [BIN...]        RUNS=1000 WARMUP=50 by default
#
# Everything lives in a temporary HOME (XDG directories too); DOCKER_HOST
# names a socket that does not exist, so nothing of the machine's is read
# or written and no engine is probed. Needs hyperfine (apt-get install
# hyperfine) and jq for the summary. Method and figures: docs/BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."
runs=${RUNS:-1000}
warmup=${WARMUP:-50}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ $# -eq 0 ]; then
	go build -o "$tmp/mc-broker" ./cmd/mc-broker
	set -- "$tmp/mc-broker"
fi

home=$tmp/home
mkdir -p "$home/.claude" "$tmp/xdg/config" "$tmp/xdg/data" "$tmp/xdg/state" "$tmp/xdg/cache" "$tmp/xdg/run"
chmod 700 "$tmp/xdg/run"
cp testdata/fixtures/claude/credentials.valid.json "$home/.claude/.credentials.json"
{
	printf 'sources:\n  claude:\n    path: %s\nsinks:\n' "$home/.claude/.credentials.json"
	for i in 0 1 2 3 4 5 6 7 8 9; do
		printf '  - source: claude\n    dir: %s\n' "$tmp/copies/$i/claude"
	done
} >"$tmp/config.yaml"

# The environment every command runs in, hyperfine included.
envrun() {
	env -i PATH="$PATH" HOME="$home" XDG_CONFIG_HOME="$tmp/xdg/config" XDG_DATA_HOME="$tmp/xdg/data" \
		XDG_STATE_HOME="$tmp/xdg/state" XDG_CACHE_HOME="$tmp/xdg/cache" XDG_RUNTIME_DIR="$tmp/xdg/run" \
		DOCKER_HOST="unix://$tmp/no-engine.sock" "$@"
}

set -- true "$@"
cmds=""
n=0
for bin in "$@"; do
	n=$((n + 1))
	if [ "$bin" = true ]; then
		set -- "$@" true
		continue
	fi
	# The copies exist and are in sync before timing: every timed sync
	# reports 10 unchanged copies.
	envrun "$bin" sync --config "$tmp/config.yaml" >/dev/null
	out=$(envrun "$bin" sync --config "$tmp/config.yaml")
	if [ "$(printf '%s\n' "$out" | grep -c ' unchanged ')" != 10 ]; then
		echo "$bin sync: want 10 unchanged copies, got:" >&2
		printf '%s\n' "$out" >&2
		exit 1
	fi
	set -- "$@" "$bin version" "$bin sync --config $tmp/config.yaml"
done
shift "$n"

envrun hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$tmp/out.json" "$@" >&2
# Wall time follows the machine's load; CPU time (user+sys, mean) much less.
echo "command	min ms	median ms	mean ms	user+sys ms"
jq -r '.results[] | [.command, (.min*1000*100|round/100), (.median*1000*100|round/100), (.mean*1000*100|round/100),
	((.user+.system)*1000*100|round/100)] | @tsv' "$tmp/out.json" |
	sed "s|$tmp/config.yaml|CONFIG|"
