#!/usr/bin/env bash
# Folders over a long link: `sft get -r`, `rsync -r rsync://` and curl (from nginx) fetch the
# same folder of 1,000 files of 16 KiB (random data) through `sft-bench relay`, which delays
# every byte by half the round-trip time each way and paces each direction to a rate shared by
# all connections. Alternating rounds; prints a Markdown table of medians and sft ÷ rsync.
#
#   scripts/bench-link.sh [BASE_BIN_DIR]
#
# BASE_BIN_DIR, if given, holds the release `sft` of another build (the one before a change),
# measured in the same rounds as this checkout's. This checkout's release binaries are built
# unless BENCH_SKIP_BUILD=1; BENCH_NEW_DIR=DIR takes `sft`, `sft-server` and `sft-bench` from DIR
# instead.
#
#   BENCH_RUNS=3                rounds per link (default 3)
#   BENCH_LINKS="50:100 200:20" links as RTT_MS:MBIT (default both of these)
#   BENCH_FILES=1000 BENCH_KIB=16
#
# Needs rsync, nginx and curl (installed with apt-get when missing and run as root) and
# python3. Only 127.0.0.1 is used; everything started is stopped, everything created removed.
set -Eeuo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-3}
LINKS=${BENCH_LINKS:-"50:100 200:20"}
FILES=${BENCH_FILES:-1000}
KIB=${BENCH_KIB:-16}
T=600
if [[ -n ${BENCH_NEW_DIR:-} ]]; then
    NEW=$(cd "$BENCH_NEW_DIR" && pwd)
else
    NEW=${CARGO_TARGET_DIR:-$PWD/target}/release
    [[ ${BENCH_SKIP_BUILD:-0} == 1 ]] || cargo build --release --quiet -p sft-server -p sft-client -p sft-bench
fi
BASE=
[[ $# -ge 1 ]] && BASE=$(cd "$1" && pwd)

log() { printf '[bench-link %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
missing=()
for tool in rsync nginx curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing: ${missing[*]} (install them, or run as root)"
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PIDS=()
WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sft-link.XXXXXX")
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

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
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

log "making $FILES files of $KIB KiB"
mkdir -p "$WORK/root/folder" "$WORK/nginx" "$WORK/out"
python3 - "$WORK/root/folder" "$FILES" "$KIB" <<'PY'
import os, sys
root, files, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    with open(os.path.join(root, f"f{i:04}.bin"), "wb") as out:
        out.write(os.urandom(kib * 1024))
PY
head -c $((64 << 20)) /dev/urandom >"$WORK/root/big.bin"

SFT_PORT=$(free_port)
"$NEW/sft-server" --host 127.0.0.1 --port "$SFT_PORT" --root "$WORK/root" --log-level warn \
    2>>"$WORK/sft-server.log" &
PIDS+=($!)
wait_listen "$SFT_PORT" || die "sft-server did not start"

RSYNC_PORT=$(free_port)
cat >"$WORK/rsyncd.conf" <<CONF
pid file = $WORK/rsyncd.pid
log file = $WORK/rsyncd.log
use chroot = no
[data]
    path = $WORK/root
    read only = yes
    uid = $(id -u)
    gid = $(id -g)
CONF
rsync --daemon --no-detach --config="$WORK/rsyncd.conf" --address=127.0.0.1 --port="$RSYNC_PORT" &
PIDS+=($!)
wait_listen "$RSYNC_PORT" || die "rsync daemon did not start"

NGINX_PORT=$(free_port)
NGINX_USER=
[[ $(id -u) == 0 ]] && NGINX_USER="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
$NGINX_USER
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server { listen 127.0.0.1:$NGINX_PORT; root $WORK/root; }
}
EOF
nginx -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
wait_listen "$NGINX_PORT" || die "nginx did not start"

# An echo server for the round-trip check.
ECHO_PORT=$(free_port)
python3 - "$ECHO_PORT" <<'PY' &
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(16)
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (d := c.recv(65536)):
        c.sendall(d)
while True:
    threading.Thread(target=echo, args=(srv.accept()[0],), daemon=True).start()
PY
PIDS+=($!)
wait_listen "$ECHO_PORT" || die "echo server did not start"

# Round trips through a relay: 20 one-byte ping-pongs over one connection, median in ms.
ping_ms() {
    python3 - "$1" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for _ in range(20):
    t = time.perf_counter(); s.sendall(b"x"); s.recv(1); times.append(time.perf_counter() - t)
times.sort(); print(f"{times[10] * 1000:.1f}")
PY
}

# Client runs, each into a fresh folder; each prints nothing and fails on any failure.
run_sft() {
    rm -rf "$WORK/out/sft"
    timeout "$T" "$1/sft" get -q -r "127.0.0.1:$R_SFT" folder "$WORK/out/sft"
    [[ $(find "$WORK/out/sft" -type f | wc -l) == "$FILES" ]]
}
run_rsync() {
    rm -rf "$WORK/out/rsync"
    timeout "$T" rsync -r "rsync://127.0.0.1:$R_RSYNC/data/folder/" "$WORK/out/rsync/"
    [[ $(find "$WORK/out/rsync" -type f | wc -l) == "$FILES" ]]
}
run_curl() {
    rm -rf "$WORK/out/curl"
    mkdir -p "$WORK/out/curl"
    timeout "$T" curl -sf --no-progress-meter --parallel --parallel-max 64 --config "$WORK/curl.list"
    [[ $(find "$WORK/out/curl" -type f | wc -l) == "$FILES" ]]
}
for f in "$WORK/root/folder"/*; do
    name=${f##*/}
    printf 'url = "http://127.0.0.1:NGINX/folder/%s"\noutput = "%s/out/curl/%s"\n' "$name" "$WORK" "$name"
done >"$WORK/curl.list.in"

ROWS=()
for link in $LINKS; do
    rtt=${link%%:*}
    mbit=${link##*:}
    delay=$((rtt / 2))
    # Starts a relay to port $1 over this link; its port goes to RELAY_PORT.
    relay() {
        RELAY_PORT=$(free_port)
        "$NEW/sft-bench" relay --listen "127.0.0.1:$RELAY_PORT" --to "127.0.0.1:$1" \
            --delay-ms "$delay" --rate-mbit "$mbit" >/dev/null 2>>"$WORK/relay.log" &
        RELAYS+=($!)
        PIDS+=($!)
        wait_listen "$RELAY_PORT" || die "relay did not start"
    }
    RELAYS=()
    relay "$SFT_PORT"; R_SFT=$RELAY_PORT
    relay "$RSYNC_PORT"; R_RSYNC=$RELAY_PORT
    relay "$NGINX_PORT"; R_NGINX=$RELAY_PORT
    relay "$ECHO_PORT"; R_ECHO=$RELAY_PORT
    sed "s/NGINX/$R_NGINX/" "$WORK/curl.list.in" >"$WORK/curl.list"
    measured_rtt=$(ping_ms "$R_ECHO")
    speed=$(curl -sf -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$R_NGINX/big.bin")
    ceiling=$(awk -v s="$speed" 'BEGIN { printf "%.1f", s * 8 / 1e6 }')
    log "link $rtt ms / $mbit Mbit/s: measured round trip $measured_rtt ms, one 64 MiB curl $ceiling Mbit/s"
    : >"$WORK/t.new" >"$WORK/t.base" >"$WORK/t.rsync" >"$WORK/t.curl"
    for round in $(seq 1 "$RUNS"); do
        tools=(new rsync curl)
        [[ -n $BASE ]] && tools=(base new rsync curl)
        for tool in "${tools[@]}"; do
            start=$(now)
            case $tool in
                new) run_sft "$NEW" ;;
                base) run_sft "$BASE" ;;
                rsync) run_rsync ;;
                curl) run_curl ;;
            esac || die "$tool failed"
            end=$(now)
            awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }' >>"$WORK/t.$tool"
        done
        log "round $round: $(for t in "${tools[@]}"; do printf '%s %s s  ' "$t" "$(tail -1 "$WORK/t.$t")"; done)"
    done
    m_new=$(median <"$WORK/t.new")
    m_rsync=$(median <"$WORK/t.rsync")
    m_curl=$(median <"$WORK/t.curl")
    ratio=$(awk -v a="$m_new" -v b="$m_rsync" 'BEGIN { printf "%.2f", a / b }')
    if [[ -n $BASE ]]; then
        m_base=$(median <"$WORK/t.base")
        base_ratio=$(awk -v a="$m_base" -v b="$m_rsync" 'BEGIN { printf "%.2f", a / b }')
        ROWS+=("| $rtt ms / $mbit Mbit/s ($measured_rtt ms, $ceiling Mbit/s) | $m_base s (${base_ratio}×) | $m_new s (${ratio}×) | $m_rsync s | $m_curl s |")
    else
        ROWS+=("| $rtt ms / $mbit Mbit/s ($measured_rtt ms, $ceiling Mbit/s) | $m_new s (${ratio}×) | $m_rsync s | $m_curl s |")
    fi
    for pid in "${RELAYS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
done

echo
echo "$FILES files of $KIB KiB, medians of $RUNS alternating rounds; (×) is the time ÷ rsync's."
echo
if [[ -n $BASE ]]; then
    echo "| link: RTT / rate (measured RTT, one-stream ceiling) | sft get -r, before | sft get -r | rsync -r | curl --parallel-max 64 |"
    echo "| --- | --- | --- | --- | --- |"
else
    echo "| link: RTT / rate (measured RTT, one-stream ceiling) | sft get -r | rsync -r | curl --parallel-max 64 |"
    echo "| --- | --- | --- | --- |"
fi
printf '%s\n' "${ROWS[@]}"
