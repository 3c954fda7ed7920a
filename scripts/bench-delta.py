#!/usr/bin/env python3
"""Delta transfer and compression, side by side with rsync, over one limited link.

    sudo scripts/bench-delta.py [--bin DIR] [--runs N] [--rows a,b,…] [--write]

Two network namespaces joined by a veth pair, `tc qdisc … tbf rate 100mbit` on both ends (this
kernel has no netem; tbf works). sft-server and an rsync daemon run in the server's namespace,
serving the same folder; `sft` and `rsync` run in the client's. Each row alternates the tools
(sft, rsync, sft, …) for --runs rounds (default 3) and reports the medians of the wall time and
of the bytes that crossed the link, read from the client interface's counters (both directions,
TCP/IP headers included: the same yardstick for both tools). Ratios are sft ÷ rsync.

Rows (names for --rows):
  get-edits   1 GiB random file, 20 scattered 4 KiB in-place edits; client holds the old version
  send-edits  the same, uploading; the server holds the old version
  get-shift   256 MiB random file, 1 KiB inserted near the start, 1 KiB deleted near the end
  send-shift  the same, uploading
  get-z       200 MiB of generated JSON log lines, no basis, sft -z vs rsync -z --compress-choice=zstd
  loop-z      1 GiB random, loopback without a limit: sft get -z vs sft get (no rsync)
  sign        server CPU for a level-1 SIGN of 1 GiB, cold and cached, and two at once

--write replaces the section "Delta transfer and compression over a 100 Mbit/s link" of
BENCHMARKS.md with the tables. Everything it starts is stopped, and its namespaces and files
removed, when it exits. Needs root, iproute2 (ip, tc), rsync and python3.
"""

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS_S, NS_C = "sftd-s", "sftd-c"
IF_S, IF_C = "sftd0", "sftd1"
IP_S, IP_C = "10.99.0.1", "10.99.0.2"
RATE = "100mbit"
SFT_PORT, RSYNC_PORT = 7005, 8730
MIB = 1024 * 1024
PROCS = []


def log(msg):
    print(f"[bench-delta {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*args, check=True, ns=None, **kw):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, **kw)


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    for ns in (NS_S, NS_C):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def setup_link():
    cleanup()
    sh("ip", "netns", "add", NS_S)
    sh("ip", "netns", "add", NS_C)
    sh("ip", "link", "add", IF_S, "netns", NS_S, "type", "veth", "peer", "name", IF_C, "netns", NS_C)
    for ns, dev, ip in ((NS_S, IF_S, IP_S), (NS_C, IF_C, IP_C)):
        sh("ip", "addr", "add", f"{ip}/24", "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        # One token bucket per direction: each end shapes what it sends.
        sh("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", RATE, "burst", "64kb",
           "latency", "50ms", ns=ns)
    log(f"link: {NS_C} ({IP_C}) <-> {NS_S} ({IP_S}), tbf {RATE} each way")


def link_bytes():
    out = sh("sh", "-c", f"cat /sys/class/net/{IF_C}/statistics/rx_bytes "
             f"/sys/class/net/{IF_C}/statistics/tx_bytes", ns=NS_C, capture_output=True,
             text=True).stdout.split()
    return int(out[0]) + int(out[1])


def wait_port(ns, ip, port):
    for _ in range(200):
        r = sh("python3", "-c", f"import socket; socket.create_connection(('{ip}', {port}), 1)",
               ns=ns, check=False, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {ip}:{port}")


def start(ns, args, **kw):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + args
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
    PROCS.append(p)
    return p


def noise(path, size, seed):
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MIB)
            f.write(rnd.randbytes(n))
            left -= n


def make_data(work):
    d = {}
    d["big_old"] = os.path.join(work, "big.old")
    d["big_new"] = os.path.join(work, "big.new")
    log("making 1 GiB of random data and its edited version (20 scattered 4 KiB edits)")
    noise(d["big_old"], 1024 * MIB, 1)
    shutil.copyfile(d["big_old"], d["big_new"])
    rnd = random.Random(2)
    with open(d["big_new"], "r+b") as f:
        for i in range(20):
            at = rnd.randrange(0, 1024 * MIB - 4096)
            f.seek(at)
            f.write(rnd.randbytes(4096))
    log("making 256 MiB of random data, with 1 KiB inserted near the start and 1 KiB deleted near the end")
    d["shift_old"] = os.path.join(work, "shift.old")
    d["shift_new"] = os.path.join(work, "shift.new")
    noise(d["shift_old"], 256 * MIB, 3)
    with open(d["shift_old"], "rb") as src, open(d["shift_new"], "wb") as dst:
        data = src.read()
        ins, dele = MIB + 12345, len(data) - MIB - 6789
        dst.write(data[:ins] + random.Random(4).randbytes(1024) + data[ins:dele] + data[dele + 1024:])
    log("making 200 MiB of JSON log lines")
    d["logs"] = os.path.join(work, "logs.json")
    rnd = random.Random(5)
    levels = ["info", "warn", "debug", "error"]
    paths = ["/api/v1/items", "/api/v1/users", "/login", "/static/app.js", "/health"]
    with open(d["logs"], "w") as f:
        written, t = 0, 1732440000.0
        while written < 200 * MIB:
            lines = []
            for _ in range(10000):
                t += rnd.random() * 0.01
                lines.append(json.dumps({
                    "ts": round(t, 3), "level": rnd.choice(levels), "path": rnd.choice(paths),
                    "status": rnd.choice([200, 200, 200, 304, 404, 500]),
                    "ms": round(rnd.expovariate(1 / 20), 2), "user": f"u{rnd.randrange(5000)}",
                    "req": "%016x" % rnd.getrandbits(64)}) + "\n")
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)
    # Old versions are older: neither tool may skip a file by size and time.
    for k in ("big_old", "shift_old"):
        os.utime(d[k], (1600000000, 1600000000))
    return d


def same(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


class Row:
    def __init__(self, name, title):
        self.name, self.title = name, title
        self.samples = {}  # tool -> [(secs, bytes)]

    def add(self, tool, secs, nbytes):
        self.samples.setdefault(tool, []).append((secs, nbytes))

    def med(self, tool, i):
        return statistics.median(s[i] for s in self.samples[tool])


def timed(ns, args, expect_ok=True):
    before = link_bytes() if ns == NS_C else 0
    t0 = time.perf_counter()
    r = sh(*args, ns=ns, check=False, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    after = link_bytes() if ns == NS_C else 0
    if expect_ok and r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{r.stdout}\n{r.stderr}")
    return secs, after - before, r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", default="get-edits,send-edits,get-shift,send-shift,get-z,loop-z,sign")
    ap.add_argument("--sft-flags", default="", help="extra flags for every sft get/send")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it makes network namespaces")
    sft, server = os.path.join(a.bin, "sft"), os.path.join(a.bin, "sft-server")
    rows_wanted = a.rows.split(",")
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = tempfile.mkdtemp(prefix="sft-bench-delta-", dir="/var/tmp")
    atexit.register(shutil.rmtree, work, True)
    data = make_data(work)
    srv, cli = os.path.join(work, "srv"), os.path.join(work, "cli")
    for p in (srv, cli, os.path.join(srv, "up"), os.path.join(srv, "rs")):
        os.makedirs(p, exist_ok=True)
    shutil.copyfile(data["big_new"], os.path.join(srv, "big.img"))
    shutil.copyfile(data["shift_new"], os.path.join(srv, "shift.img"))
    shutil.copyfile(data["logs"], os.path.join(srv, "logs.json"))
    setup_link()
    conf = os.path.join(work, "rsyncd.conf")
    with open(conf, "w") as f:
        f.write(f"pid file = {work}/rsyncd.pid\nuse chroot = no\n[m]\n  path = {srv}\n"
                "  read only = false\n  uid = root\n  gid = root\n")
    start(NS_S, ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--address={IP_S}",
                 f"--port={RSYNC_PORT}"])
    start(NS_S, [server, "--root", srv, "--host", IP_S, "--port", str(SFT_PORT)],
          env=dict(os.environ, SFT_LOG="warn"))
    wait_port(NS_C, IP_S, RSYNC_PORT)
    wait_port(NS_C, IP_S, SFT_PORT)
    sft_addr, rs_url = f"{IP_S}:{SFT_PORT}", f"rsync://{IP_S}:{RSYNC_PORT}/m"
    extra = a.sft_flags.split()
    results = []

    def pair(row, prep, sft_args, rs_args, check):
        for i in range(a.runs):
            for tool, args in (("sft", sft_args), ("rsync", rs_args)):
                prep(tool)
                secs, nbytes, _ = timed(NS_C, args)
                if not check(tool):
                    raise SystemExit(f"{row.name}: {tool} produced a wrong file")
                row.add(tool, secs, nbytes)
                log(f"{row.name} {tool} round {i + 1}: {secs:.3f} s, {nbytes / MIB:.2f} MiB on the link")
        results.append(row)

    for kind, old, new, label in (("edits", "big_old", "big_new", "1 GiB, 20 scattered 4 KiB edits"),
                                  ("shift", "shift_old", "shift_new", "256 MiB, 1 KiB inserted near the start, 1 KiB deleted near the end")):
        name = "big.img" if kind == "edits" else "shift.img"
        if f"get-{kind}" in rows_wanted:
            dest = {t: os.path.join(cli, f"{t}-{name}") for t in ("sft", "rsync")}

            def prep(tool, dest=dest, old=old):
                shutil.copyfile(data[old], dest[tool])
                os.utime(dest[tool], (1600000000, 1600000000))
            pair(Row(f"get-{kind}", f"get: {label}"), prep,
                 [sft, "get", "-q", "--overwrite", *extra, sft_addr, name, dest["sft"]],
                 ["rsync", "-I", f"{rs_url}/{name}", dest["rsync"]],
                 lambda tool, dest=dest, new=new: same(dest[tool], data[new]))
        if f"send-{kind}" in rows_wanted:
            src = os.path.join(cli, f"src-{name}")
            shutil.copyfile(data[new], src)
            at = {"sft": os.path.join(srv, "up", name), "rsync": os.path.join(srv, "rs", name)}

            def prep(tool, at=at, old=old):
                shutil.copyfile(data[old], at[tool])
                os.utime(at[tool], (1600000000, 1600000000))
            pair(Row(f"send-{kind}", f"send: {label}"), prep,
                 [sft, "send", "-q", "--overwrite", *extra, sft_addr, src, f"up/{name}"],
                 ["rsync", "-I", src, f"{rs_url}/rs/{name}"],
                 lambda tool, at=at, new=new: same(at[tool], data[new]))
    if "get-z" in rows_wanted:
        dest = {t: os.path.join(cli, f"{t}-logs.json") for t in ("sft", "rsync")}

        def prep(tool):
            if os.path.exists(dest[tool]):
                os.unlink(dest[tool])
        pair(Row("get-z", "get -z: 200 MiB of JSON log lines, no basis (rsync -z --compress-choice=zstd)"), prep,
             [sft, "get", "-q", "-z", *extra, sft_addr, "logs.json", dest["sft"]],
             ["rsync", "-z", "--compress-choice=zstd", f"{rs_url}/logs.json", dest["rsync"]],
             lambda tool: same(dest[tool], data["logs"]))
    if "loop-z" in rows_wanted:
        row = Row("loop-z", "get 1 GiB random over loopback, no limit: sft -z ÷ sft")
        port = 7015
        start(None, [server, "--root", srv, "--host", "127.0.0.1", "--port", str(port)],
              env=dict(os.environ, SFT_LOG="warn"))
        wait_port(None, "127.0.0.1", port)
        dest = "/dev/shm/sft-bench-delta-loop"
        atexit.register(lambda: os.path.exists(dest) and os.unlink(dest))
        # A first download hashes the file and caches its hash: neither tool's first round pays it.
        timed(None, [sft, "get", "-q", f"127.0.0.1:{port}", "big.img", dest])
        os.unlink(dest)
        for i in range(a.runs):
            for tool, flags in (("sft -z", ["-z"]), ("sft", [])):
                if os.path.exists(dest):
                    os.unlink(dest)
                secs, _, _ = timed(None, [sft, "get", "-q", *flags, f"127.0.0.1:{port}", "big.img", dest])
                row.add(tool, secs, 0)
                log(f"loop-z {tool} round {i + 1}: {secs:.3f} s")
        results.append(row)
    sign_rows = []
    if "sign" in rows_wanted:
        sign_rows = bench_sign(server, srv, a.runs)
    report(results, sign_rows, a, sft)


def server_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sign_once(port, path):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(json.dumps({"verb": "SIGN", "v": 3, "path": path}).encode() + b"\n")
    f = s.makefile("rb")
    first = json.loads(f.readline())
    if not first.get("ok"):
        raise SystemExit(f"SIGN refused: {first}")
    n = 0
    while True:
        line = json.loads(f.readline())
        if line.get("end"):
            s.close()
            return n
        if "ok" in line:
            raise SystemExit(f"SIGN failed: {line}")
        n += 1


def bench_sign(server, srv, runs):
    """Server CPU per GiB for a level-1 signature: cold (a new version of the file), cached, and
    two different files at once (how it scales with the two threads each signature uses)."""
    port = 7016
    p = start(None, [server, "--root", srv, "--host", "127.0.0.1", "--port", str(port)],
              env=dict(os.environ, SFT_LOG="warn"))
    wait_port(None, "127.0.0.1", port)
    shutil.copyfile(os.path.join(srv, "big.img"), os.path.join(srv, "big2.img"))
    out = {"cold": [], "cached": [], "two at once": []}
    for _ in range(runs):
        for f in ("big.img", "big2.img"):
            os.utime(os.path.join(srv, f))  # a new version: not in the cache
        c0, t0 = server_cpu(p.pid), time.perf_counter()
        sign_once(port, "big.img")
        out["cold"].append((time.perf_counter() - t0, server_cpu(p.pid) - c0))
        c0, t0 = server_cpu(p.pid), time.perf_counter()
        sign_once(port, "big.img")
        out["cached"].append((time.perf_counter() - t0, server_cpu(p.pid) - c0))
        os.utime(os.path.join(srv, "big.img"))  # big2.img is still a version not signed
        c0, t0 = server_cpu(p.pid), time.perf_counter()
        th = [threading.Thread(target=sign_once, args=(port, f)) for f in ("big.img", "big2.img")]
        for t in th:
            t.start()
        for t in th:
            t.join()
        out["two at once"].append((time.perf_counter() - t0, server_cpu(p.pid) - c0))
        log(f"sign: cold {out['cold'][-1]}, cached {out['cached'][-1]}, two {out['two at once'][-1]}")
    os.unlink(os.path.join(srv, "big2.img"))
    return out


def report(rows, sign, a, sft):
    ver = subprocess.run([sft, "--version"], capture_output=True, text=True).stdout.strip()
    rs = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    lines = [
        "## Delta transfer and compression over a 100 Mbit/s link",
        "",
        f"Generated by `sudo scripts/bench-delta.py --runs {a.runs}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" ({ver}, commit {head}; {rs}). Two network namespaces joined by a veth pair with"
        f" `tc qdisc … tbf rate {RATE}` on both ends; sft-server and an rsync daemon in one, the"
        " clients in the other; files in the page cache. Each row alternates the tools"
        f" {a.runs} times; medians, with every sample. **Bytes** are what crossed the link in both"
        " directions, read from the client interface's counters (TCP/IP headers included, the same"
        " yardstick for both tools). Ratios are sft ÷ rsync.",
        "",
        "| workload | sft s | rsync s | time sft ÷ rsync | sft bytes | rsync bytes | bytes sft ÷ rsync | goal | status | sft samples (s) | rsync samples (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.name == "loop-z":
            continue
        st, rt = r.med("sft", 0), r.med("rsync", 0)
        sb, rb = r.med("sft", 1), r.med("rsync", 1)
        fmt = lambda xs: ", ".join(f"{x[0]:.3f}" for x in xs)
        goal_b, goal_t = GOALS[r.name]
        met = (goal_b is None or sb / rb <= goal_b) and st / rt <= goal_t
        goal = (f"bytes ≤ {goal_b}×, " if goal_b is not None else "") + f"time ≤ {goal_t}×"
        lines.append(f"| {r.title} | {st:.3f} | {rt:.3f} | {st / rt:.2f}× | {human(sb)} | {human(rb)} | "
                     f"{sb / rb:.2f}× | {goal} | {'**met**' if met else '**not met**'} | "
                     f"{fmt(r.samples['sft'])} | {fmt(r.samples['rsync'])} |")
    for r in rows:
        if r.name != "loop-z":
            continue
        z, plain = r.med("sft -z", 0), r.med("sft", 0)
        fmt = lambda xs: ", ".join(f"{x[0]:.3f}" for x in xs)
        met = "**met**" if z / plain <= 1.05 else "**not met**"
        lines += ["", "| loopback, no limit | sft -z s | sft s | -z ÷ plain | goal | status | -z samples | plain samples |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |",
                  f"| {r.title} | {z:.3f} | {plain:.3f} | {z / plain:.2f}× | ≤ 1.05× | {met} | {fmt(r.samples['sft -z'])} | {fmt(r.samples['sft'])} |"]
    if sign:
        lines += ["", "Server CPU for a level-1 `SIGN` of a 1 GiB file (127.0.0.1, the server's own"
                  " utime+stime from /proc; each signature cuts on one thread and hashes the whole"
                  " file on a second):", "",
                  "| case | wall s (median) | server CPU s (median) | samples (wall, CPU) |",
                  "| --- | --- | --- | --- |"]
        for k, v in sign.items():
            lines.append(f"| {k} | {statistics.median(x[0] for x in v):.3f} | "
                         f"{statistics.median(x[1] for x in v):.2f} | "
                         + ", ".join(f"({x[0]:.2f}, {x[1]:.2f})" for x in v) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        path = os.path.join(REPO, "BENCHMARKS.md")
        cur = open(path).read()
        start_i = cur.find(lines[0])
        if start_i >= 0:
            end_i = cur.find("\n## ", start_i + 1)
            cur = cur[:start_i] + text + (cur[end_i + 1:] if end_i >= 0 else "")
        else:
            cur = cur.rstrip("\n") + "\n\n" + text
        open(path, "w").write(cur)
        log("BENCHMARKS.md updated")


# Goals per row: (bytes sft ÷ rsync, or None; time sft ÷ rsync).
GOALS = {
    "get-edits": (1.0, 0.5),
    "send-edits": (1.0, 0.5),
    "get-shift": (1.5, 0.7),
    "send-shift": (1.5, 0.7),
    "get-z": (None, 0.8),
}


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


if __name__ == "__main__":
    main()
