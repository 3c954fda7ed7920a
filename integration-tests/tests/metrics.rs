//! `sft-server --metrics`: the Prometheus page on a port of its own moves with what the server
//! does (transfers, refusals, tokens, TLS), is valid for the reference parser, and a scraper
//! that never sends its request holds up neither the page nor the transfers.

use async_std::task;
use sft_integration_tests::{bin, expect_code, random_bytes, wait_until, Raw, ServerProcess};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Sends `request` to the metrics port; returns the status code and the body.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    if status == 200 {
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len());
    (status, body.to_owned())
}

/// The page, checked by the reference parser where it is installed.
fn scrape(addr: SocketAddr) -> String {
    let (status, page) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    validate(&page);
    page
}

/// Parses `page` with `prometheus_client`'s `text_string_to_metric_families` (and
/// `promtool check metrics`, where installed); skips, saying so, where neither is.
fn validate(page: &str) {
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import sys\n\
             try:\n    from prometheus_client.parser import text_string_to_metric_families\n\
             except ImportError:\n    sys.exit(3)\n\
             families = list(text_string_to_metric_families(sys.stdin.read()))\n\
             assert families, 'no metric families'\n\
             print(len(families))\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(page.as_bytes())?;
            child.wait_with_output()
        });
    match parsed {
        Ok(out) if out.status.code() == Some(3) => {
            eprintln!("SKIPPED: the prometheus_client module is missing (pip install prometheus-client); the page was not checked by its parser")
        }
        Ok(out) => assert!(
            out.status.success(),
            "prometheus_client refused the page: {}\n{page}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!(
            "SKIPPED: python3 cannot run ({e}); the page was not checked by prometheus_client"
        ),
    }
    if let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(page.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        // promtool exits 3 for lint hints alone; 1 means the page does not parse.
        assert_ne!(
            out.status.code(),
            Some(1),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every sample of the page: `name{labels}` → value.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn value(page: &str, key: &str) -> f64 {
    samples(page).get(key).copied().unwrap_or(0.0)
}

#[test]
fn the_page_counts_transfers_and_refusals_and_parses() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("four.bin"), random_bytes(4096, 1)).unwrap();
    let server = ServerProcess::start(
        root.path(),
        &[
            "--host",
            "127.0.0.1",
            "--metrics",
            "127.0.0.1:0",
            "--max-connections",
            "2",
        ],
    );
    let metrics = server.metrics_addr();
    assert_ne!(metrics.port(), server.addr.port());
    let before = scrape(metrics);
    assert_eq!(value(&before, "sft_connections_accepted_total"), 0.0);
    assert_eq!(
        value(&before, "sft_requests_total{verb=\"GET\",outcome=\"ok\"}"),
        0.0
    );
    assert!(samples(&before).contains_key("sft_requests_total{verb=\"GET\",outcome=\"ok\"}"));

    // A scraper that connects and never sends holds up neither the page nor the transfers.
    let _silent = TcpStream::connect(metrics).unwrap();

    let upload = random_bytes(10_000, 2);
    let page = task::block_on(async {
        let mut first = Raw::connect(server.addr).await;
        let sent = first
            .send(
                serde_json::json!({"verb": "SEND", "path": "up.bin"}),
                &upload,
            )
            .await;
        assert_eq!(sent["ok"], true, "{sent}");
        for _ in 0..3 {
            first
                .write(b"{\"verb\":\"GET\",\"path\":\"four.bin\"}\n")
                .await;
            assert_eq!(first.reply().await["size"], 4096);
            assert_eq!(first.body(4096).await, random_bytes(4096, 1));
        }
        first
            .write(b"{\"verb\":\"GET\",\"path\":\"missing\"}\n")
            .await;
        assert_eq!(first.reply().await["code"], "not_found");
        first.write(b"{\"verb\":\"FROB\"}\n").await;
        assert_eq!(first.reply().await["code"], "unknown_verb");
        first.write(b"not json\n").await;
        assert_eq!(first.reply().await["code"], "bad_request");
        // The second connection fills --max-connections 2; a third is refused busy.
        let mut second = Raw::connect(server.addr).await;
        second.write(b"{\"verb\":\"HELLO\"}\n").await;
        assert_eq!(second.reply().await["ok"], true);
        let mut third = Raw::connect(server.addr).await;
        assert_eq!(third.reply().await["code"], "busy");
        // Both held open while scraping.
        let page = scrape(metrics);
        drop((first, second));
        page
    });
    let got = |key: &str| value(&page, key);
    assert_eq!(got("sft_connections_open"), 2.0);
    assert_eq!(got("sft_connections_accepted_total"), 2.0);
    assert_eq!(got("sft_connections_refused_total{reason=\"busy\"}"), 1.0);
    assert_eq!(
        got("sft_connections_refused_total{reason=\"allow_list\"}"),
        0.0
    );
    assert_eq!(got("sft_requests_total{verb=\"SEND\",outcome=\"ok\"}"), 1.0);
    assert_eq!(got("sft_requests_total{verb=\"GET\",outcome=\"ok\"}"), 3.0);
    assert_eq!(
        got("sft_requests_total{verb=\"GET\",outcome=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        got("sft_requests_total{verb=\"HELLO\",outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(
        got("sft_requests_total{verb=\"unknown\",outcome=\"unknown_verb\"}"),
        1.0
    );
    assert_eq!(
        got("sft_requests_total{verb=\"unknown\",outcome=\"bad_request\"}"),
        1.0
    );
    assert_eq!(got("sft_received_bytes_total"), 10_000.0);
    assert_eq!(got("sft_sent_bytes_total"), 3.0 * 4096.0);
    assert_eq!(got("sft_upload_slots_in_use"), 0.0);
    assert_eq!(got("sft_upload_slots_max"), 128.0);
    assert_eq!(got("sft_token_refusals_total{code=\"unauthorized\"}"), 0.0);
    assert_eq!(got("sft_tls_handshakes_total{result=\"ok\"}"), 0.0);
    // Every verb the server knows has its series, from its registry: none is left out.
    let verbs = server.logs_with("listening")[0]["verbs"]
        .as_str()
        .unwrap()
        .to_owned();
    for verb in verbs.split(',') {
        let key = format!("sft_requests_total{{verb=\"{verb}\",outcome=\"ok\"}}");
        assert!(samples(&page).contains_key(&key), "{key}");
    }

    // Anything but GET /metrics.
    assert_eq!(http(metrics, b"GET / HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(http(metrics, b"GET /metricsx HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(http(metrics, b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let mut stream = TcpStream::connect(metrics).unwrap();
    let _ = stream.write_all(huge.as_bytes());
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 431 "),
        "an oversized request is refused: {:?}",
        String::from_utf8_lossy(&reply)
    );
}

#[test]
fn token_refusals_tls_handshakes_and_plaintext_refusals_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), b"hello").unwrap();
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(b"s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice read {hash}\n")).unwrap();
    let tls = dir.path().join("tls");
    let server = ServerProcess::start(
        &root,
        &[
            "--host",
            "127.0.0.1",
            "--metrics",
            "127.0.0.1:0",
            "--tokens",
            tokens.to_str().unwrap(),
            "--tls-self-signed",
            tls.to_str().unwrap(),
        ],
    );
    let metrics = server.metrics_addr();
    let fingerprint = server
        .logs_with("serving TLS only; clients may pin this certificate with --fingerprint")[0]
        ["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let addr = server.addr.to_string();
    let home = tempfile::tempdir().unwrap();
    let sft = |args: &[&str], token: Option<&str>| {
        let mut command = Command::new(bin("sft"));
        command
            .args(args)
            .current_dir(home.path())
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SFT_TOKEN")
            .stdin(Stdio::null());
        if let Some(token) = token {
            command.env("SFT_TOKEN", token);
        }
        command.output().unwrap()
    };
    // A download with the token: one handshake, ok.
    let out = sft(
        &[
            "get",
            "--fingerprint",
            &fingerprint,
            &addr,
            "a.txt",
            "a.txt",
        ],
        Some("s3cret"),
    );
    expect_code(&out, 0);
    // A wrong token: refused.
    let out = sft(
        &[
            "get",
            "--fingerprint",
            &fingerprint,
            &addr,
            "a.txt",
            "b.txt",
        ],
        Some("wrong"),
    );
    assert_ne!(out.status.code(), Some(0));
    // Plaintext to the TLS port: refused tls_required.
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"HELLO\"}\n").await;
        assert_eq!(raw.reply().await["code"], "tls_required");
    });
    // A handshake that breaks off.
    {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    // The server may count the failed handshake just after it closed the connection.
    wait_until(Duration::from_secs(10), || {
        value(
            &scrape(metrics),
            "sft_tls_handshakes_total{result=\"failed\"}",
        ) >= 1.0
    });
    let page = scrape(metrics);
    let got = |key: &str| value(&page, key);
    assert!(
        got("sft_tls_handshakes_total{result=\"ok\"}") >= 2.0,
        "{page}"
    );
    assert_eq!(
        got("sft_tls_handshakes_total{result=\"failed\"}"),
        1.0,
        "{page}"
    );
    assert_eq!(
        got("sft_connections_refused_total{reason=\"tls_required\"}"),
        1.0
    );
    assert_eq!(
        got("sft_token_refusals_total{code=\"unauthorized\"}"),
        1.0,
        "{page}"
    );
    assert_eq!(
        got("sft_requests_total{verb=\"AUTH\",outcome=\"unauthorized\"}"),
        1.0
    );
    assert_eq!(got("sft_requests_total{verb=\"GET\",outcome=\"ok\"}"), 1.0);
}

#[test]
fn connections_outside_the_allow_list_are_counted() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        root.path(),
        &[
            "--host",
            "127.0.0.1",
            "--metrics",
            "127.0.0.1:0",
            "--allow",
            "10.0.0.0/8",
        ],
    );
    let metrics = server.metrics_addr();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "closed unread");
    }
    let page = scrape(metrics);
    assert_eq!(
        value(
            &page,
            "sft_connections_refused_total{reason=\"allow_list\"}"
        ),
        2.0
    );
    assert_eq!(value(&page, "sft_connections_accepted_total"), 0.0);
}

#[test]
fn the_server_refuses_to_start_when_the_metrics_address_cannot_be_bound() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap().to_string();
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(bin("sft-server"))
        .args([
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--metrics",
            &at,
            "--root",
        ])
        .arg(root.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen for metrics on"), "{err}");
}

#[test]
fn an_upload_in_progress_holds_a_slot_and_an_abandoned_one_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        root.path(),
        &["--host", "127.0.0.1", "--metrics", "127.0.0.1:0"],
    );
    let metrics = server.metrics_addr();
    let sent = 100_000;
    {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let header = format!(
            "{{\"verb\":\"SEND\",\"path\":\"up.bin\",\"size\":200000,\"trailer\":true,\"upload_id\":\"{:032x}\"}}\n",
            7
        );
        stream.write_all(header.as_bytes()).unwrap();
        let mut reply = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut reply).unwrap();
        assert!(reply.starts_with("{\"ok\":true"), "go-ahead: {reply}");
        stream.write_all(&vec![b'x'; sent]).unwrap();
        let page = scrape(metrics);
        assert_eq!(value(&page, "sft_upload_slots_in_use"), 1.0, "{page}");
        assert_eq!(value(&page, "sft_partials_kept"), 0.0);
        // Dropped: the upload breaks off.
    }
    let aborted = "sft_requests_total{verb=\"SEND\",outcome=\"aborted\"}";
    wait_until(Duration::from_secs(20), || {
        value(&scrape(metrics), aborted) == 1.0
    });
    let page = scrape(metrics);
    assert_eq!(value(&page, "sft_upload_slots_in_use"), 0.0);
    assert_eq!(value(&page, "sft_partials_kept"), 1.0, "{page}");
    assert_eq!(value(&page, "sft_partials_kept_bytes"), sent as f64);
    assert_eq!(value(&page, "sft_received_bytes_total"), sent as f64);
}
