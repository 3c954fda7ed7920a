//! What abandoned and refused uploads may cost the server: kept partials are bounded in count and
//! in CPU, those too small to be worth a resume are never kept (nor even created), and a refused
//! chunked upload frees its staging file at once.

use sft_integration_tests::{wait_until, Raw, ServerProcess, TestServer};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const LOOPBACK: [&str; 2] = ["--host", "127.0.0.1"];
const MIB: u64 = 1 << 20;

/// The server's default `--max-partials`.
const DEFAULT_MAX_PARTIALS: usize = 1000;

/// The fewest bytes an interrupted upload must hold to be kept (64 KiB).
const MIN_KEPT: usize = 64 * 1024;

/// CPU time (user + system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of the line, counted from 1; `rest` starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = rustix::param::clock_ticks_per_second();
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Files in `dir` with their sizes.
fn files_with_sizes(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, e.metadata().map(|m| m.len()).unwrap_or(0))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One resumable upload of `size` bytes that breaks off after `sent` of them.
fn abandon_upload(addr: SocketAddr, n: usize, size: usize, sent: usize) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let header = format!(
        "{{\"verb\":\"SEND\",\"path\":\"up/{n}.bin\",\"size\":{size},\"trailer\":true,\"upload_id\":\"{n:032x}\"}}\n"
    );
    stream.write_all(header.as_bytes()).expect("send header");
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .expect("go-ahead");
    assert!(reply.starts_with("{\"ok\":true"), "go-ahead: {reply}");
    stream.write_all(&vec![b'x'; sent]).expect("send bytes");
    // Dropped: the connection closes with the upload unfinished.
}

#[test]
fn twenty_thousand_abandoned_uploads_cost_little_cpu_and_keep_few_partials() {
    const UPLOADS: usize = 20_000;
    const THREADS: usize = 8;
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        root.path(),
        &[LOOPBACK[0], LOOPBACK[1], "--max-upload-bytes", "1048576"],
    );
    let addr = server.addr;
    let deadline = Instant::now() + Duration::from_secs(300);
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for n in (t..UPLOADS).step_by(THREADS) {
                    assert!(
                        Instant::now() < deadline,
                        "uploads still running after 300 s"
                    );
                    // Nearly all send nothing at all or a few bytes, too few to be kept; one in
                    // a hundred sends enough to be kept (more than the caps allow).
                    match n % 100 {
                        99 => abandon_upload(addr, n, 2 * MIN_KEPT, MIN_KEPT),
                        k => abandon_upload(addr, n, 100, if k % 2 == 0 { 0 } else { 3 }),
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }

    // Every upload was handled once the server logged it (aborted: the client went away).
    let mut seen = 0;
    let mut logged = 0;
    while logged < UPLOADS {
        assert!(
            Instant::now() < deadline,
            "the server logged {logged} of {UPLOADS} uploads within 300 s"
        );
        let lines: Vec<String> = server.logs.lock().unwrap()[seen..].to_vec();
        seen += lines.len();
        logged += lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["msg"] == "request" && v["verb"] == "SEND")
            .count();
        std::thread::sleep(Duration::from_millis(50));
    }

    let cpu = cpu_time(server.child.id());
    assert!(
        cpu < Duration::from_secs(10),
        "{UPLOADS} abandoned uploads cost {cpu:?} of server CPU"
    );
    let kept = files_with_sizes(&root.path().join(".sft/partial"));
    eprintln!(
        "{UPLOADS} abandoned uploads: {cpu:?} of server CPU, {} partials kept",
        kept.len()
    );
    assert!(
        kept.iter().all(|(_, size)| *size == MIN_KEPT as u64),
        "partials too small to be worth a resume were kept: {:?}",
        kept.iter()
            .filter(|(_, s)| *s != MIN_KEPT as u64)
            .take(5)
            .collect::<Vec<_>>()
    );
    // Together at most the upload limit, 1 MiB: as many as that allows are kept.
    assert!(kept.len() <= DEFAULT_MAX_PARTIALS);
    assert_eq!(
        kept.len(),
        (MIB as usize) / MIN_KEPT,
        "{} uploads held enough to be kept: as many as the byte cap allows are",
        UPLOADS / 100
    );
}

#[test]
fn the_count_cap_evicts_the_oldest_partial_and_keeps_resume_working_across_a_restart() {
    const SIZE: usize = 4 * MIN_KEPT;
    let root = tempfile::tempdir().unwrap();
    let args = [LOOPBACK[0], LOOPBACK[1], "--max-partials", "3"];
    let mut server = ServerProcess::start(root.path(), &args);
    for n in 0..5 {
        abandon_upload(server.addr, n, SIZE, MIN_KEPT + 10 + n);
        // In order: each partial is older than the next.
        wait_until(Duration::from_secs(20), || {
            server
                .logs_with("request")
                .iter()
                .filter(|r| r["verb"] == "SEND")
                .count()
                > n
        });
    }
    let partials = root.path().join(".sft/partial");
    let held = |dir: &Path| -> Vec<usize> {
        let mut sizes: Vec<usize> = files_with_sizes(dir)
            .iter()
            .map(|f| f.1 as usize - MIN_KEPT)
            .collect();
        sizes.sort();
        sizes
    };
    assert_eq!(held(&partials), [12, 13, 14], "the two oldest were evicted");

    // A restart finds the kept partials again: the newest resumes, and the cap still holds.
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(20));
    let server = ServerProcess::start(root.path(), &args);
    async_std::task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let header = serde_json::json!({"verb": "SEND", "path": "up/4.bin", "size": SIZE,
            "trailer": true, "upload_id": format!("{:032x}", 4), "resume": true});
        raw.write((header.to_string() + "\n").as_bytes()).await;
        let offset = MIN_KEPT + 14;
        assert_eq!(
            raw.reply().await,
            serde_json::json!({"ok": true, "offset": offset})
        );
        raw.write(&vec![b'x'; SIZE - offset]).await;
        let hash = blake3::hash(&vec![b'x'; SIZE]).to_hex().to_string();
        raw.write(format!("{{\"blake3\":\"{hash}\"}}\n").as_bytes())
            .await;
        assert_eq!(raw.reply().await["blake3"], hash.as_str());
    });
    assert!(std::fs::read(root.path().join("up/4.bin")).unwrap() == vec![b'x'; SIZE]);
    abandon_upload(server.addr, 5, SIZE, MIN_KEPT + 20);
    abandon_upload(server.addr, 6, SIZE, MIN_KEPT + 30);
    wait_until(Duration::from_secs(20), || {
        server
            .logs_with("request")
            .iter()
            .filter(|r| r["verb"] == "SEND")
            .count()
            == 3
    });
    assert_eq!(
        held(&partials),
        [13, 20, 30],
        "loaded at start-up, evicted oldest first"
    );
}

#[test]
fn an_abandoned_upload_too_small_to_keep_leaves_an_older_partial_of_it_in_place() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let sends = |count: usize| {
        wait_until(Duration::from_secs(20), || {
            server
                .logs_with("request")
                .iter()
                .filter(|r| r["verb"] == "SEND")
                .count()
                == count
        })
    };
    let partials = root.path().join(".sft/partial");
    // Just under the threshold: nothing is kept, not even a file created and removed.
    abandon_upload(server.addr, 1, 2 * MIN_KEPT, MIN_KEPT - 1);
    sends(1);
    assert_eq!(files_with_sizes(&partials), []);
    // At the threshold: kept.
    abandon_upload(server.addr, 1, 2 * MIN_KEPT, MIN_KEPT);
    sends(2);
    let kept = files_with_sizes(&partials);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].1, MIN_KEPT as u64);
    // The same upload started afresh (no resume) that breaks off with too little to keep: the
    // older partial is still there, and still resumes.
    abandon_upload(server.addr, 1, 2 * MIN_KEPT, 3);
    sends(3);
    assert_eq!(files_with_sizes(&partials), kept);
    async_std::task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let header = serde_json::json!({"verb": "SEND", "path": "up/1.bin", "size": 2 * MIN_KEPT,
            "trailer": true, "upload_id": format!("{:032x}", 1), "resume": true});
        raw.write((header.to_string() + "\n").as_bytes()).await;
        assert_eq!(
            raw.reply().await,
            serde_json::json!({"ok": true, "offset": MIN_KEPT})
        );
    });
}

#[test]
fn a_refused_chunked_upload_frees_its_staging_file_before_the_body_ends() {
    let server =
        TestServer::start_with(&["--max-upload-bytes", "1048576"], sft_commands::builtins());
    async_std::task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"big.log\",\"body\":\"chunked\"}\n")
            .await;
        assert_eq!(raw.reply().await, serde_json::json!({"ok": true}));
        raw.write(format!("{{\"size\":{MIB}}}\n").as_bytes()).await;
        raw.write(&vec![7u8; MIB as usize]).await;
        // One byte more than the limit: refused before the body ends.
        raw.write(b"{\"size\":1000}\n").await;
        assert_eq!(raw.reply().await["code"], "too_large");
        // The server now waits for the rest of the chunk and the terminator; the staging file
        // must already be gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.staging_files().is_empty() {
            assert!(
                Instant::now() < deadline,
                "staging still holds {:?} while the refused body is drained",
                server.staging_files()
            );
            async_std::task::sleep(Duration::from_millis(10)).await;
        }
        raw.write(&[7u8; 1000]).await;
        raw.write(b"{\"size\":0}\n").await;
        // The connection is still in step.
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"big.log\"}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "not_found");
    });
    assert!(!server.path("big.log").exists());
}
