//! Small uploads (under 64 KiB): received whole, verified, then stored in one step. Whatever
//! goes wrong before that step — a wrong hash, a client that vanishes mid-body or before its
//! trailer — nothing is left anywhere: not under the final name, not in the staging area, not
//! as a partial. And replies the server holds back while pipelined requests are already
//! buffered still go out before it waits on the client.

use async_std::task;
use sft_client::{Client, SendOptions, Upload};
use sft_integration_tests::{list_files, random_bytes, Raw, TestServer};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

const GOOD: &[u8] = b"{\"verb\":\"GET\",\"path\":\"hello.txt\"}\n";

fn server() -> TestServer {
    let server = TestServer::start();
    std::fs::write(server.path("hello.txt"), "hello\n").unwrap();
    server
}

/// Sends the good request and checks its reply and body: the connection is in step.
async fn good_request_works(raw: &mut Raw) {
    raw.write(GOOD).await;
    let reply = raw.reply().await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(raw.body(6).await, b"hello\n");
}

/// A `SEND` header for `len` bytes at `path`, with extra fields.
fn header(path: &str, len: usize, extra: &str) -> Vec<u8> {
    format!("{{\"verb\":\"SEND\",\"path\":\"{path}\",\"size\":{len}{extra}}}\n").into_bytes()
}

/// Nothing of an upload to `path` is left: no file, no staging file, no partial.
fn nothing_left(server: &TestServer, path: &str) {
    assert!(!server.path(path).exists(), "{path} was stored");
    assert_eq!(server.staging_files(), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        list_files(&server.path(".sft/partial")),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn a_small_upload_whose_bytes_do_not_match_its_hash_stores_nothing() {
    let server = server();
    let body = random_bytes(4096, 1);
    let wrong = blake3::hash(b"something else").to_hex().to_string();
    let declared = format!(",\"blake3\":\"{wrong}\"");
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        // Eager: the body right behind the header.
        let mut wire = header(
            "eager.bin",
            body.len(),
            &format!("{declared},\"eager\":true"),
        );
        wire.extend_from_slice(&body);
        raw.write(&wire).await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "checksum_mismatch", "{reply}");
        good_request_works(&mut raw).await;

        // After a go-ahead, asking to resume (there is nothing to continue: from 0).
        raw.write(&header(
            "ahead.bin",
            body.len(),
            &format!("{declared},\"resume\":true"),
        ))
        .await;
        let ahead = raw.reply().await;
        assert_eq!(ahead["ok"], true, "{ahead}");
        assert_eq!(ahead["offset"].as_u64().unwrap_or(0), 0, "{ahead}");
        raw.write(&body).await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "checksum_mismatch", "{reply}");

        // A trailer that vouches for other bytes.
        raw.write(&header("trailer.bin", body.len(), ",\"trailer\":true"))
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&body).await;
        raw.write(format!("{{\"blake3\":\"{wrong}\"}}\n").as_bytes())
            .await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "checksum_mismatch", "{reply}");
        good_request_works(&mut raw).await;
    });
    server.wait_idle();
    for path in ["eager.bin", "ahead.bin", "trailer.bin"] {
        nothing_left(&server, path);
    }
}

#[test]
fn a_small_upload_cut_off_leaves_nothing_behind() {
    let server = server();
    let body = random_bytes(40_000, 2);
    let hash = blake3::hash(&body).to_hex().to_string();
    let declared = format!(",\"blake3\":\"{hash}\"");
    task::block_on(async {
        // Mid-body, after a go-ahead (a resumable upload: declared hash).
        let mut raw = Raw::connect(server.addr).await;
        raw.write(&header("cut.bin", body.len(), &declared)).await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&body[..30_000]).await;
        drop(raw);

        // Mid-body, eager.
        let mut raw = Raw::connect(server.addr).await;
        let mut wire = header(
            "eager.bin",
            body.len(),
            &format!("{declared},\"eager\":true"),
        );
        wire.extend_from_slice(&body[..100]);
        raw.write(&wire).await;
        drop(raw);

        // Every byte, but no trailer.
        let mut raw = Raw::connect(server.addr).await;
        let id = ",\"upload_id\":\"0123456789abcdef0123456789abcdef\"";
        let extra = format!(",\"trailer\":true{id}");
        raw.write(&header("trailer.bin", body.len(), &extra)).await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&body).await;
        drop(raw);
    });
    server.wait_idle();
    for path in ["cut.bin", "eager.bin", "trailer.bin"] {
        nothing_left(&server, path);
    }
}

#[test]
fn a_small_upload_is_stored_whole_with_its_time_and_replies_with_its_hash() {
    let server = server();
    let body = random_bytes(65_535, 3);
    let hash = blake3::hash(&body).to_hex().to_string();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let extra = format!(",\"blake3\":\"{hash}\",\"mtime\":1300000000,\"mode\":416");
        raw.write(&header("d/e/f.bin", body.len(), &extra)).await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&body).await;
        let reply = raw.reply().await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["size"], body.len());
        assert_eq!(reply["blake3"], hash.as_str());
        // Without `overwrite` the file now there is kept: `exists`, and the body is not sent.
        raw.write(&header("d/e/f.bin", 3, "")).await;
        assert_eq!(raw.reply().await["code"], "exists");
        good_request_works(&mut raw).await;
    });
    let stored = server.path("d/e/f.bin");
    assert_eq!(std::fs::read(&stored).unwrap(), body);
    let meta = std::fs::metadata(&stored).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.mtime(), 1_300_000_000);
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(server.staging_files(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn replies_held_back_for_pipelined_requests_go_out_before_the_server_waits() {
    let server = server();
    let body = random_bytes(1000, 4);
    // Far shorter than the server's stall timeout (60 s), which a reply held back until the
    // next request ends would have to wait for.
    let prompt = Duration::from_secs(20);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        // A whole upload, then the next one's header and only part of its body.
        let mut wire = header("a.bin", body.len(), ",\"eager\":true");
        wire.extend_from_slice(&body);
        wire.extend(header("b.bin", body.len(), ",\"eager\":true"));
        wire.extend_from_slice(&body[..10]);
        raw.write(&wire).await;
        let first = async_std::future::timeout(prompt, raw.reply())
            .await
            .expect("the first reply arrives while the second body is awaited");
        assert_eq!(first["ok"], true, "{first}");
        raw.write(&body[10..]).await;
        assert_eq!(raw.reply().await["ok"], true);

        // A whole request, then part of the next header.
        let mut wire = GOOD.to_vec();
        wire.extend_from_slice(&GOOD[..10]);
        raw.write(&wire).await;
        let reply = async_std::future::timeout(prompt, raw.reply())
            .await
            .expect("the reply arrives while the next header is awaited");
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(raw.body(6).await, b"hello\n");
        raw.write(&GOOD[10..]).await;
        assert_eq!(raw.reply().await["ok"], true);
        assert_eq!(raw.body(6).await, b"hello\n");
    });
    assert_eq!(std::fs::read(server.path("b.bin")).unwrap(), body);
}

/// A scripted server that says it takes eager uploads: answers `HELLO`, then returns the
/// request line that follows it (or the first line, if that is not a `HELLO`).
fn eager_server() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let thread = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if !line.contains("\"HELLO\"") {
            return line;
        }
        let hello = sft_protocol::verbs::HelloReply {
            protocol: 2,
            ..Default::default()
        };
        let mut reply = serde_json::to_value(&hello).unwrap();
        reply["ok"] = true.into();
        (&conn).write_all(format!("{reply}\n").as_bytes()).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        line
    });
    (addr, thread)
}

#[test]
fn a_file_too_small_to_have_a_partial_goes_eagerly_even_when_resuming() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f.bin");
    std::fs::write(&local, random_bytes(4096, 5)).unwrap();
    let (addr, thread) = eager_server();
    task::block_on(async {
        let mut client = Client::connect(&addr, 0).await.unwrap();
        let jobs = [Upload::named(&local, "f.bin".into()).unwrap()];
        let opts = SendOptions {
            resume: true,
            ..SendOptions::default()
        };
        // The scripted server stops after the request: the outcome is an error.
        client.send_files(&jobs, opts, |_, _| {}).await;
    });
    let line = thread.join().unwrap();
    let request: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(request["verb"], "SEND", "{line}");
    assert_eq!(request["eager"], true, "{line}");
    assert!(request.get("resume").is_none(), "{line}");
}
