//! Runs the real `sft-bench` binary against a real server started in this process, on loopback.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SMALL: usize = 4096;

/// Starts a server on 127.0.0.1 with a free port, serving a fresh folder holding `small.bin`.
fn start_server() -> (tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.bin"), vec![7u8; SMALL]).unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let config = sft_server::Config::from_args_iter([
        "sft-server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--root",
        &root,
    ])
    .unwrap();
    let server =
        async_std::task::block_on(sft_server::Server::bind(config, sft_commands::builtins()))
            .unwrap();
    let addr = server.local_addr();
    async_std::task::spawn(server.run());
    (dir, addr)
}

/// Runs `sft-bench ARGS --json`; returns its exit code and its JSON line.
fn bench(args: &[&str]) -> (i32, Value) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sft-bench"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "sft-bench ran past its deadline"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    let json: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    for field in [
        "requests_per_sec",
        "bytes_per_sec",
        "p50_us",
        "p99_us",
        "errors",
        "requests",
        "bytes",
        "connections",
        "duration_s",
    ] {
        assert!(json.get(field).is_some(), "no {field} in {json}");
    }
    (out.status.code().unwrap(), json)
}

fn num(json: &Value, field: &str) -> u64 {
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {json}"))
}

#[test]
fn get_load_is_measured() {
    let (_dir, addr) = start_server();
    let server = addr.to_string();
    let (code, json) = bench(&[
        "get",
        &server,
        "small.bin",
        "--connections",
        "4",
        "--duration",
        "1",
        "--fail-on-error",
    ]);
    assert_eq!(code, 0, "{json}");
    let requests = num(&json, "requests");
    assert!(requests > 0, "{json}");
    assert_eq!(num(&json, "errors"), 0, "{json}");
    assert_eq!(num(&json, "bytes"), requests * SMALL as u64, "{json}");
    assert_eq!(num(&json, "connections"), 4);
    assert!(json["requests_per_sec"].as_f64().unwrap() > 0.0);
    assert!(json["bytes_per_sec"].as_f64().unwrap() > 0.0);
    assert!(num(&json, "p50_us") <= num(&json, "p99_us"));
    let window = json["duration_s"].as_f64().unwrap();
    assert!((0.5..=1.5).contains(&window), "{json}");
}

#[test]
fn the_async_engine_measures_too() {
    let (_dir, addr) = start_server();
    let server = addr.to_string();
    for verb in [
        &["get", &server, "small.bin"][..],
        &["send", &server, "--size", "4096"],
    ] {
        let mut args = verb.to_vec();
        args.extend([
            "--engine", "async", "-c", "4", "-d", "0.5", "--warmup", "0.2",
        ]);
        let (code, json) = bench(&args);
        assert_eq!(code, 0, "{json}");
        let requests = num(&json, "requests");
        assert!(requests > 0, "{json}");
        assert_eq!(num(&json, "errors"), 0, "{json}");
        assert_eq!(num(&json, "bytes"), requests * SMALL as u64, "{json}");
    }
}

#[test]
fn send_load_is_measured_and_leaves_bounded_files() {
    let (dir, addr) = start_server();
    let server = addr.to_string();
    let (code, json) = bench(&[
        "send",
        &server,
        "--size",
        "4K",
        "--connections",
        "4",
        "--duration",
        "1",
        "--fail-on-error",
    ]);
    assert_eq!(code, 0, "{json}");
    let requests = num(&json, "requests");
    assert!(requests > 0, "{json}");
    assert_eq!(num(&json, "errors"), 0, "{json}");
    assert_eq!(num(&json, "bytes"), requests * SMALL as u64, "{json}");
    let uploaded = dir.path().join("bench");
    let files: Vec<_> = std::fs::read_dir(&uploaded).unwrap().collect();
    assert!(!files.is_empty() && files.len() <= 4 * 4, "{files:?}");
    assert_eq!(file_len(&uploaded.join("0-0")), SMALL as u64);
}

#[test]
fn request_budget_stops_the_run_early() {
    let (_dir, addr) = start_server();
    let server = addr.to_string();
    let started = Instant::now();
    let (code, json) = bench(&[
        "get",
        &server,
        "small.bin",
        "-c",
        "4",
        "-d",
        "30",
        "--requests",
        "50",
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(num(&json, "requests"), 50, "{json}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn errors_are_counted_and_fail_the_run_only_when_asked() {
    let (_dir, addr) = start_server();
    let server = addr.to_string();
    let args = [
        "get",
        &server,
        "missing.bin",
        "-c",
        "2",
        "-d",
        "5",
        "--requests",
        "20",
    ];
    let (code, json) = bench(&args);
    assert_eq!(code, 0, "{json}");
    assert_eq!(num(&json, "requests"), 0, "{json}");
    assert_eq!(num(&json, "errors"), 20, "{json}");
    assert_eq!(json["error_kinds"]["reply:not_found"], 20, "{json}");

    let mut failing = args.to_vec();
    failing.push("--fail-on-error");
    let (code, _) = bench(&failing);
    assert_eq!(code, 1);
}

#[test]
fn refused_connections_are_errors_not_hangs() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("127.0.0.1:{port}");
    let (code, json) = bench(&["get", &server, "x", "-c", "2", "-d", "0.5"]);
    assert_eq!(code, 0);
    assert_eq!(num(&json, "requests"), 0);
    assert!(num(&json, "errors") > 0, "{json}");
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}
