//! What abandoned and refused uploads may cost the server: kept partials are bounded in count and
//! in CPU, empty ones are never kept, and a refused chunked upload frees its staging file at once.

use sft_integration_tests::{wait_until, Raw, ServerProcess, TestServer};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const LOOPBACK: [&str; 2] = ["--host", "127.0.0.1"];
const MIB: u64 = 1 << 20;

/// The server's default `--max-partials`.
const DEFAULT_MAX_PARTIALS: usize = 1000;

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

/// One resumable upload of 100 bytes that breaks off after `sent` of them.
fn abandon_upload(addr: SocketAddr, n: usize, sent: usize) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let header = format!(
        "{{\"verb\":\"SEND\",\"path\":\"up/{n}.bin\",\"size\":100,\"trailer\":true,\"upload_id\":\"{n:032x}\"}}\n"
    );
    stream.write_all(header.as_bytes()).expect("send header");
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .expect("go-ahead");
    assert!(reply.starts_with("{\"ok\":true"), "go-ahead: {reply}");
    stream.write_all(&[b'x'; 100][..sent]).expect("send bytes");
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
                    // Half send nothing at all, half a few bytes.
                    abandon_upload(addr, n, if n % 2 == 0 { 0 } else { 3 });
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
        kept.iter().all(|(_, size)| *size > 0),
        "empty partials were kept: {:?}",
        kept.iter()
            .filter(|(_, s)| *s == 0)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        kept.len() <= DEFAULT_MAX_PARTIALS,
        "{} partials kept, over the cap of {DEFAULT_MAX_PARTIALS}",
        kept.len()
    );
    assert!(!kept.is_empty(), "non-empty abandoned uploads are kept");
}

#[test]
fn the_count_cap_evicts_the_oldest_partial_and_keeps_resume_working_across_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let args = [LOOPBACK[0], LOOPBACK[1], "--max-partials", "3"];
    let mut server = ServerProcess::start(root.path(), &args);
    for n in 0..5 {
        abandon_upload(server.addr, n, 10 + n);
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
    let mut sizes: Vec<u64> = files_with_sizes(&partials).iter().map(|f| f.1).collect();
    sizes.sort();
    assert_eq!(sizes, [12, 13, 14], "the two oldest were evicted");

    // A restart finds the kept partials again: the newest resumes, and the cap still holds.
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(20));
    let server = ServerProcess::start(root.path(), &args);
    async_std::task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let header = serde_json::json!({"verb": "SEND", "path": "up/4.bin", "size": 100,
            "trailer": true, "upload_id": format!("{:032x}", 4), "resume": true});
        raw.write((header.to_string() + "\n").as_bytes()).await;
        assert_eq!(
            raw.reply().await,
            serde_json::json!({"ok": true, "offset": 14})
        );
        raw.write(&[b'x'; 86]).await;
        let hash = blake3::hash(&[b'x'; 100]).to_hex().to_string();
        raw.write(format!("{{\"blake3\":\"{hash}\"}}\n").as_bytes())
            .await;
        assert_eq!(raw.reply().await["blake3"], hash.as_str());
    });
    assert_eq!(
        std::fs::read(root.path().join("up/4.bin")).unwrap(),
        [b'x'; 100]
    );
    abandon_upload(server.addr, 5, 20);
    abandon_upload(server.addr, 6, 30);
    wait_until(Duration::from_secs(20), || {
        server
            .logs_with("request")
            .iter()
            .filter(|r| r["verb"] == "SEND")
            .count()
            == 3
    });
    let mut sizes: Vec<u64> = files_with_sizes(&partials).iter().map(|f| f.1).collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [13, 20, 30],
        "loaded at start-up, evicted oldest first"
    );
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
