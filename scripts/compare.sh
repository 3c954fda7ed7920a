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
#   BENCH_DROP_CACHES=1  drop the page cache before every bulk sample, so the served file is read
#                     from the disk (default 1 when run as root, which it needs; 0 keeps the cache)
#
#   BENCH_GLUSTER=1   serve from a GlusterFS volume made for the run (scripts/gluster-volume.sh:
#                     replica 2, bricks under BENCH_TMPDIR, one FUSE mount; needs root) instead
#                     of a local folder
#
# HELLO rows are driven by NEW's `sft-bench hello` against both servers (one load generator for
# both; a build older than that subcommand has no `hello` of its own).
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
DROP=${BENCH_DROP_CACHES:-$([[ $(id -u) == 0 ]] && echo 1 || echo 0)}
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
    declare -F gv_down >/dev/null && gv_down
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

# The served folder, and beside it on the local disk the file SENDs upload.
SRV=$WORK/srv
if [[ ${BENCH_GLUSTER:-0} == 1 ]]; then
    # shellcheck source=scripts/gluster-volume.sh
    source scripts/gluster-volume.sh
    mkdir -p "$WORK/gluster"
    gv_up "$WORK/gluster" || { log "could not make a GlusterFS volume"; exit 1; }
    SRV=$GV_MOUNT/root
fi
mkdir -p "$SRV/up" "$WORK/src"
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$WORK/src/big.bin"
cp "$WORK/src/big.bin" "$SRV/big.bin"
head -c 4096 /dev/urandom >"$SRV/small.bin"
declare -A ADDR=()
for build in base new; do
    dir=$BASE
    [[ $build == new ]] && dir=$NEW
    port=$(free_port)
    "$dir/sft-server" --host 127.0.0.1 --port "$port" --root "$SRV" --log-level warn \
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
cold() { # drops the page cache, so a bulk sample reads the served file from the disk
    [[ $DROP == 1 ]] || return 0
    sync
    echo 3 >/proc/sys/vm/drop_caches
}
field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1"; }
load() { # BUILD CONNECTIONS [hello]: 4 KiB GETs of small.bin, or HELLOs
    local out key=$1_c$2 args=(get "${ADDR[$1]}" small.bin) bench
    bench=$(bin "$1" sft-bench)
    if [[ ${3:-} == hello ]]; then
        key=$1_hello$2 args=(hello "${ADDR[$1]}") bench=$NEW/sft-bench
    fi
    if out=$(timeout $((LOAD_S + 60)) "$bench" "${args[@]}" \
        --connections "$2" --duration "$LOAD_S" --warmup 1 --json); then
        add "$key" "$(field "$out" requests_per_sec | cut -d. -f1)"
        add "${key}_p50" "$(field "$out" p50_us)"
        add "${key}_p99" "$(field "$out" p99_us)"
    else
        add "$key" ERR
    fi
}

for round in $(seq 1 "$RUNS"); do
    log "round $round/$RUNS"
    for build in base new; do
        sft=$(bin "$build" sft)
        addr=${ADDR[$build]}
        cold
        timed "$build"_null "$sft" get --no-verify -q "$addr" big.bin - >/dev/null
        cold
        timed "$build"_nullv "$sft" get -q "$addr" big.bin - >/dev/null
        rm -f "$SHM/x"
        cold
        timed "$build"_shm "$sft" get -q "$addr" big.bin "$SHM/x"
        rm -f "$SHM/x"
        rm -f "$SRV/up/big.bin"
        cold
        timed "$build"_send "$sft" send -q --overwrite "$addr" "$WORK/src/big.bin" up/big.bin
        [[ $(stat -c %s "$SRV/up/big.bin" 2>/dev/null) == $((MIB * 1024 * 1024)) ]] \
            || { log "  the $build SEND stored no whole file"; S[${build}_send]+=" ERR"; }
        load "$build" 1
        load "$build" 10
        load "$build" 100
        load "$build" 1 hello
        load "$build" 100 hello
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
row() { # LABEL KEY UNIT
    local b n
    b=$(median "base_$2")
    n=$(median "new_$2")
    echo "| $1 | $b | $n | $(ratio "$n" "$b")× | ${S[base_$2]// /, } | ${S[new_$2]// /, } |"
}
cache="page cache dropped before each"
[[ $DROP == 1 ]] || cache="page cache kept"
echo "| row ($RUNS alternating rounds, medians; bulk rows: $cache) | base | new | new ÷ base | base samples | new samples |"
echo "| --- | --- | --- | --- | --- | --- |"
row "GET $MIB MiB → /dev/null, unverified (s)" null
row "GET $MIB MiB → /dev/null, verified (s)" nullv
row "GET $MIB MiB → tmpfs, verified (s)" shm
row "SEND $MIB MiB, verified (s)" send
load_rows() { # LABEL KEY CONNECTIONS…: req/s, p50 and p99 of each
    local c conns
    for c in "${@:3}"; do
        conns="$c connections"
        [[ $c == 1 ]] && conns="1 connection"
        row "$1, $conns (req/s)" "$2$c"
        row "$1, $conns, p50 (µs)" "$2${c}_p50"
        row "$1, $conns, p99 (µs)" "$2${c}_p99"
    done
}
load_rows "4 KiB GETs" c 1 10 100
load_rows HELLOs hello 1 100
