#!/usr/bin/env bash
# Benchmarks sft against nginx+curl, rsync, nc and wrk on loopback and writes BENCHMARKS.md.
#
#   scripts/bench.sh                  full run: 1 GiB file, 5 runs per tool, 10 s load tests
#   BENCH_QUICK=1 scripts/bench.sh    quick run: 256 MiB file, 3 runs, 3 s load tests
#   BENCH_RUNS=9 scripts/bench.sh     more runs per tool
#   scripts/bench.sh many             only the many-small-files row (10,000 x 4 KiB on tmpfs
#                                     against an rsync daemon), printed; 3 runs unless BENCH_RUNS
#   scripts/bench.sh gluster          only the 4 KiB GET and 1 GiB rows, each served from a local
#                                     folder and from a GlusterFS mount (scripts/gluster-volume.sh)
#                                     by sft-server and nginx, printed; 5 runs, 5 s load tests
#   BENCH_ROOT=DIR scripts/bench.sh   serve from a new folder inside DIR (a mount, say) instead of
#                                     one under BENCH_TMPDIR (default /var/tmp)
#   BENCH_BIN_DIR=DIR                 take sft, sft-server and sft-bench from DIR (no build)
#
# Every tool runs on the same machine, against the same files, and only on 127.0.0.1. Tools take
# turns (sft, competitor, sft, competitor, …) so drift affects both alike; medians are reported
# along with every sample. Needs Debian (it installs nginx, rsync, wrk, netcat-openbsd, curl and
# hyperfine with apt-get when missing, so run it as root) and python3. Everything it starts is
# stopped, and everything it creates is removed, when it exits.
set -Eeuo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
REPO=$PWD

ONLY=${1:-}
[[ -z $ONLY || $ONLY == many || $ONLY == gluster ]] || { echo "usage: $0 [many|gluster]" >&2; exit 2; }
QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
    RUNS=${BENCH_RUNS:-3}
    BIG_MIB=256
    LOAD_S=3
    MODE="quick (BENCH_QUICK=1)"
else
    RUNS=${BENCH_RUNS:-5}
    BIG_MIB=1024
    LOAD_S=10
    MODE="full"
fi
[[ $ONLY == many ]] && RUNS=${BENCH_RUNS:-3}
[[ $ONLY == gluster && $QUICK != 1 ]] && LOAD_S=5
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_RUNS must be a positive integer" >&2; exit 2; }
BIG_BYTES=$((BIG_MIB * 1024 * 1024))
SMALL_BYTES=4096
IDLE_CONNS=1000
T=${BENCH_CMD_TIMEOUT:-300} # upper bound, in seconds, on any single command

if ((BIG_MIB % 1024 == 0)); then BIG_LABEL="$((BIG_MIB / 1024)) GiB"; else BIG_LABEL="$BIG_MIB MiB"; fi

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Clean-up: every process this script starts is recorded by pid and stopped on exit.
PIDS=()
WORK=""
SHM=""
ROOT_PARENT=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    # The volume's mount and bricks are inside WORK: unmounted and deleted first.
    declare -F gv_down >/dev/null && gv_down
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    [[ -n $ROOT_PARENT && -d $ROOT_PARENT ]] && rm -rf "$ROOT_PARENT"
    [[ -n $SHM && -d $SHM ]] && rm -rf "$SHM"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # Drops a pid that has already been stopped and reaped from PIDS.
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Stops PID (asked, then killed; see gv_stop_pid, sourced below) and forgets it.
stop_pid() {
    gv_stop_pid "$1"
    forget_pid "$1"
}

# shellcheck source=scripts/gluster-volume.sh
source "$REPO/scripts/gluster-volume.sh"

# ---------------------------------------------------------------------------------------------
# (a) Tools.
install_tools() {
    local missing=()
    if [[ $ONLY == many ]]; then
        command -v rsync >/dev/null || missing+=(rsync)
        command -v python3 >/dev/null || missing+=(python3)
        ((${#missing[@]} == 0)) || die "missing ${missing[*]}: install them"
        return 0
    fi
    if [[ $ONLY == gluster ]]; then
        local why
        why=$(gv_unavailable)
        [[ -z $why ]] || die "$why"
    fi
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v rsync >/dev/null || missing+=(rsync)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v hyperfine >/dev/null || missing+=(hyperfine)
    if ! command -v nc >/dev/null || ! nc -h 2>&1 | grep -q -- '-N'; then
        missing+=(netcat-openbsd)
    fi
    command -v python3 >/dev/null || missing+=(python3)
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: install them (or run as root)"
        log "installing ${missing[*]}"
        # RUNLEVEL=1 keeps the packages' maintainer scripts from starting a system nginx.
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
    command -v nginx >/dev/null || die "nginx not found after install"
}

# ---------------------------------------------------------------------------------------------
# Helpers.

# Prints N free TCP ports on 127.0.0.1 (bound then released at once, so they are free now).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits (at most 10 s) until something listens on 127.0.0.1:PORT.
# Writes nginx's configuration: what every row shares, then SERVERS (its `server` blocks).
nginx_conf() {
    local user=""
    [[ $(id -u) == 0 ]] && user="user root;"
    cat >"$WORK/nginx/nginx.conf" <<EOF
$user
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
$1
}
EOF
}

wait_listen() {
    local hex
    hex=$(printf ':%04X' "$1")
    for _ in $(seq 1 200); do
        if awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
            /proc/net/tcp 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

declare -A SAMPLES=()
add_sample() { SAMPLES[$1]="${SAMPLES[$1]:-}${SAMPLES[$1]:+ }$2"; }

# Median of the numeric samples under KEY ("n/a" when there are none).
median() {
    local values
    read -r -a values <<<"${SAMPLES[$1]:-}"
    printf '%s\n' "${values[@]}" | { grep -E '^[0-9.eE+-]+$' || true; } | sort -g | awk '
        { a[NR] = $1 }
        END {
            if (NR == 0) { print "n/a"; exit }
            m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
            if (m >= 100) printf "%.0f\n", m; else printf "%.4g\n", m
        }'
}

# A ratio for a table: "0.93×", or "n/a".
times() { if [[ $1 == n/a ]]; then echo n/a; else echo "$1×"; fi; }

# A / B to two decimals ("n/a" when either is missing).
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'
}

# met / not met: "le" means ratio must be <= goal, "ge" that it must be >= goal.
verdict() {
    awk -v r="$1" -v g="$2" -v op="$3" 'BEGIN {
        if (r == "n/a") { print "n/a"; exit }
        ok = (op == "le") ? (r + 0 <= g + 0) : (r + 0 >= g + 0)
        print ok ? "**met**" : "**not met**" }'
}

# Runs tool KEY once: pre_KEY (untimed), run_KEY (timed), post_KEY (untimed check; a failing check
# marks the sample ERR). Records the wall time in seconds.
sample() {
    local key=$1 start end secs
    if declare -F "pre_$key" >/dev/null && ! "pre_$key"; then
        log "  $key: setup failed"
        add_sample "$key" ERR
        return 0
    fi
    start=$EPOCHREALTIME
    if "run_$key"; then
        end=$EPOCHREALTIME
        secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }')
        if declare -F "post_$key" >/dev/null && ! "post_$key"; then
            log "  $key: check failed after ${secs}s"
            add_sample "$key" ERR
        else
            log "  $key: ${secs}s"
            add_sample "$key" "$secs"
        fi
    else
        log "  $key: failed (exit $?)"
        add_sample "$key" ERR
        if declare -F "post_$key" >/dev/null; then "post_$key" || true; fi
    fi
}

mib_s() { # median seconds -> MiB/s
    awk -v s="$1" -v b="$BIG_BYTES" 'BEGIN { if (s == "n/a" || s + 0 == 0) print "n/a"; else printf "%.0f\n", b / 1048576 / s }'
}
samples_of() { local v=${SAMPLES[$1]:-n/a}; echo "${v// /, }"; }

# 4 KiB GETs under load, each server measured by the same loop (sft-bench; its `http` mode
# against nginx), and nginx by wrk too, an independent generator that checks sft-bench's figures.
# Samples are req/s; p50, p99, p99.9 (µs) and errors go to KEY_p50, KEY_p99, KEY_p999, KEY_err.
round() { awk -v v="$1" 'BEGIN { if (v ~ /^[0-9.eE+-]+$/) printf "%.0f\n", v; else print v }'; }
json_field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1"; }
load_bench() { # KEY CONNECTIONS MODE TARGET PATH
    local out q
    if out=$(timeout $((LOAD_S + 60)) "$SFT_BENCH" "$3" "$4" "$5" \
        --connections "$2" --duration "$LOAD_S" --json); then
        add_sample "$1" "$(round "$(json_field "$out" requests_per_sec)")"
        for q in p50 p99 p999; do add_sample "$1_$q" "$(json_field "$out" "${q}_us")"; done
        add_sample "$1_err" "$(json_field "$out" errors)"
        log "  $1: $(round "$(json_field "$out" requests_per_sec)") req/s, p50 $(json_field "$out" p50_us) µs, p99 $(json_field "$out" p99_us) µs, p99.9 $(json_field "$out" p999_us) µs, errors $(json_field "$out" errors)"
    else
        log "  $1: sft-bench failed"
        add_sample "$1" ERR
    fi
}
# Runs the tools named in $@ in turn, RUNS rounds.
alternate() {
    local round tool
    for round in $(seq 1 "$RUNS"); do
        log " round $round/$RUNS"
        for tool in "$@"; do
            sample "$tool"
        done
    done
}

# ---------------------------------------------------------------------------------------------
install_tools

SFT_BIN_DIR=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/release}
if [[ ${BENCH_SKIP_BUILD:-0} != 1 && -z ${BENCH_BIN_DIR:-} ]]; then
    log "building sft (release)"
    cargo build --release --workspace --quiet
fi
SFT=$SFT_BIN_DIR/sft
SFT_SERVER=$SFT_BIN_DIR/sft-server
SFT_BENCH=$SFT_BIN_DIR/sft-bench
for b in "$SFT" "$SFT_SERVER" "$SFT_BENCH"; do
    [[ -x $b || ($ONLY == many && $b == "$SFT_BENCH") ]] || die "$b was not built"
done

# Enough descriptors for 1000 clients plus the servers' side of them.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
# (f) Many small files: 10,000 files of 4 KiB in 100 folders, everything on tmpfs (the served
# folder, the sources and the destinations), against an rsync daemon: pull (`sft get -r`) and
# push (`sft send -r`), each fresh and again with nothing changed. rsync runs with -t, since sft
# keeps modification times too. It starts servers of its own, so that it can run alone
# (`scripts/bench.sh many`).
MANY_DIRS=100
MANY_PER_DIR=100
MANY_FILE_BYTES=4096
MANY_N=$((MANY_DIRS * MANY_PER_DIR))

many_setup() { # -> MANY (its folder), MANY_ADDR (sft-server), MANY_RSYNC (rsync daemon URL)
    local port rport
    MANY=$SHM/many
    mkdir -p "$MANY/srv/up" "$MANY/rsync-up"
    log "writing $MANY_N files of $MANY_FILE_BYTES bytes in $MANY_DIRS folders to $MANY"
    python3 - "$MANY/srv/tree" "$MANY_DIRS" "$MANY_PER_DIR" "$MANY_FILE_BYTES" <<'PY'
import os, sys
root, dirs, per, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for d in range(dirs):
    folder = os.path.join(root, f"d{d:03}")
    os.makedirs(folder)
    for f in range(per):
        with open(os.path.join(folder, f"f{f:03}.bin"), "wb") as out:
            out.write(os.urandom(size))
PY
    read -r port rport <<<"$(free_ports 2)"
    "$SFT_SERVER" --host 127.0.0.1 --port "$port" --root "$MANY/srv" --log-level warn \
        2>>"$WORK/sft-many.log" &
    PIDS+=($!)
    wait_listen "$port" || die "sft-server did not start (see $WORK/sft-many.log)"
    MANY_ADDR=127.0.0.1:$port
    cat >"$WORK/rsyncd-many.conf" <<CONF
pid file = $WORK/rsyncd-many.pid
log file = $WORK/rsyncd-many.log
use chroot = no
[tree]
    path = $MANY/srv/tree
    read only = yes
    uid = $(id -u)
    gid = $(id -g)
[up]
    path = $MANY/rsync-up
    read only = no
    uid = $(id -u)
    gid = $(id -g)
CONF
    rsync --daemon --no-detach --config="$WORK/rsyncd-many.conf" --address=127.0.0.1 \
        --port="$rport" &
    PIDS+=($!)
    wait_listen "$rport" || die "rsync daemon did not start"
    MANY_RSYNC=rsync://127.0.0.1:$rport
}

many_count() { find "$1" -type f -not -name '.*' 2>/dev/null | wc -l; }
many_whole() { [[ $(many_count "$1") == "$MANY_N" ]]; }

pre_many_sft_get() { rm -rf "$MANY/get-sft"; }
run_many_sft_get() { timeout "$T" "$SFT" get -q -r "$MANY_ADDR" tree "$MANY/get-sft"; }
post_many_sft_get() { many_whole "$MANY/get-sft"; }
run_many_sft_get_again() { run_many_sft_get; }
post_many_sft_get_again() { post_many_sft_get; }
pre_many_rsync_get() { rm -rf "$MANY/get-rsync"; }
run_many_rsync_get() { timeout "$T" rsync -rt "$MANY_RSYNC/tree/" "$MANY/get-rsync/"; }
post_many_rsync_get() { many_whole "$MANY/get-rsync"; }
run_many_rsync_get_again() { run_many_rsync_get; }
post_many_rsync_get_again() { post_many_rsync_get; }

pre_many_sft_send() { rm -rf "$MANY/srv/up/tree"; }
run_many_sft_send() {
    timeout "$T" "$SFT" send -q -r --overwrite "$MANY_ADDR" "$MANY/srv/tree" up/tree
}
post_many_sft_send() { many_whole "$MANY/srv/up/tree"; }
run_many_sft_send_again() { run_many_sft_send; }
post_many_sft_send_again() { post_many_sft_send; }
pre_many_rsync_send() { rm -rf "$MANY/rsync-up/tree"; }
run_many_rsync_send() { timeout "$T" rsync -rt "$MANY/srv/tree/" "$MANY_RSYNC/up/tree/"; }
post_many_rsync_send() { many_whole "$MANY/rsync-up/tree"; }
run_many_rsync_send_again() { run_many_rsync_send; }
post_many_rsync_send_again() { post_many_rsync_send; }

# Runs the row: each sft run is followed by its rerun, then rsync's pair, RUNS rounds.
many_run() {
    many_setup
    log "$MANY_N small files: pull"
    alternate many_sft_get many_sft_get_again many_rsync_get many_rsync_get_again
    log "$MANY_N small files: push"
    alternate many_sft_send many_sft_send_again many_rsync_send many_rsync_send_again
    rm -rf "$MANY"
}

many_samples() { local v=${SAMPLES[$1]:-n/a}; echo "${v// /, }"; }

many_row() { # LABEL SFT_KEY RSYNC_KEY
    local s r q
    s=$(median "$2")
    r=$(median "$3")
    q=$(ratio "$s" "$r")
    echo "| $1 | $s | $r | $(times "$q") | $(verdict "$q" 1.0 le) | $(many_samples "$2") | $(many_samples "$3") |"
}

# The row's table (markdown).
many_table() {
    echo "| $MANY_N × 4 KiB in $MANY_DIRS folders, tmpfs | sft (s) | rsync daemon (s) | sft ÷ rsync | goal ≤ 1.0× | sft samples | rsync samples |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    many_row "pull: \`sft get -r\` / \`rsync -rt\`" many_sft_get many_rsync_get
    many_row "pull again, nothing changed" many_sft_get_again many_rsync_get_again
    many_row "push: \`sft send -r --overwrite\` / \`rsync -rt\`" many_sft_send many_rsync_send
    many_row "push again, nothing changed" many_sft_send_again many_rsync_send_again
}

if [[ $ONLY == many ]]; then
    WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sft-bench.XXXXXX")
    SHM=$(mktemp -d /dev/shm/sft-bench.XXXXXX)
    many_run
    many_table
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# (g) On a GlusterFS volume (`scripts/bench.sh gluster`): the 4 KiB GET rows and the big-file rows,
# each served from a local folder (under BENCH_TMPDIR) and from a FUSE mount of a replica-2
# volume whose bricks are on that same disk, by sft-server and by nginx serving the same files.
# Every round takes each row on both storages in turn. The page cache is dropped before every
# big-file sample, so that neither storage is read from memory. Around every sample the CPU
# time of the servers, and on the volume of its FUSE client and bricks, is recorded: where the
# time goes.
GL_CONNS="1 10 100"
declare -A GL_ROOT=() GL_ADDR=() GL_PID=() GL_FOPS=()

drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }

# CPU seconds (user + system) the processes PIDS… have used so far.
cpu_s() {
    local pid ticks=0 t
    for pid in "$@"; do
        t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        ticks=$((ticks + t))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f\n", t / hz }'
}
diff_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", b - a }'; }
pct_of() { awk -v a="$1" -v b="$2" -v w="$3" 'BEGIN { printf "%.0f\n", (b - a) / w * 100 }'; }

# The server processes of SERVER (sft or nginx) on STORAGE: nginx's are its workers.
server_pids() {
    if [[ $1 == sft ]]; then echo "${GL_PID[sft_$2]}"; else pgrep -P "${GL_PID[nginx]}" | tr '\n' ' '; fi
}

gluster_setup() {
    local st ports
    mkdir -p "$WORK/gluster" "$WORK/nginx"
    gv_up "$WORK/gluster" || die "could not make a GlusterFS volume"
    GL_ROOT[local]=$WORK/root
    GL_ROOT[gluster]=$GV_MOUNT/root
    log "writing a $BIG_LABEL file of random bytes to tmpfs and copying it to both roots"
    head -c "${BIG_MIB}M" /dev/urandom >"$SHM/big.bin"
    head -c "$SMALL_BYTES" /dev/urandom >"$SHM/small.bin"
    for st in local gluster; do
        mkdir -p "${GL_ROOT[$st]}/up"
        cp "$SHM/big.bin" "$SHM/small.bin" "${GL_ROOT[$st]}/"
        cmp -s "$SHM/big.bin" "${GL_ROOT[$st]}/big.bin" || die "could not copy the file to ${GL_ROOT[$st]}"
    done
    read -r -a ports <<<"$(free_ports 4)"
    for st in local gluster; do
        "$SFT_SERVER" --host 127.0.0.1 --port "${ports[0]}" --root "${GL_ROOT[$st]}" --log-level warn \
            2>>"$WORK/sft-$st.log" &
        GL_PID[sft_$st]=$!
        PIDS+=($!)
        wait_listen "${ports[0]}" || die "sft-server did not start: $(tail -3 "$WORK/sft-$st.log")"
        GL_ADDR[sft_$st]=127.0.0.1:${ports[0]}
        GL_ADDR[nginx_$st]=127.0.0.1:${ports[1]}
        ports=("${ports[@]:2}")
    done
    nginx_conf "    server { listen ${GL_ADDR[nginx_local]}; root ${GL_ROOT[local]}; }
    server { listen ${GL_ADDR[nginx_gluster]}; root ${GL_ROOT[gluster]}; }"
    nginx -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
    GL_PID[nginx]=$!
    PIDS+=($!)
    wait_listen "${GL_ADDR[nginx_gluster]##*:}" || die "nginx did not start: $(tail -3 "$WORK/nginx/error.log")"
    # Sanity: every server hands out the same bytes.
    for st in local gluster; do
        "$SFT" get -q "${GL_ADDR[sft_$st]}" small.bin "$SHM/check.sft" || die "sft get ($st) failed"
        curl -sf -o "$SHM/check.curl" "http://${GL_ADDR[nginx_$st]}/small.bin" || die "curl ($st) failed"
        cmp -s "$SHM/small.bin" "$SHM/check.sft" && cmp -s "$SHM/small.bin" "$SHM/check.curl" ||
            die "downloaded bytes differ ($st)"
        rm -f "$SHM"/check.*
    done
}

# One big-file sample of WHAT on STORAGE, page cache dropped first: nv (unverified sft GET),
# get (verified sft GET), curl (GET from nginx), all to /dev/null, or send (verified sft SEND from
# tmpfs into up/). Samples: seconds; KEY_srv, KEY_fuse, KEY_bricks: CPU seconds.
gl_bulk() { # KEY STORAGE WHAT
    local key=$1 st=$2 server=sft start secs ok=1 s0 f0 b0 srv
    [[ $3 == curl ]] && server=nginx
    srv=$(server_pids "$server" "$st")
    rm -f "${GL_ROOT[$st]}/up/big.bin"
    drop_caches
    s0=$(cpu_s $srv)
    f0=$(cpu_s "$GV_MOUNT_PID")
    b0=$(cpu_s $GV_BRICK_PIDS)
    start=$EPOCHREALTIME
    case $3 in
        nv) timeout "$T" "$SFT" get --no-verify -q "${GL_ADDR[sft_$st]}" big.bin - >/dev/null ;;
        get) timeout "$T" "$SFT" get -q "${GL_ADDR[sft_$st]}" big.bin - >/dev/null ;;
        curl) timeout "$T" curl -sf -o /dev/null "http://${GL_ADDR[nginx_$st]}/big.bin" ;;
        send) timeout "$T" "$SFT" send -q --overwrite "${GL_ADDR[sft_$st]}" "$SHM/big.bin" up/big.bin &&
            [[ $(file_size "${GL_ROOT[$st]}/up/big.bin") == "$BIG_BYTES" ]] ;;
    esac || ok=0
    secs=$(awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.4f", e - s }')
    if [[ $ok == 1 ]]; then
        add_sample "$key" "$secs"
    else
        add_sample "$key" ERR
    fi
    add_sample "${key}_srv" "$(diff_s "$s0" "$(cpu_s $srv)")"
    if [[ $st == gluster ]]; then
        add_sample "${key}_fuse" "$(diff_s "$f0" "$(cpu_s "$GV_MOUNT_PID")")"
        add_sample "${key}_bricks" "$(diff_s "$b0" "$(cpu_s $GV_BRICK_PIDS)")"
    fi
    log "  $key: $([[ $ok == 1 ]] && echo "${secs}s" || echo failed)"
}

# One load sample (sft-bench, LOAD_S seconds) of SERVER on STORAGE. KEY_srv, KEY_fuse,
# KEY_bricks: % of one core over the sample.
gl_load() { # KEY SERVER STORAGE CONNECTIONS
    local key=$1 srv start wall s0 f0 b0
    srv=$(server_pids "$2" "$3")
    s0=$(cpu_s $srv)
    f0=$(cpu_s "$GV_MOUNT_PID")
    b0=$(cpu_s $GV_BRICK_PIDS)
    start=$EPOCHREALTIME
    if [[ $2 == sft ]]; then
        load_bench "$key" "$4" get "${GL_ADDR[sft_$3]}" small.bin
    else
        load_bench "$key" "$4" http "${GL_ADDR[nginx_$3]}" /small.bin
    fi
    wall=$(awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { print e - s }')
    add_sample "${key}_srv" "$(pct_of "$s0" "$(cpu_s $srv)" "$wall")"
    if [[ $3 == gluster ]]; then
        add_sample "${key}_fuse" "$(pct_of "$f0" "$(cpu_s "$GV_MOUNT_PID")" "$wall")"
        add_sample "${key}_bricks" "$(pct_of "$b0" "$(cpu_s $GV_BRICK_PIDS)" "$wall")"
    fi
}

# Brick operations per 4 KiB GET that SERVER causes on the volume: 1,000 GETs at one connection
# between `gluster volume profile … start` and `… info`, counted on both bricks together (a
# lookup goes to both, a stat to one), as "OPERATION count-per-GET (mean µs at a brick)". Run after the measured rows: profiling
# costs the bricks time.
gl_fops() { # SERVER
    local out
    gv_gluster volume profile "$GV_NAME" start >/dev/null || return 0
    gv_gluster volume profile "$GV_NAME" info clear >/dev/null || true
    if [[ $1 == sft ]]; then
        "$SFT_BENCH" get "${GL_ADDR[sft_gluster]}" small.bin --connections 1 --requests 1000 --json >/dev/null
    else
        "$SFT_BENCH" http "${GL_ADDR[nginx_gluster]}" /small.bin --connections 1 --requests 1000 --json >/dev/null
    fi
    out=$(gv_gluster volume profile "$GV_NAME" info | awk '
        /^Interval/ { on = 1 }
        /Data Written/ { on = 0 }
        on && NF == 9 && $9 ~ /^[A-Z]+$/ {
            if (!($9 in n)) order[++k] = $9
            n[$9] += $8; ns[$9] += $8 * $2 }
        END {
            for (i = 1; i <= k; i++) {
                f = order[i]
                if (n[f] < 10) continue
                printf "%s%s %.2f (%.0f µs)", sep, f, n[f] / 1000, ns[f] / n[f] / 1000; sep = ", "
            } }')
    gv_gluster volume profile "$GV_NAME" stop >/dev/null || true
    GL_FOPS[$1]=$out
    log "  brick operations per GET, $1: $out"
}

gluster_run() {
    local round what st c server
    gluster_setup
    log "$BIG_LABEL rows, page cache dropped before each sample"
    for round in $(seq 1 "$RUNS"); do
        log " round $round/$RUNS"
        for what in nv get curl send; do
            for st in local gluster; do gl_bulk "gl_${what}_$st" "$st" "$what"; done
        done
    done
    for c in $GL_CONNS; do
        log "4 KiB GETs, $c connection(s), ${LOAD_S}s each"
        for round in $(seq 1 "$RUNS"); do
            log " round $round/$RUNS"
            for st in local gluster; do
                for server in sft nginx; do gl_load "gl_${server}_${st}_c$c" "$server" "$st" "$c"; done
            done
        done
    done
    log "brick operations per 4 KiB GET (gluster volume profile)"
    gl_fops sft
    gl_fops nginx
}

gl_lat() { echo "$(median "$1_p50") / $(median "$1_p99")"; }
gl_lat_ratio() { # A_KEY B_KEY: A ÷ B for p50 and p99
    echo "$(times "$(ratio "$(median "$1_p50")" "$(median "$2_p50")")") / $(times "$(ratio "$(median "$1_p99")" "$(median "$2_p99")")")"
}

gluster_tables() {
    local c k what label s l g
    echo "4 KiB GETs: sft-bench, ${LOAD_S} s per sample, medians of $RUNS rounds. Ratios: sft ÷ nginx on each storage; the cost of FUSE is GlusterFS ÷ local for each server."
    echo
    echo "| 4 KiB GETs | local: sft | local: nginx | local: sft ÷ nginx | GlusterFS: sft | GlusterFS: nginx | GlusterFS: sft ÷ nginx | GlusterFS ÷ local: sft | GlusterFS ÷ local: nginx |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for c in $GL_CONNS; do
        k=gl_%s_%s_c$c
        # shellcheck disable=SC2059
        echo "| $c conn., req/s | $(median "$(printf "$k" sft local)") | $(median "$(printf "$k" nginx local)") | $(times "$(ratio "$(median "$(printf "$k" sft local)")" "$(median "$(printf "$k" nginx local)")")") | $(median "$(printf "$k" sft gluster)") | $(median "$(printf "$k" nginx gluster)") | $(times "$(ratio "$(median "$(printf "$k" sft gluster)")" "$(median "$(printf "$k" nginx gluster)")")") | $(times "$(ratio "$(median "$(printf "$k" sft gluster)")" "$(median "$(printf "$k" sft local)")")") | $(times "$(ratio "$(median "$(printf "$k" nginx gluster)")" "$(median "$(printf "$k" nginx local)")")") |"
        # shellcheck disable=SC2059
        echo "| $c conn., p50 / p99 µs | $(gl_lat "$(printf "$k" sft local)") | $(gl_lat "$(printf "$k" nginx local)") | $(gl_lat_ratio "$(printf "$k" sft local)" "$(printf "$k" nginx local)") | $(gl_lat "$(printf "$k" sft gluster)") | $(gl_lat "$(printf "$k" nginx gluster)") | $(gl_lat_ratio "$(printf "$k" sft gluster)" "$(printf "$k" nginx gluster)") | $(gl_lat_ratio "$(printf "$k" sft gluster)" "$(printf "$k" sft local)") | $(gl_lat_ratio "$(printf "$k" nginx gluster)" "$(printf "$k" nginx local)") |"
    done
    echo
    echo "CPU during the 4 KiB GETs, % of one core (medians): the server's processes, and on GlusterFS its FUSE client and bricks."
    echo
    echo "| connections | sft local | sft GlusterFS: server / FUSE client / bricks | nginx local | nginx GlusterFS: server / FUSE client / bricks |"
    echo "| --- | --- | --- | --- | --- |"
    for c in $GL_CONNS; do
        echo "| $c | $(median "gl_sft_local_c${c}_srv") | $(median "gl_sft_gluster_c${c}_srv") / $(median "gl_sft_gluster_c${c}_fuse") / $(median "gl_sft_gluster_c${c}_bricks") | $(median "gl_nginx_local_c${c}_srv") | $(median "gl_nginx_gluster_c${c}_srv") / $(median "gl_nginx_gluster_c${c}_fuse") / $(median "gl_nginx_gluster_c${c}_bricks") |"
    done
    echo
    echo "Brick operations per 4 KiB GET on the volume (1,000 GETs at one connection, both bricks together, \`gluster volume profile\`; mean time at a brick):"
    echo
    echo "- sft: ${GL_FOPS[sft]:-n/a}"
    echo "- nginx: ${GL_FOPS[nginx]:-n/a}"
    echo
    echo "Samples (req/s), local then GlusterFS:"
    echo
    for c in $GL_CONNS; do
        for s in sft nginx; do
            echo "- $c conn., $s: $(samples_of "gl_${s}_local_c$c"); $(samples_of "gl_${s}_gluster_c$c")"
        done
    done
    echo
    echo "$BIG_LABEL, page cache dropped before each sample, medians of $RUNS rounds (s; MiB/s in brackets). CPU: seconds per transfer, medians."
    echo
    echo "| $BIG_LABEL | local | GlusterFS | GlusterFS ÷ local | server CPU s, local / GlusterFS | FUSE client CPU s | bricks CPU s | local samples | GlusterFS samples |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for what in nv get curl send; do
        case $what in
            nv) label="\`sft get --no-verify\` → /dev/null" ;;
            get) label="\`sft get\` (verified) → /dev/null" ;;
            curl) label="nginx + \`curl -o /dev/null\`" ;;
            send) label="\`sft send --overwrite\` (verified), from tmpfs" ;;
        esac
        l=$(median "gl_${what}_local")
        g=$(median "gl_${what}_gluster")
        echo "| $label | $l ($(mib_s "$l")) | $g ($(mib_s "$g")) | $(times "$(ratio "$g" "$l")") | $(median "gl_${what}_local_srv") / $(median "gl_${what}_gluster_srv") | $(median "gl_${what}_gluster_fuse") | $(median "gl_${what}_gluster_bricks") | $(samples_of "gl_${what}_local") | $(samples_of "gl_${what}_gluster") |"
    done
    echo
    echo "Unverified GET, sft ÷ nginx+curl: local $(times "$(ratio "$(median gl_nv_local)" "$(median gl_curl_local)")"), GlusterFS $(times "$(ratio "$(median gl_nv_gluster)" "$(median gl_curl_gluster)")"). nginx takes no uploads here: SEND has no anchor."
}

if [[ $ONLY == gluster ]]; then
    WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sft-bench.XXXXXX")
    SHM=$(mktemp -d /dev/shm/sft-bench.XXXXXX)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    gluster_run
    log "load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
    gluster_tables
    exit 0
fi

# (c) Files: the served folder on disk, destinations on tmpfs.
WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sft-bench.XXXXXX")
SHM=$(mktemp -d /dev/shm/sft-bench.XXXXXX)
DIR=$WORK/root
if [[ -n ${BENCH_ROOT:-} ]]; then
    ROOT_PARENT=$(mktemp -d "$BENCH_ROOT/sft-bench.XXXXXX")
    DIR=$ROOT_PARENT/root
fi
mkdir -p "$DIR" "$WORK/nginx" "$WORK/up"
log "writing a $BIG_LABEL file of random bytes to $DIR"
head -c "${BIG_MIB}M" /dev/urandom >"$DIR/big.bin"
head -c "$SMALL_BYTES" /dev/urandom >"$DIR/small.bin"
[[ $(file_size "$DIR/big.bin") == "$BIG_BYTES" ]] || die "could not write $DIR/big.bin"

# (d) Servers, each on its own free loopback port.
read -r SFT_PORT NGINX_PORT RSYNC_PORT NC_PORT MEM_PORT TLS_PORT NGINX_TLS_PORT <<<"$(free_ports 7)"
SFT_ADDR=127.0.0.1:$SFT_PORT
TLS_ADDR=127.0.0.1:$TLS_PORT
URL=http://127.0.0.1:$NGINX_PORT
TLS_URL=https://127.0.0.1:$NGINX_TLS_PORT

start_sft_server() { # PORT [EXTRA-ARGS…] -> sets SERVER_PID
    local port=$1
    shift
    "$SFT_SERVER" --host 127.0.0.1 --port "$port" --root "$DIR" --log-level warn "$@" \
        2>>"$WORK/sft-server.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_listen "$port" || die "sft-server did not start (see its log: $(tail -3 "$WORK/sft-server.log"))"
}
start_sft_server "$SFT_PORT"
SFT_PID=$SERVER_PID
# The same files over TLS, with a self-signed certificate that nginx serves too. The client pins
# it by its SHA-256 (what sft-server logs at start-up), remembering it in a config folder of ours.
start_sft_server "$TLS_PORT" --tls-self-signed "$WORK/tls"
# The server listens before it writes its certificate: wait for the file (at most 10 s).
for _ in $(seq 1 200); do
    [[ -s $WORK/tls/cert.pem ]] && break
    sleep 0.05
done
TLS_FP=$(openssl x509 -in "$WORK/tls/cert.pem" -outform DER | sha256sum | cut -d' ' -f1)
export XDG_CONFIG_HOME=$WORK/config

nginx_conf "    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $DIR;
    }
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        ssl_certificate $WORK/tls/cert.pem;
        ssl_certificate_key $WORK/tls/key.pem;
        root $DIR;
        # Uploads for the TLS SEND row (curl -T): PUT into up/.
        location /up/ {
            dav_methods PUT;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }
    }"
nginx -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
wait_listen "$NGINX_PORT" || die "nginx did not start: $(tail -3 "$WORK/nginx/error.log")"

cat >"$WORK/rsyncd.conf" <<EOF
pid file = $WORK/rsyncd.pid
log file = $WORK/rsyncd.log
use chroot = no
[mod]
    path = $DIR
    read only = yes
    uid = $(id -u)
    gid = $(id -g)
EOF
rsync --daemon --no-detach --config="$WORK/rsyncd.conf" --address=127.0.0.1 --port="$RSYNC_PORT" &
PIDS+=($!)
wait_listen "$RSYNC_PORT" || die "rsync daemon did not start"

# Sanity: every server hands out the same bytes.
"$SFT" get -q "$SFT_ADDR" small.bin "$SHM/check.sft" || die "sft get failed"
curl -sf -o "$SHM/check.curl" "$URL/small.bin" || die "curl from nginx failed"
"$SFT" get -q --fingerprint "$TLS_FP" "$TLS_ADDR" small.bin "$SHM/check.tls" || die "sft get over TLS failed"
curl -sf --cacert "$WORK/tls/cert.pem" -o "$SHM/check.https" "$TLS_URL/small.bin" ||
    die "curl from nginx over TLS failed"
if ! cmp -s "$DIR/small.bin" "$SHM/check.sft" || ! cmp -s "$DIR/small.bin" "$SHM/check.curl" ||
    ! cmp -s "$DIR/small.bin" "$SHM/check.tls" || ! cmp -s "$DIR/small.bin" "$SHM/check.https"; then
    die "downloaded bytes differ"
fi
rm -f "$SHM"/check.*
cat "$DIR/big.bin" >/dev/null # every tool reads it from the page cache

# (Help text is captured first: `grep -q` closing the pipe early would make sft fail.)
NO_VERIFY=0
NO_VERIFY_SEND=0
HELP=$("$SFT" get --help 2>&1 || true)
[[ $HELP == *--no-verify* ]] && NO_VERIFY=1
HELP=$("$SFT" send --help 2>&1 || true)
[[ $HELP == *--no-verify* ]] && NO_VERIFY_SEND=1
[[ $NO_VERIFY == 1 ]] || log "this sft client has no --no-verify: unverified rows are n/a"

# ---------------------------------------------------------------------------------------------
# (e) Workloads. Each tool is run_X (timed), with optional pre_X / post_X.

# GET big file to /dev/null.
run_sft_null_nv() { timeout "$T" "$SFT" get --no-verify -q "$SFT_ADDR" big.bin - >/dev/null; }
run_sft_null() { timeout "$T" "$SFT" get -q "$SFT_ADDR" big.bin - >/dev/null; }
run_curl_null() { timeout "$T" curl -sf -o /dev/null "$URL/big.bin"; }

# GET big file into tmpfs.
pre_sft_shm() { rm -f "$SHM/x"; }
run_sft_shm() { timeout "$T" "$SFT" get -q "$SFT_ADDR" big.bin "$SHM/x"; }
post_sft_shm() { local n; n=$(file_size "$SHM/x"); rm -f "$SHM/x"; [[ $n == "$BIG_BYTES" ]]; }
pre_sft_shm_nv() { rm -f "$SHM/x"; }
run_sft_shm_nv() { timeout "$T" "$SFT" get --no-verify -q "$SFT_ADDR" big.bin "$SHM/x"; }
post_sft_shm_nv() { post_sft_shm; }
pre_curl_shm() { rm -f "$SHM/y"; }
run_curl_shm() { timeout "$T" curl -sf -o "$SHM/y" "$URL/big.bin"; }
post_curl_shm() { local n; n=$(file_size "$SHM/y"); rm -f "$SHM/y"; [[ $n == "$BIG_BYTES" ]]; }
pre_rsync_shm() { rm -f "$SHM/z"; }
run_rsync_shm() { timeout "$T" rsync -q "rsync://127.0.0.1:$RSYNC_PORT/mod/big.bin" "$SHM/z"; }
post_rsync_shm() { local n; n=$(file_size "$SHM/z"); rm -f "$SHM/z"; [[ $n == "$BIG_BYTES" ]]; }

# SEND big file to the disk the server serves from.
pre_sft_send() { rm -f "$DIR/up/big.bin"; }
run_sft_send() { timeout "$T" "$SFT" send -q --overwrite "$SFT_ADDR" "$DIR/big.bin" up/big.bin; }
post_sft_send() {
    local n
    n=$(file_size "$DIR/up/big.bin")
    rm -f "$DIR/up/big.bin"
    [[ $n == "$BIG_BYTES" ]]
}
pre_sft_send_nv() { pre_sft_send; }
run_sft_send_nv() {
    timeout "$T" "$SFT" send --no-verify -q --overwrite "$SFT_ADDR" "$DIR/big.bin" up/big.bin
}
post_sft_send_nv() { post_sft_send; }
NC_LISTENER=""
pre_nc_send() {
    rm -f "$DIR/nc.out"
    timeout "$T" nc -l 127.0.0.1 "$NC_PORT" >"$DIR/nc.out" </dev/null &
    NC_LISTENER=$!
    PIDS+=("$NC_LISTENER")
    wait_listen "$NC_PORT"
}
run_nc_send() {
    timeout "$T" nc -N 127.0.0.1 "$NC_PORT" <"$DIR/big.bin" >/dev/null && wait "$NC_LISTENER"
}
post_nc_send() {
    local n
    stop_pid "$NC_LISTENER"
    n=$(file_size "$DIR/nc.out")
    rm -f "$DIR/nc.out"
    [[ $n == "$BIG_BYTES" ]]
}

# TLS: verified GET into tmpfs and SEND, sft pinning the certificate, curl trusting it as a CA.
pre_tls_sft_get() { rm -f "$SHM/x"; }
run_tls_sft_get() { timeout "$T" "$SFT" get -q --fingerprint "$TLS_FP" "$TLS_ADDR" big.bin "$SHM/x"; }
post_tls_sft_get() { post_sft_shm; }
pre_tls_curl_get() { rm -f "$SHM/y"; }
run_tls_curl_get() { timeout "$T" curl -sf --cacert "$WORK/tls/cert.pem" -o "$SHM/y" "$TLS_URL/big.bin"; }
post_tls_curl_get() { post_curl_shm; }
pre_tls_sft_send() { pre_sft_send; }
run_tls_sft_send() {
    timeout "$T" "$SFT" send -q --overwrite --fingerprint "$TLS_FP" "$TLS_ADDR" "$DIR/big.bin" up/big.bin
}
post_tls_sft_send() { post_sft_send; }
pre_tls_curl_send() { rm -f "$DIR/up/big.bin"; }
run_tls_curl_send() {
    timeout "$T" curl -sf --cacert "$WORK/tls/cert.pem" -T "$DIR/big.bin" "$TLS_URL/up/big.bin" >/dev/null
}
post_tls_curl_send() { post_sft_send; }

# wrk's percentiles in microseconds (its --latency table rounds them and stops at 99%).
write_pct_lua() {
    cat >"$WORK/pct.lua" <<'EOF'
done = function(summary, latency, requests)
    io.write(string.format("percentiles_us %d %d %d\n",
        latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
EOF
}
load_wrk() { # KEY CONNECTIONS
    local out threads=2 rps p50 p99 p999 errs
    (($2 < threads)) && threads=$2
    if out=$(timeout $((LOAD_S + 60)) wrk -t"$threads" -c"$2" -d"${LOAD_S}s" -s "$WORK/pct.lua" "$URL/small.bin"); then
        rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
        read -r p50 p99 p999 < <(awk '$1 == "percentiles_us" { print $2, $3, $4 }' <<<"$out")
        errs=$(awk '/Socket errors:/ { gsub(",", ""); s += $4 + $6 + $8 + $10 }
                    /Non-2xx/ { s += $NF } END { print s + 0 }' <<<"$out")
        add_sample "$1" "$(round "${rps:-ERR}")"
        add_sample "$1_p50" "$p50"
        add_sample "$1_p99" "$p99"
        add_sample "$1_p999" "$p999"
        add_sample "$1_err" "$errs"
        log "  $1: $rps req/s, p50 $p50 µs, p99 $p99 µs, p99.9 $p999 µs, errors $errs"
    else
        log "  $1: wrk failed"
        add_sample "$1" ERR
    fi
}
run_load() { # CONNECTIONS
    local round
    for round in $(seq 1 "$RUNS"); do
        log " round $round/$RUNS"
        load_bench "sftb_c$1" "$1" get "$SFT_ADDR" small.bin
        load_bench "nghb_c$1" "$1" http "127.0.0.1:$NGINX_PORT" /small.bin
        load_wrk "wrk_c$1" "$1"
    done
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "GET $BIG_LABEL to /dev/null"
if [[ $NO_VERIFY == 1 ]]; then
    alternate sft_null_nv curl_null sft_null
else
    alternate sft_null curl_null
fi

log "GET $BIG_LABEL into tmpfs"
if [[ $NO_VERIFY == 1 ]]; then
    alternate sft_shm curl_shm sft_shm_nv rsync_shm
else
    alternate sft_shm curl_shm rsync_shm
fi

log "SEND $BIG_LABEL"
if [[ $NO_VERIFY_SEND == 1 ]]; then
    alternate sft_send nc_send sft_send_nv
else
    alternate sft_send nc_send
fi

log "TLS: verified GET $BIG_LABEL into tmpfs"
alternate tls_sft_get tls_curl_get
log "TLS: SEND $BIG_LABEL"
alternate tls_sft_send tls_curl_send

write_pct_lua
for c in 1 10 100 1000; do
    log "4 KiB GETs, $c connection(s), ${LOAD_S}s each"
    run_load "$c"
done

many_run

# Memory: a fresh server, its peak RSS around one big GET, then its RSS with idle connections.
log "server memory"
stop_pid "$SFT_PID"
start_sft_server "$MEM_PORT"
MEM_PID=$SERVER_PID
MEM_ADDR=127.0.0.1:$MEM_PORT
HWM_START=$(proc_kb "$MEM_PID" VmHWM)
timeout "$T" "$SFT" get -q "$MEM_ADDR" big.bin - >/dev/null || die "memory: GET failed"
HWM_AFTER=$(proc_kb "$MEM_PID" VmHWM)
RSS_IDLE0=$(proc_kb "$MEM_PID" VmRSS)
python3 - "$MEM_PORT" "$IDLE_CONNS" >"$WORK/idle.out" <<'EOF' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
print("ready", flush=True)
time.sleep(60)  # bounded: the script reads the server's memory, then stops this process
EOF
IDLE_PID=$!
PIDS+=("$IDLE_PID")
for _ in $(seq 1 200); do
    grep -q ready "$WORK/idle.out" 2>/dev/null && break
    kill -0 "$IDLE_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q ready "$WORK/idle.out" || die "memory: could not open $IDLE_CONNS connections"
sleep 1 # let the server accept and set up every session
RSS_IDLE1=$(proc_kb "$MEM_PID" VmRSS)
stop_pid "$IDLE_PID"
PEAK_MIB=$(awk -v k="$HWM_AFTER" 'BEGIN { printf "%.1f", k / 1024 }')
PER_CONN_KIB=$(awk -v a="$RSS_IDLE0" -v b="$RSS_IDLE1" -v n="$IDLE_CONNS" 'BEGIN { printf "%.1f", (b - a) / n }')
log "  peak RSS ${PEAK_MIB} MiB (at start $((HWM_START / 1024)) MiB); ${PER_CONN_KIB} KiB per idle connection"

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

# A table row for a timed tool: LABEL KEY SFT_KEY (ratio is SFT median / this median).
time_row() {
    local m
    m=$(median "$2")
    if [[ -z ${3:-} ]]; then
        echo "| $1 | $m | $(mib_s "$m") | — | $(samples_of "$2") |"
    else
        echo "| $1 | $m | $(mib_s "$m") | $(ratio "$(median "$3")" "$m") | $(samples_of "$2") |"
    fi
}
load_row() { # LABEL KEY [SFT_KEY]
    local k=$2 r="—"
    [[ -n ${3:-} ]] && r=$(ratio "$(median "$3")" "$(median "$k")")
    echo "| $1 | $(median "$k") | $(median "${k}_p50") | $(median "${k}_p99") | $(median "${k}_p999") | $(samples_of "${k}_err") | $r | $(samples_of "$k") |"
}
load_rows() { # CONNECTIONS
    load_row "sft-bench → sft-server" "sftb_c$1"
    load_row "sft-bench \`http\` → nginx" "nghb_c$1" "sftb_c$1"
    load_row "wrk → nginx" "wrk_c$1" "sftb_c$1"
}
pcts() { echo "$(median "$1_p50") / $(median "$1_p99") / $(median "$1_p999")"; }
tail_rows() {
    local c
    for c in 1 10 100 1000; do
        echo "| $c | $(pcts "sftb_c$c") | $(pcts "nghb_c$c") | $(pcts "wrk_c$c") | $(times "$(ratio "$(median "sftb_c${c}_p99")" "$(median "nghb_c${c}_p99")")") |"
    done
}

R_GET_NULL=$(ratio "$(median sft_null_nv)" "$(median curl_null)")
R_GET_NULL_V=$(ratio "$(median sft_null)" "$(median curl_null)")
R_SHM_CURL=$(ratio "$(median sft_shm)" "$(median curl_shm)")
R_SHM_RSYNC=$(ratio "$(median sft_shm)" "$(median rsync_shm)")
R_SEND=$(ratio "$(median sft_send)" "$(median nc_send)")
R_C1=$(ratio "$(median sftb_c1)" "$(median nghb_c1)")
R_C100=$(ratio "$(median sftb_c100)" "$(median nghb_c100)")
R_C1_WRK=$(ratio "$(median sftb_c1)" "$(median wrk_c1)")
R_P99_100=$(ratio "$(median sftb_c100_p99)" "$(median nghb_c100_p99)")
R_P99_100_WRK=$(ratio "$(median sftb_c100_p99)" "$(median wrk_c100_p99)")
R_TLS_GET=$(ratio "$(median tls_sft_get)" "$(median tls_curl_get)")
R_TLS_SEND=$(ratio "$(median tls_sft_send)" "$(median tls_curl_send)")
R_TLS_COST=$(ratio "$(median tls_sft_get)" "$(median sft_shm)")
MEM_OK=$(awk -v p="$PEAK_MIB" 'BEGIN { print (p + 0 <= 32) ? "**met**" : "**not met**" }')

CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
[[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]] && DIRTY=" (with uncommitted changes)"
NOTE=""
[[ $QUICK == 1 ]] && NOTE="
> **Quick run**: a $BIG_LABEL file, $RUNS runs per tool and ${LOAD_S} s load tests. The targets
> are stated for the full run (\`scripts/bench.sh\`: 1 GiB, 5 runs, 10 s); treat these numbers as a
> smoke test of the script, not as the measurement."

OUT=$REPO/BENCHMARKS.md
cat >"$OUT.tmp" <<EOF
# Benchmarks

Generated by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), mode: $MODE. Every tool runs on
this one machine over loopback (127.0.0.1), serving the same files from the page cache; tools take
turns (sft, competitor, sft, …) $RUNS times and the tables give the median and every sample.
Times are wall-clock seconds for the whole command (lower is better); req/s are higher-is-better.
Ratios are **sft ÷ competitor**.
$NOTE

## Machine

| | |
| --- | --- |
| CPU | $CPU, $(nproc) cores |
| memory | $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) |
| kernel | $(uname -sr) |
| load average (1, 5, 15 min) | $LOAD_BEFORE before the runs, $LOAD_AFTER after (anything above 0 is other work sharing the cores) |
| sft | commit $COMMIT$DIRTY, $(rustc --version 2>/dev/null || echo rustc) |
| nginx | $(nginx -v 2>&1 | sed 's/^nginx version: //') |
| rsync | $(rsync --version | head -1) |
| curl | $(curl --version | head -1) |
| wrk | $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2 || true) |
| nc | netcat-openbsd $(dpkg-query -W -f '${Version}' netcat-openbsd 2>/dev/null || echo '?') |
| files | $BIG_LABEL of random bytes and a 4 KiB file on $(df --output=fstype "$DIR" | tail -1) (a temporary folder under $(dirname "$(dirname "$DIR")")); tmpfs destination /dev/shm |

## Targets

| target | measured | goal | status |
| --- | --- | --- | --- |
| unverified GET $BIG_LABEL → /dev/null vs nginx+curl (time) | $(times "$R_GET_NULL") | ≤ 1.00× | $(verdict "$R_GET_NULL" 1.0 le) |
| verified GET $BIG_LABEL → tmpfs vs nginx+curl → tmpfs (time) | $(times "$R_SHM_CURL") | ≤ 1.05× | $(verdict "$R_SHM_CURL" 1.05 le) |
| verified GET $BIG_LABEL → tmpfs vs rsync → tmpfs (time) | $(times "$R_SHM_RSYNC") | ≤ 0.90× | $(verdict "$R_SHM_RSYNC" 0.9 le) |
| SEND $BIG_LABEL vs nc pipe into a file (time) | $(times "$R_SEND") | ≤ 1.10× | $(verdict "$R_SEND" 1.1 le) |
| TLS: verified GET $BIG_LABEL → tmpfs vs nginx HTTPS + curl (time) | $(times "$R_TLS_GET") | ≤ 1.10× | $(verdict "$R_TLS_GET" 1.1 le) |
| TLS: SEND $BIG_LABEL vs curl PUT to nginx HTTPS (time) | $(times "$R_TLS_SEND") | recorded | — |
| 4 KiB GETs, 1 connection, vs nginx (req/s, same load loop) | $(times "$R_C1") (wrk: $(times "$R_C1_WRK")) | ≥ 1.00× | $(verdict "$R_C1" 1.0 ge) |
| 4 KiB GETs, 100 connections, vs nginx (req/s, same load loop) | $(times "$R_C100") | ≥ 1.00× | $(verdict "$R_C100" 1.0 ge) |
| 4 KiB GETs, 100 connections, p99 vs nginx's p99 (same load loop) | $(times "$R_P99_100") (wrk: $(times "$R_P99_100_WRK")) | ≤ 1.00× | $(verdict "$R_P99_100" 1.0 le) |
| server peak RSS while serving $BIG_LABEL | $PEAK_MIB MiB | ≤ 32 MiB | $MEM_OK |

## GET $BIG_LABEL → /dev/null

| tool | median s | MiB/s | sft ÷ this | samples (s) |
| --- | --- | --- | --- | --- |
$(time_row "\`sft get --no-verify\` (unverified)" sft_null_nv)
$(time_row "\`sft get\` (verified)" sft_null)
$(time_row "nginx + \`curl -o /dev/null\`" curl_null sft_null_nv)

Verified \`sft get\` ÷ curl: $(times "$R_GET_NULL_V").

## GET $BIG_LABEL → file on tmpfs

| tool | median s | MiB/s | sft ÷ this | samples (s) |
| --- | --- | --- | --- | --- |
$(time_row "\`sft get\` (verified)" sft_shm)
$(time_row "\`sft get --no-verify\`" sft_shm_nv)
$(time_row "nginx + \`curl -o\`" curl_shm sft_shm)
$(time_row "rsync daemon → \`rsync\`" rsync_shm sft_shm)

## SEND $BIG_LABEL → file on the served disk

| tool | median s | MiB/s | sft ÷ this | samples (s) |
| --- | --- | --- | --- | --- |
$(time_row "\`sft send --overwrite\` (verified)" sft_send)
$(time_row "\`sft send --overwrite --no-verify\`" sft_send_nv)
$(time_row "\`nc -N\` → \`nc -l > file\`" nc_send sft_send)

## TLS: $BIG_LABEL, sft pinning a self-signed certificate, nginx serving the same one

| tool | median s | MiB/s | sft ÷ this | samples (s) |
| --- | --- | --- | --- | --- |
$(time_row "\`sft get --fingerprint\` (verified) → tmpfs" tls_sft_get)
$(time_row "nginx HTTPS + \`curl --cacert -o\` → tmpfs" tls_curl_get tls_sft_get)
$(time_row "\`sft send --fingerprint --overwrite\` (verified)" tls_sft_send)
$(time_row "\`curl --cacert -T\` → nginx HTTPS PUT" tls_curl_send tls_sft_send)

What TLS costs sft: its verified GET into tmpfs takes $(times "$R_TLS_COST") the time over TLS that it takes
in plaintext (above); sendfile(2) cannot be used under TLS, so every byte is encrypted and copied.

## Tail latency: 4 KiB GETs, p50 / p99 / p99.9 in µs

Every server is measured by the same loop (sft-bench, one blocking thread per connection, each
issuing its next request when the last reply is in; its \`http\` mode for nginx); wrk's figures for
nginx check that loop against an independent generator.

| connections | sft-server (sft-bench) | nginx (sft-bench \`http\`) | nginx (wrk) | sft p99 ÷ nginx p99 (same loop) |
| --- | --- | --- | --- | --- |
$(tail_rows)

## 4 KiB GETs, 1 connection, ${LOAD_S} s

| tool | median req/s | p50 µs | p99 µs | p99.9 µs | errors | sft ÷ this (req/s) | samples (req/s) |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(load_rows 1)

## 4 KiB GETs, 10 connections, ${LOAD_S} s

| tool | median req/s | p50 µs | p99 µs | p99.9 µs | errors | sft ÷ this (req/s) | samples (req/s) |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(load_rows 10)

## 4 KiB GETs, 100 connections, ${LOAD_S} s

| tool | median req/s | p50 µs | p99 µs | p99.9 µs | errors | sft ÷ this (req/s) | samples (req/s) |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(load_rows 100)

## 4 KiB GETs, 1000 concurrent clients, ${LOAD_S} s

| tool | median req/s | p50 µs | p99 µs | p99.9 µs | errors | sft ÷ this (req/s) | samples (req/s) |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(load_rows 1000)

The load generators share the machine's $(nproc) cores with the server they load, so a server that
spends less CPU per request leaves more to its clients.

## Many small files

$(many_table)

## Server memory

| measurement | value |
| --- | --- |
| fresh sft-server, VmHWM at start | $(awk -v k="$HWM_START" 'BEGIN { printf "%.1f", k / 1024 }') MiB |
| VmHWM after one $BIG_LABEL GET | $PEAK_MIB MiB |
| VmRSS with $IDLE_CONNS idle connections, per connection | $PER_CONN_KIB KiB (from $((RSS_IDLE0 / 1024)) to $((RSS_IDLE1 / 1024)) MiB) |

## What limits each target

These are the limits measured while tuning (with \`perf record\`, \`strace -c\` and \`time\`'s user
and system seconds), not guesses. On this shared two-core machine, single transfer times vary
±20% from run to run (see the samples), so a ratio near 1.0 can flip between met and not met
from one run to the next.

- **Verified GET into tmpfs** (against curl and rsync). All three tools are bound by tmpfs's write
  path, which allocates each page and copies into it: about 1 GB/s here. rsync therefore runs as
  fast as curl into tmpfs on this machine, so "≤ 0.9× rsync" means beating curl by 10% into the
  same tmpfs, and the write path leaves no room for that. sft also hashes every byte (BLAKE3,
  about 0.35 s of CPU per GiB). It keeps up anyway: while the connection's task receives the
  next 256 KiB block, short tasks on the blocking pool hash and write the earlier ones, in order
  (no pool thread ever waits on the network), and it receives in 64 KiB reads (256 KiB reads cost
  twice the kernel time per byte).
- **SEND against an nc pipe.** Both ends hash, which is about 0.7 s of CPU per GiB that nc never
  spends, on the same two cores that run both ends and the served disk's writeback. The client
  sends with \`sendfile(2)\` while a task hashes the file, then checks that the file is still the
  version it opened (an \`fstat\`) before it sends the hash; the server receives blocks while
  earlier ones (up to four behind) are hashed and written, in order, by short tasks. Run to run, the verified ratio
  moves between about 0.9× and 1.35× nc on this machine; the \`--no-verify\` row shows the
  transport alone.
- **TLS.** Under TLS every byte is encrypted and copied through the process (no \`sendfile(2)\`).
  Against nginx and curl on the same certificate sft is faster into tmpfs (it receives while
  short pool tasks hash and write the earlier blocks); the plaintext rows above show what TLS
  adds.
- **4 KiB GETs: the tail, and what fairness costs.** A client that sends its next request as soon
  as a reply lands (on the other core, the kernel lets it preempt the server's thread) used to
  find its session ready every time: that session kept its worker thread, its client got 12 µs
  answers, and every other connection on the thread waited. At 100 connections the median was
  13 µs, p99 29 ms and p99.9 97 ms, at more requests per second than nginx. Now a session whose
  next request is already there yields to the others, and after eight in a row waits for the
  reactor's next round (SECURITY.md, "Turns"); the tail has nginx's shape (p99 about twice the
  median). What is left is throughput: per request the server spends about 16 µs of CPU where
  nginx spends 13 µs (\`perf stat -e task-clock\` on both under the same load), in wake-ups between
  the runtime's worker threads (one of them polls epoll while the others park on a futex) and in
  one more \`stat\` per GET (the sandbox refuses a FIFO or a device from its metadata, before any
  open). On two cores shared with the load generator, fewer requests per second means a longer
  queue at 100 connections and a p99 higher in proportion. Closing that gap needs a thread per
  core with an epoll of its own, which async-std's runtime does not offer.
- **The load generators.** sft-bench's \`http\` mode and wrk agree on nginx's requests per second and
  median; wrk's p99 is higher because each of its two threads serves many connections, so its
  latencies include its own queueing. Ratios of tail latency therefore compare like with like
  (sft-bench against both servers). At 1 connection the result also depends on whether the kernel
  runs the client and the server on one core or two: nginx's samples range widely for that
  reason.

## Reproduce

\`\`\`sh
scripts/bench.sh                  # 1 GiB, 5 runs per tool, 10 s load tests
BENCH_QUICK=1 scripts/bench.sh    # 256 MiB, 3 runs, 3 s load tests
BENCH_RUNS=9 scripts/bench.sh     # more runs
scripts/bench.sh gluster          # 4 KiB GETs and 1 GiB, local folder vs a GlusterFS mount (root)
\`\`\`
EOF
# A section measured by hand, build against build (not by this script), is carried over from the
# file this one replaces.
if [[ -f $OUT ]]; then
    sed -n '/^## Cost of running file-system calls off the executor/,$p' "$OUT" | sed '1s/^/\n/' >>"$OUT.tmp"
fi
mv "$OUT.tmp" "$OUT"
log "wrote $OUT"
