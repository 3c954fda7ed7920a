//! Hostile clients against the real `sft-server` process: slow uploads, clients that never
//! read, clients that read a byte a second. Whatever they do, they are cut off in bounded time
//! and other clients are served meanwhile. Resource use (threads, descriptors) is read from
//! `/proc`, so these tests run on Linux only.
#![cfg(target_os = "linux")]

use async_std::net::TcpStream;
use async_std::task;
use futures::AsyncWriteExt;
use sft_client::Client;
use sft_integration_tests::{raise_fd_limit, random_bytes, sft, Raw, ServerProcess};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOOPBACK: [&str; 2] = ["--host", "127.0.0.1"];

/// The server's thread count (`Threads:` in `/proc/PID/status`).
fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads in /proc/PID/status")
}

/// How many TCP connections the server holds open: its sockets (from `/proc/PID/fd`) that are
/// TCP sockets not in the LISTEN state (from `/proc/PID/net/tcp*`).
fn open_connections(pid: u32) -> usize {
    let mut connections = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            // `st` is field 3 (0A: LISTEN); `inode` is field 9.
            if fields.len() > 9 && fields[3] != "0A" {
                connections.insert(format!("socket:[{}]", fields[9]));
            }
        }
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| connections.contains(t.to_string_lossy().as_ref()))
        })
        .count()
}

/// Waits until the server holds no TCP connection; how many it still holds at `deadline`
/// otherwise.
fn connections_closed_by(pid: u32, deadline: Instant) -> Result<(), usize> {
    loop {
        let now = open_connections(pid);
        if now == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(now);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long `op` took, or `None` if it did not answer within `limit`.
async fn timed<F, T>(limit: Duration, op: F) -> Option<(Duration, T)>
where
    F: std::future::Future<Output = T>,
{
    let started = Instant::now();
    async_std::future::timeout(limit, op)
        .await
        .ok()
        .map(|v| (started.elapsed(), v))
}

/// What became of one attacking upload.
#[derive(Default)]
struct Tally {
    /// Got a go-ahead and trickled.
    accepted: AtomicUsize,
    /// Got a `busy` (or another error) reply instead.
    refused: AtomicUsize,
    /// Got no reply within the wait (kept the connection open, silent).
    unanswered: AtomicUsize,
}

impl Tally {
    fn settled(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
            + self.unanswered.load(Ordering::Relaxed)
    }
}

/// One attacker: a verified 1 MiB upload that trickles a byte every 300 ms until `stop`.
async fn trickle_upload(
    addr: std::net::SocketAddr,
    i: usize,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let connected =
        async_std::future::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await;
    let Ok(Ok(stream)) = connected else {
        tally.unanswered.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut raw = Raw::from_stream(stream);
    let header = format!(
        "{{\"verb\":\"SEND\",\"path\":\"up/{i}.bin\",\"size\":1048576,\"trailer\":true,\"upload_id\":\"{:032x}\"}}\n",
        i + 1
    );
    if raw.stream.write_all(header.as_bytes()).await.is_err() {
        tally.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let reply = async_std::future::timeout(Duration::from_secs(10), raw.line()).await;
    let go_ahead = match reply {
        Ok(Some(line)) => {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
            v["ok"] == true
        }
        Ok(None) => false,
        Err(_) => {
            // No answer yet: the connection stays open, silent, like an attacker would.
            tally.unanswered.fetch_add(1, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                task::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
    };
    if !go_ahead {
        tally.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    tally.accepted.fetch_add(1, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        let wrote =
            async_std::future::timeout(Duration::from_secs(1), raw.stream.write_all(&[0x5a])).await;
        if !matches!(wrote, Ok(Ok(()))) {
            return;
        }
        task::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn six_hundred_trickling_uploads_do_not_starve_other_clients() {
    raise_fd_limit();
    let root = tempfile::tempdir().unwrap();
    let one_mb = random_bytes(1_000_000, 7);
    std::fs::write(root.path().join("one_mb.bin"), &one_mb).unwrap();
    std::fs::create_dir(root.path().join("d")).unwrap();
    std::fs::write(root.path().join("d/a.txt"), "a").unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let (addr, pid) = (server.addr, server.child.id());
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..600)
        .map(|i| {
            task::spawn(trickle_upload(
                addr,
                i,
                Arc::clone(&tally),
                Arc::clone(&stop),
            ))
        })
        .collect();

    let (probes, peak_threads) = task::block_on(async {
        // Every attacker has its answer (or waited 10 s for it), then a few trickles more.
        let deadline = Instant::now() + Duration::from_secs(15);
        while tally.settled() < 600 && Instant::now() < deadline {
            task::sleep(Duration::from_millis(50)).await;
        }
        task::sleep(Duration::from_secs(1)).await;
        let mut peak = threads(pid);

        // Answers are expected within 1 s; waiting a little longer tells slow from stuck.
        let limit = Duration::from_secs(2);
        let addr = addr.to_string();
        let mut probes: Vec<(&str, Option<Duration>)> = Vec::new();
        let client = timed(limit, Client::connect(&addr, 7005)).await;
        let Some((_, Ok(mut c))) = client else {
            return (vec![("connect", None)], peak);
        };
        let get = timed(limit, async {
            let mut got = Vec::new();
            c.get("one_mb.bin", &mut got).await.map(|_| got)
        })
        .await;
        assert!(
            get.as_ref()
                .is_none_or(|(_, r)| r.as_ref().is_ok_and(|b| *b == one_mb)),
            "GET returned something else than the file"
        );
        probes.push(("GET 1 MB", get.map(|(t, _)| t)));
        peak = peak.max(threads(pid));
        let list = timed(limit, async {
            let mut listing = c.list("d", false).await?;
            let mut n = 0;
            while listing.next().await?.is_some() {
                n += 1;
            }
            Ok::<_, sft_client::Error>(n)
        })
        .await;
        if let Some((_, r)) = &list {
            assert_eq!(r.as_ref().ok(), Some(&1), "LIST d");
        }
        probes.push(("LIST", list.map(|(t, _)| t)));
        let stat = timed(limit, c.stat("one_mb.bin")).await;
        if let Some((_, r)) = &stat {
            assert_eq!(r.as_ref().map(|e| e.size).ok(), Some(1_000_000), "STAT");
        }
        probes.push(("STAT", stat.map(|(t, _)| t)));
        let mkdir = timed(limit, c.mkdir("new/folder")).await;
        if let Some((_, r)) = &mkdir {
            assert!(r.is_ok(), "MKDIR");
        }
        probes.push(("MKDIR", mkdir.map(|(t, _)| t)));
        peak = peak.max(threads(pid));
        (probes, peak)
    });
    stop.store(true, Ordering::Relaxed);
    task::block_on(futures::future::join_all(attackers));

    let (accepted, refused, unanswered) = (
        tally.accepted.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.unanswered.load(Ordering::Relaxed),
    );
    let summary = format!(
        "attackers: {accepted} trickling, {refused} refused, {unanswered} unanswered; \
         server threads peaked at {peak_threads}; probes: {probes:?}"
    );
    for (what, took) in &probes {
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(1)),
            "{what} did not answer within 1 s under attack ({summary})"
        );
    }
    // The old server parked a pool thread per trickling upload and reached the pool's cap of
    // 500. Now threads only do short file work: at most a burst as the admitted uploads begin
    // at once (128 by default) plus the server's own, far below the cap.
    assert!(peak_threads < 200, "too many server threads ({summary})");
}

/// A tree of 20,000 entries with long names, so that a recursive listing of it is far larger
/// than socket buffers (about 9 MB).
fn big_tree(dir: &Path) {
    let long = |c: char, i: usize| format!("{}{i:05}", c.to_string().repeat(200));
    for d in 0..100 {
        let folder = dir.join(long('d', d));
        std::fs::create_dir_all(&folder).unwrap();
        for f in 0..199 {
            std::fs::File::create(folder.join(long('f', f))).unwrap();
        }
    }
}

/// What each non-reading client asks for.
fn stuck_request(i: usize) -> Vec<u8> {
    match i % 10 {
        // A listing far larger than the socket buffers (a tenth of the clients: producing one
        // costs the server about half a second of CPU in a debug build).
        0 => b"{\"verb\":\"LIST\",\"path\":\"tree\",\"recursive\":true}\n".to_vec(),
        // 64 KiB files (the copy path, not sendfile), 200 pipelined: 12.8 MB of answers.
        1 | 3 | 5 | 7 | 9 => b"{\"verb\":\"GET\",\"path\":\"small.bin\"}\n".repeat(200),
        // A large file (the sendfile path).
        _ => b"{\"verb\":\"GET\",\"path\":\"big.bin\"}\n".to_vec(),
    }
}

#[test]
fn a_hundred_clients_that_never_read_are_cut_off_within_the_stall_timeout() {
    raise_fd_limit();
    let root = tempfile::tempdir().unwrap();
    big_tree(&root.path().join("tree"));
    std::fs::write(root.path().join("small.bin"), random_bytes(64 * 1024, 3)).unwrap();
    std::fs::File::create(root.path().join("big.bin"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let stall = 3;
    let server = ServerProcess::start(
        root.path(),
        &[
            "--host",
            "127.0.0.1",
            "--stall-timeout",
            "3",
            "--idle-timeout",
            "3",
        ],
    );
    let pid = server.child.id();

    let stuck: Vec<std::net::TcpStream> = (0..100)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            s.write_all(&stuck_request(i)).unwrap();
            s
        })
        .collect();
    let asked = Instant::now();

    // Meanwhile an honest client is served.
    let addr = server.addr.to_string();
    let cwd = tempfile::tempdir().unwrap();
    let got = sft(&["get", &addr, "small.bin", "-"], cwd.path());
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, random_bytes(64 * 1024, 3));
    let ls = sft(&["ls", &addr], cwd.path());
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(String::from_utf8_lossy(&ls.stdout).contains("small.bin"));

    // Every stuck connection is closed by the server within the stall timeout and a margin.
    let bound = Duration::from_secs(stall + 5);
    let result = connections_closed_by(pid, asked + bound);
    drop(stuck);
    if let Err(left) = result {
        panic!("{left} of 100 connections that never read are still open {bound:?} after their requests");
    }
}

#[test]
fn a_client_that_reads_a_body_at_one_byte_a_second_is_cut_off() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("small.bin"), random_bytes(64 * 1024, 4)).unwrap();
    std::fs::File::create(root.path().join("big.bin"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let server = ServerProcess::start(
        root.path(),
        &[
            "--host",
            "127.0.0.1",
            "--stall-timeout",
            "3",
            "--min-rate",
            "1024",
        ],
    );
    let pid = server.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    // One reader of a large body (sendfile), one of 100 pipelined 64 KiB bodies (copy path).
    let requests = [
        b"{\"verb\":\"GET\",\"path\":\"big.bin\"}\n".to_vec(),
        b"{\"verb\":\"GET\",\"path\":\"small.bin\"}\n".repeat(100),
    ];
    let readers: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            s.write_all(&request).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                // A byte a second, until told to stop or the stream ends (bounded by `stop`).
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut byte) {
                        Ok(0) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                        Ok(_) => std::thread::sleep(Duration::from_secs(1)),
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let bound = Duration::from_secs(20);
    let result = connections_closed_by(pid, started + bound);
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    if let Err(left) = result {
        panic!("{left} of 2 trickling readers still connected after {bound:?}");
    }
}
