//! The wire additions for streams and folders, spoken by hand: chunked `SEND` bodies
//! (PROTOCOL.md §3.3) and `MKDIR`.

use async_std::task;
use sft_integration_tests::{random_bytes, Raw, TestServer};

const GOOD: &[u8] = b"{\"verb\":\"GET\",\"path\":\"hello.txt\"}\n";

fn server_with(args: &[&str]) -> TestServer {
    let server = TestServer::start_with(args, sft_commands::builtins());
    std::fs::write(server.path("hello.txt"), "hello\n").unwrap();
    server
}

/// The connection is still in step: a plain GET works on it.
async fn still_usable(raw: &mut Raw) {
    raw.write(GOOD).await;
    let reply = raw.reply().await;
    assert_eq!(reply["size"], 6, "{reply}");
    assert_eq!(raw.body(6).await, b"hello\n");
}

/// `data` as a chunked body: chunks of at most `chunk` bytes, then the terminator (with the hash
/// `blake3`, if given).
fn chunked(data: &[u8], chunk: usize, blake3: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    for part in data.chunks(chunk) {
        out.extend(format!("{{\"size\":{}}}\n", part.len()).as_bytes());
        out.extend(part);
    }
    match blake3 {
        Some(h) => out.extend(format!("{{\"size\":0,\"blake3\":\"{h}\"}}\n").as_bytes()),
        None => out.extend(b"{\"size\":0}\n"),
    }
    out
}

#[test]
fn a_chunked_upload_is_stored_whole_and_verified() {
    let server = server_with(&[]);
    let data = random_bytes(700_000, 61);
    let hash = blake3::hash(&data).to_hex().to_string();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"in/piped.bin\",\"body\":\"chunked\"}\n")
            .await;
        assert_eq!(raw.reply().await, serde_json::json!({"ok": true}));
        raw.write(&chunked(&data, 100_000, Some(&hash))).await;
        let reply = raw.reply().await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["size"], data.len());
        assert_eq!(reply["blake3"], hash.as_str());
        still_usable(&mut raw).await;

        // Without a declared hash the server still reports the one it computed.
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"empty\",\"body\":\"chunked\"}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(b"{\"size\":0}\n").await;
        let reply = raw.reply().await;
        assert_eq!(reply["size"], 0, "{reply}");
        assert_eq!(reply["blake3"], blake3::hash(b"").to_hex().as_str());
    });
    assert!(std::fs::read(server.path("in/piped.bin")).unwrap() == data);
    assert_eq!(std::fs::read(server.path("empty")).unwrap(), b"");
    server.wait_idle();
    assert!(server.staging_files().is_empty());
}

#[test]
fn a_chunked_upload_that_does_not_match_its_hash_stores_nothing() {
    let server = server_with(&[]);
    let data = random_bytes(50_000, 62);
    let wrong = blake3::hash(b"something else").to_hex().to_string();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"bad.bin\",\"body\":\"chunked\"}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&chunked(&data, 7_000, Some(&wrong))).await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "checksum_mismatch", "{reply}");
        still_usable(&mut raw).await;
    });
    assert!(!server.path("bad.bin").exists());
    assert!(server.staging_files().is_empty());
}

#[test]
fn the_upload_limit_refuses_a_chunked_body_early_and_the_connection_goes_on() {
    let server = server_with(&["--max-upload-bytes", "100000"]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"big.bin\",\"body\":\"chunked\"}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        // 60 000 bytes fit; the next 60 000 do not: the refusal comes before the body ends.
        raw.write(b"{\"size\":60000}\n").await;
        raw.write(&random_bytes(60_000, 63)).await;
        raw.write(b"{\"size\":60000}\n").await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "too_large", "{reply}");
        assert!(
            reply["message"].as_str().unwrap().contains("100000"),
            "{reply}"
        );
        // The client finishes the chunk it announced and ends the body; nothing more comes.
        raw.write(&random_bytes(60_000, 64)).await;
        raw.write(b"{\"size\":5}\nhello{\"size\":0}\n").await;
        still_usable(&mut raw).await;
    });
    assert!(!server.path("big.bin").exists());
    server.wait_idle();
    assert!(server.staging_files().is_empty());
}

#[test]
fn broken_chunk_framing_is_answered_and_closes_the_connection() {
    let server = server_with(&[]);
    let cases: &[(&[u8], &str)] = &[
        (b"{\"size\":1048577}\n", "too_large"),
        (b"5\nhello", "bad_request"),
        (b"{\"size\":-3}\n", "bad_request"),
    ];
    for (framing, code) in cases {
        task::block_on(async {
            let mut raw = Raw::connect(server.addr).await;
            raw.write(b"{\"verb\":\"SEND\",\"path\":\"f.bin\",\"body\":\"chunked\"}\n")
                .await;
            assert_eq!(raw.reply().await["ok"], true);
            raw.write(framing).await;
            let reply = raw.reply().await;
            assert_eq!(reply["code"], *code, "{reply}");
            assert!(raw.closed().await, "the connection is out of step");
        });
    }
    server.wait_idle();
    assert!(!server.path("f.bin").exists());
    assert!(server.staging_files().is_empty());
}

#[test]
fn a_chunked_upload_cut_off_midway_leaves_nothing() {
    let server = server_with(&[]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"cut.bin\",\"body\":\"chunked\"}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(b"{\"size\":1000}\n").await;
        raw.write(&[1u8; 400]).await;
    });
    server.wait_idle();
    assert!(!server.path("cut.bin").exists());
    assert!(server.staging_files().is_empty());
}

#[test]
fn chunked_requests_are_checked_before_the_go_ahead() {
    let server = server_with(&[]);
    let read_only = server_with(&["--read-only"]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let table: &[(&[u8], &str)] = &[
            (
                b"{\"verb\":\"SEND\",\"path\":\"hello.txt\",\"body\":\"chunked\"}\n",
                "exists",
            ),
            (
                b"{\"verb\":\"SEND\",\"path\":\"../x\",\"body\":\"chunked\"}\n",
                "forbidden",
            ),
            (
                b"{\"verb\":\"SEND\",\"path\":\"x\",\"size\":3,\"body\":\"chunked\"}\n",
                "bad_request",
            ),
            (
                b"{\"verb\":\"SEND\",\"path\":\"x\",\"body\":\"gzip\"}\n",
                "unsupported",
            ),
        ];
        for (request, code) in table {
            raw.write(request).await;
            let reply = raw.reply().await;
            assert_eq!(reply["code"], *code, "{reply}");
        }
        still_usable(&mut raw).await;

        let mut raw = Raw::connect(read_only.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"x\",\"body\":\"chunked\"}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "read_only");
        still_usable(&mut raw).await;
    });
    assert_eq!(std::fs::read(server.path("hello.txt")).unwrap(), b"hello\n");
}

#[test]
fn mkdir_creates_folders_inside_the_root_only() {
    let server = server_with(&[]);
    let read_only = server_with(&["--read-only"]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"MKDIR\",\"path\":\"a/b c/\xc3\xbc\"}\n")
            .await;
        assert_eq!(
            raw.reply().await,
            serde_json::json!({"ok": true, "created": true})
        );
        raw.write(b"{\"verb\":\"MKDIR\",\"path\":\"a/b c/\xc3\xbc\"}\n")
            .await;
        assert_eq!(
            raw.reply().await,
            serde_json::json!({"ok": true, "created": false}),
            "an existing folder is fine"
        );
        let table: &[(&[u8], &str)] = &[
            (b"{\"verb\":\"MKDIR\",\"path\":\"../out\"}\n", "forbidden"),
            (b"{\"verb\":\"MKDIR\",\"path\":\"/abs\"}\n", "forbidden"),
            (b"{\"verb\":\"MKDIR\",\"path\":\".sft/x\"}\n", "forbidden"),
            (
                b"{\"verb\":\"MKDIR\",\"path\":\"hello.txt\"}\n",
                "bad_request",
            ),
            (b"{\"verb\":\"MKDIR\"}\n", "bad_request"),
        ];
        for (request, code) in table {
            raw.write(request).await;
            let reply = raw.reply().await;
            assert_eq!(reply["code"], *code, "{reply}");
        }
        still_usable(&mut raw).await;

        let mut raw = Raw::connect(read_only.addr).await;
        raw.write(b"{\"verb\":\"MKDIR\",\"path\":\"new\"}\n").await;
        assert_eq!(raw.reply().await["code"], "read_only");
    });
    assert!(server.path("a/b c/ü").is_dir());
    assert!(!server.root.path().parent().unwrap().join("out").exists());
    assert!(!read_only.path("new").exists());
}
