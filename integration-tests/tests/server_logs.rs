//! What the server logs: refused paths as requested, the bytes an aborted download did send,
//! the start of a long transfer, and the settings in effect at start-up.

use async_std::task;
use serde_json::Value;
use sft_integration_tests::{wait_until, Raw, ServerProcess};
use std::time::Duration;

/// The "request" log lines so far whose verb is `verb`.
fn requests(server: &ServerProcess, verb: &str) -> Vec<Value> {
    server
        .logs_with("request")
        .into_iter()
        .filter(|l| l["verb"] == verb)
        .collect()
}

#[test]
fn refused_paths_are_logged_as_requested_and_bounded() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &[]);
    let long = format!("{}/x", "d".repeat(1000));
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for path in ["../etc/passwd", ".sft/x", "a\u{1b}[31mb/../../c", &long] {
            let request = serde_json::json!({"verb": "GET", "path": path});
            raw.write(format!("{request}\n").as_bytes()).await;
            assert_eq!(raw.reply().await["ok"], false);
        }
    });
    wait_until(Duration::from_secs(20), || {
        requests(&server, "GET").len() == 4
    });
    let logged = requests(&server, "GET");
    let paths: Vec<&str> = logged.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths[0], "../etc/passwd");
    assert_eq!(paths[1], ".sft/x");
    assert_eq!(paths[2], "a\\u{1b}[31mb/../../c", "escaped");
    assert_eq!(paths[3].chars().count(), 257, "bounded: {}", paths[3]);
    assert!(paths[3].ends_with('…'));
    assert_eq!(logged[0]["outcome"], "forbidden");
}

#[test]
fn a_large_download_is_logged_when_it_starts_and_an_aborted_one_with_the_bytes_sent() {
    let root = tempfile::tempdir().unwrap();
    let big = root.path().join("big.bin");
    let size: u64 = 64 * 1024 * 1024;
    std::fs::File::create(&big).unwrap().set_len(size).unwrap();
    let server = ServerProcess::start(root.path(), &[]);
    let read = task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"big.bin\"}\n")
            .await;
        assert_eq!(raw.reply().await["size"], size);
        // The body cannot all be in flight: the server is still sending, yet it said so.
        wait_until(Duration::from_secs(20), || {
            !server.logs_with("transfer started").is_empty()
        });
        assert!(requests(&server, "GET").is_empty(), "not ended yet");
        let started = &server.logs_with("transfer started")[0];
        assert_eq!(
            (&started["verb"], &started["path"]),
            (&"GET".into(), &"big.bin".into())
        );
        assert_eq!(started["bytes"], size);
        let read = raw.body(4 * 1024 * 1024).await.len() as u64;
        drop(raw);
        read
    });
    wait_until(Duration::from_secs(30), || {
        !requests(&server, "GET").is_empty()
    });
    let done = &requests(&server, "GET")[0];
    assert_eq!(done["outcome"], "aborted");
    let sent = done["bytes_out"].as_u64().unwrap();
    assert!(
        sent >= read && sent < size,
        "bytes_out {sent}, client read {read}"
    );
}

#[test]
fn small_transfers_log_no_start_line() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), b"small").unwrap();
    let server = ServerProcess::start(root.path(), &[]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"f\"}\n").await;
        assert_eq!(raw.reply().await["size"], 5);
        raw.body(5).await;
    });
    wait_until(Duration::from_secs(20), || {
        !requests(&server, "GET").is_empty()
    });
    assert!(server.logs_with("transfer started").is_empty());
}

#[test]
fn start_up_logs_the_settings_in_one_line() {
    let root = tempfile::tempdir().unwrap();
    let args = [
        "--read-only",
        "--max-upload-bytes",
        "1000",
        "--max-connections",
        "50",
        "--stall-timeout",
        "7",
        "--min-rate",
        "9",
        "--max-partials",
        "3",
        "--partial-ttl",
        "60",
    ];
    let server = ServerProcess::start(root.path(), &args);
    let settings = server.logs_with("settings");
    assert_eq!(settings.len(), 1, "{settings:?}");
    let s = &settings[0];
    assert_eq!(s["read_only"], true);
    assert_eq!(s["max_upload_bytes"], "1000");
    assert_eq!(s["max_connections"], 50);
    assert_eq!(s["stall_timeout_s"], 7);
    assert_eq!(s["min_rate"], 9);
    assert_eq!(s["max_partials"], 3);
    assert_eq!(s["partial_ttl_s"], 60);
    assert!(s["max_uploads"].is_u64() && s["umask"].is_string(), "{s}");
}

#[test]
fn a_writable_open_plaintext_server_on_the_network_warns_once_at_start_up() {
    let warning = "writable, without tokens and without TLS on a network address: anyone who \
                   can reach it may read, replace and delete files";
    let root = tempfile::tempdir().unwrap();
    // No --host: every address.
    let open = ServerProcess::start(root.path(), &[]);
    let warned = open.logs_with(warning);
    assert_eq!(warned.len(), 1, "{:?}", open.logs.lock().unwrap());
    assert_eq!(warned[0]["level"], "warn");
    for quiet in [&["--host", "127.0.0.1"][..], &["--read-only"][..]] {
        let server = ServerProcess::start(root.path(), quiet);
        assert!(server.logs_with(warning).is_empty(), "{quiet:?}");
    }
}

/// Log lines (parsed) at `level` whose `msg` is `msg`.
fn at(server: &ServerProcess, level: &str, msg: &str) -> Vec<Value> {
    let lines = server.logs_with(msg);
    lines.into_iter().filter(|l| l["level"] == level).collect()
}

#[test]
fn debug_shows_each_header_and_how_each_body_goes() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), "hello\n").unwrap();
    let big = vec![7u8; 256 * 1024];
    std::fs::write(root.path().join("big.bin"), &big).unwrap();
    let server = ServerProcess::start_in_shell(root.path(), &[], Some("export SFT_LOG=debug"));
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (path, len) in [("a.txt", 6), ("big.bin", big.len())] {
            let request = serde_json::json!({"verb": "GET", "path": path});
            raw.write(format!("{request}\n").as_bytes()).await;
            assert_eq!(raw.reply().await["size"], len);
            assert_eq!(raw.body(len).await.len(), len);
        }
    });
    wait_until(Duration::from_secs(20), || {
        requests(&server, "GET").len() == 2
    });
    let headers = at(&server, "debug", "request header");
    let header = headers[0]["header"].as_str().unwrap();
    assert_eq!(header, r#"{"path":"a.txt","verb":"GET"}"#, "as received");
    let bodies = at(&server, "debug", "sending a file body");
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0]["how"], "copy");
    assert!(bodies[0]["why"].as_str().unwrap().starts_with("small"));
    assert_eq!(bodies[1]["how"], "sendfile");
    let resolved = at(&server, "debug", "path resolved");
    assert_eq!(resolved[0]["path"], "a.txt");
}

#[test]
fn debug_names_the_admission_step_and_the_sandbox_refusal() {
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", root.path().join("out")).unwrap();
    let server =
        ServerProcess::start_in_shell(root.path(), &["--read-only"], Some("export SFT_LOG=debug"));
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"DELETE\",\"path\":\"x\"}\n").await;
        assert_eq!(raw.reply().await["code"], "read_only");
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"x\",\"size\":3}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], false);
        raw.write(b"{\"verb\":\"GET\",\"path\":\"out/passwd\"}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "forbidden");
    });
    wait_until(Duration::from_secs(20), || {
        requests(&server, "GET").len() == 1
    });
    let refused = at(&server, "debug", "admission refused");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0]["step"], "writing");
    assert_eq!(refused[0]["verb"], "DELETE");
    assert_eq!(refused[1]["step"], "body");
    assert_eq!(refused[1]["outcome"], "bad_request");
    let sandbox = at(&server, "debug", "sandbox refused");
    assert!(
        sandbox[0]["reason"]
            .as_str()
            .unwrap()
            .contains("outside the served root"),
        "{sandbox:?}"
    );
}

#[test]
fn trace_never_shows_a_token_but_names_it() {
    use sha2::{Digest, Sha256};
    const TOKEN: &str = "s3cret-t0ken-4e1f9a";
    let dir = tempfile::tempdir().unwrap();
    let digest: String = Sha256::digest(TOKEN)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("carol write {digest}\n")).unwrap();
    let args = ["--host", "127.0.0.1", "--tokens", tokens.to_str().unwrap()];
    let server = ServerProcess::start_in_shell(dir.path(), &args, Some("export SFT_LOG=trace"));
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let auth = serde_json::json!({"verb": "AUTH", "token": TOKEN});
        raw.write(format!("{auth}\n").as_bytes()).await;
        assert_eq!(raw.reply().await["ok"], true);
        // A third-party verb's argument named token, and a header that is not JSON.
        raw.write(format!("{{\"verb\":\"NOPE\",\"args\":{{\"token\":\"{TOKEN}\"}}}}\n").as_bytes())
            .await;
        assert_eq!(raw.reply().await["ok"], false);
        raw.write(format!("{{\"verb\":\"AUTH\",\"token\":\"{TOKEN}\"\n").as_bytes())
            .await;
        assert_eq!(raw.reply().await["ok"], false);
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"tokens\"}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
    });
    wait_until(Duration::from_secs(20), || {
        requests(&server, "STAT").len() == 1
    });
    let phases = server.logs_with("request phases");
    assert!(
        phases
            .iter()
            .any(|l| l["verb"] == "STAT" && l["run_ms"].is_f64()),
        "{phases:?}"
    );
    let logs = server.logs.lock().unwrap();
    assert!(
        logs.iter().any(|l| l.contains("\"level\":\"trace\"")),
        "trace lines"
    );
    for line in logs.iter() {
        assert!(!line.contains(TOKEN), "the token in the log: {line}");
    }
    assert!(logs.iter().any(|l| l.contains("(hidden)")));
    assert!(logs.iter().any(|l| l.contains("\"name\":\"carol\"")));
}

#[test]
fn health_checks_log_at_debug_and_a_connection_that_does_more_logs_as_usual() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), "hello\n").unwrap();
    let server = ServerProcess::start_in_shell(root.path(), &[], Some("export SFT_LOG=debug"));
    let hello = b"{\"verb\":\"HELLO\"}\n";
    task::block_on(async {
        // Two checks as a load balancer makes them: one HELLO, then two on one connection,
        // ended with a reset (as HAProxy ends its checks).
        for n in [1, 2] {
            let mut raw = Raw::connect(server.addr).await;
            for _ in 0..n {
                raw.write(hello).await;
                assert_eq!(raw.reply().await["ok"], true);
            }
            if n == 2 {
                rustix::net::sockopt::set_socket_linger(&raw.stream, Some(Duration::ZERO)).unwrap();
            }
        }
        // A connection that checks, then does something else.
        let mut raw = Raw::connect(server.addr).await;
        raw.write(hello).await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"a.txt\"}\n").await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(hello).await;
        assert_eq!(raw.reply().await["ok"], true);
    });
    wait_until(Duration::from_secs(20), || {
        server.logs_with("connection closed").len() == 3
    });
    assert_eq!(server.logs_with("connection failed"), Vec::<Value>::new());
    // Sessions end in any order: in the order they were opened.
    let by_session = |mut lines: Vec<Value>| {
        lines.sort_by_key(|l| l["session"].as_u64());
        lines
    };
    let closed = by_session(server.logs_with("connection closed"));
    let levels: Vec<&str> = closed
        .iter()
        .map(|l| l["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["debug", "debug", "info"], "{closed:?}");
    let opened = server.logs_with("connection opened");
    assert_eq!(
        opened.len(),
        1,
        "only the connection that did more: {opened:?}"
    );
    assert_eq!(opened[0]["level"], "info");
    assert_eq!(opened[0]["session"], closed[2]["session"]);
    assert_eq!(opened[0]["peer"], closed[2]["peer"]);
    let accepted = server.logs_with("connection accepted");
    assert_eq!(accepted.len(), 3, "{accepted:?}");
    assert!(accepted.iter().all(|l| l["level"] == "debug"));
    let hellos = by_session(requests(&server, "HELLO"));
    let levels: Vec<&str> = hellos
        .iter()
        .map(|l| l["level"].as_str().unwrap())
        .collect();
    // The last connection's first HELLO came before it did anything else; its second after.
    assert_eq!(
        levels,
        ["debug", "debug", "debug", "debug", "info"],
        "{hellos:?}"
    );
    assert_eq!(requests(&server, "STAT")[0]["level"], "info");
    // Its "connection opened" line comes with its first other request, before that request's.
    let logs = server.logs.lock().unwrap();
    let at = |needle: &str| logs.iter().position(|l| l.contains(needle)).unwrap();
    assert!(at("\"connection opened\"") < at("\"verb\":\"STAT\""));
}

#[test]
fn a_failed_health_check_logs_as_usual() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &[]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"HELLO\",\"size\":3}\n").await;
        assert_eq!(raw.reply().await["ok"], false);
    });
    wait_until(Duration::from_secs(20), || {
        server.logs_with("connection closed").len() == 1
    });
    assert_eq!(server.logs_with("connection opened").len(), 1);
    let hellos = requests(&server, "HELLO");
    assert_eq!(hellos.len(), 1, "{hellos:?}");
    assert_eq!(hellos[0]["outcome"], "bad_request");
    assert_eq!(hellos[0]["level"], "info");
}
