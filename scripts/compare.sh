#!/usr/bin/env bash
# Measures two builds of sft side by side: the same rows as BENCHMARKS.md's sft columns, each
# build's server and client taking turns (base, new, base, new, …) in one run, so that drift and
# other work on the machine affect both alike. Prints a Markdown table of medians and new ÷ base.
#
#   scripts/compare.sh BASE_BIN_DIR [NEW_BIN_DIR]
#
# BASE_BIN_DIR holds the release `sft`, `sft-server` and `sft-bench` of the build before a change
# (`git worktree add --detach ../base <commit> && (cd ../base && cargo build --release)`);
# NEW_BIN_DIR defaults to this checkout's release binaries (built unless BENCH_SKIP_BUILD=1).
#
#   BENCH_RUNS=5      rounds (default 5)
#   BENCH_MIB=1024    size of the bulk file in MiB (default 1024)
#   BENCH_LOAD_S=5    seconds per load measurement (default 5)
#
# Only 127.0.0.1 is used; everything started is stopped, everything created removed, on exit.
set -Eeuo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 BASE_BIN_DIR [NEW_BIN_DIR]" >&2; exit 2; }
BASE=$(cd "$1" && pwd)
if [[ $# == 2 ]]; then
    NEW=$(cd "$2" && pwd)
else
    NEW=${CARGO_TARGET_DIR:-$PWD/target}/release
    [[ ${BENCH_SKIP_BUILD:-0} == 1 ]] || cargo build --release --quiet -p sft-server -p sft-client -p sft-bench
fi
RUNS=${BENCH_RUNS:-5}
MIB=${BENCH_MIB:-1024}
LOAD_S=${BENCH_LOAD_S:-5}
T=300
for dir in "$BASE" "$NEW"; do
    for b in sft sft-server sft-bench; do
        [[ -x $dir/$b ]] || { echo "$dir/$b is missing" >&2; exit 2; }
    done
done

log() { printf '[compare %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
PIDS=()
WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sft-compare.XXXXXX")
SHM=$(mktemp -d /dev/shm/sft-compare.XXXXXX)
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" "$SHM"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

# A free port on 127.0.0.1, and a wait (at most 10 s) until something listens on it.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() {
    local hex
    hex=$(printf ':%04X' "$1")
    for _ in $(seq 1 200); do
        awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
            /proc/net/tcp 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

mkdir -p "$WORK/srv/up"
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$WORK/srv/big.bin"
head -c 4096 /dev/urandom >"$WORK/srv/small.bin"
declare -A ADDR=()
for build in base new; do
    dir=$BASE
    [[ $build == new ]] && dir=$NEW
    port=$(free_port)
    "$dir/sft-server" --host 127.0.0.1 --port "$port" --root "$WORK/srv" --log-level warn \
        2>>"$WORK/$build.log" &
    PIDS+=($!)
    wait_listen "$port" || { log "the $build server did not start: $(tail -3 "$WORK/$build.log")"; exit 1; }
    ADDR[$build]=127.0.0.1:$port
done
bin() { if [[ $1 == base ]]; then echo "$BASE/$2"; else echo "$NEW/$2"; fi; }

declare -A S=()
add() { S[$1]="${S[$1]:-}${S[$1]:+ }$2"; }
median() {
    tr ' ' '\n' <<<"${S[$1]:-}" | grep -E '^[0-9.]+$' | sort -g | awk '
        { a[NR] = $1 } END { if (!NR) { print "n/a"; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        if (m >= 100) printf "%.0f\n", m; else printf "%.4g\n", m }'
}
timed() { # KEY COMMAND… : wall seconds of one run
    local start=$EPOCHREALTIME
    if timeout "$T" "${@:2}"; then
        add "$1" "$(awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.4f", e - s }')"
    else
        add "$1" ERR
        log "  $1 failed"
    fi
}
field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1"; }
load() { # BUILD CONNECTIONS
    local out
    if out=$(timeout $((LOAD_S + 60)) "$(bin "$1" sft-bench)" get "${ADDR[$1]}" small.bin \
        --connections "$2" --duration "$LOAD_S" --warmup 1 --json); then
        add "$1_c$2" "$(field "$out" requests_per_sec | cut -d. -f1)"
        add "$1_c$2_p99" "$(field "$out" p99_us)"
    else
        add "$1_c$2" ERR
    fi
}

for round in $(seq 1 "$RUNS"); do
    log "round $round/$RUNS"
    for build in base new; do
        sft=$(bin "$build" sft)
        addr=${ADDR[$build]}
        timed "$build"_null "$sft" get --no-verify -q "$addr" big.bin - >/dev/null
        rm -f "$SHM/x"
        timed "$build"_shm "$sft" get -q "$addr" big.bin "$SHM/x"
        rm -f "$SHM/x"
        rm -f "$WORK/srv/up/big.bin"
        timed "$build"_send "$sft" send -q --overwrite "$addr" "$WORK/srv/big.bin" up/big.bin
        [[ $(stat -c %s "$WORK/srv/up/big.bin" 2>/dev/null) == $((MIB * 1024 * 1024)) ]] \
            || { log "  the $build SEND stored no whole file"; S[${build}_send]+=" ERR"; }
        load "$build" 1
        load "$build" 100
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
row() { # LABEL KEY UNIT
    local b n
    b=$(median "base_$2")
    n=$(median "new_$2")
    echo "| $1 | $b | $n | $(ratio "$n" "$b")× | ${S[base_$2]// /, } | ${S[new_$2]// /, } |"
}
echo "| row ($RUNS alternating rounds, medians) | base | new | new ÷ base | base samples | new samples |"
echo "| --- | --- | --- | --- | --- | --- |"
row "GET $MIB MiB → /dev/null, unverified (s)" null
row "GET $MIB MiB → tmpfs, verified (s)" shm
row "SEND $MIB MiB, verified (s)" send
row "4 KiB GETs, 1 connection (req/s)" c1
row "4 KiB GETs, 1 connection, p99 (µs)" c1_p99
row "4 KiB GETs, 100 connections (req/s)" c100
row "4 KiB GETs, 100 connections, p99 (µs)" c100_p99
