//! The error codes PROTOCOL.md states for each refusal, one row each, spoken by hand over a raw
//! socket: the code, and whether the connection is usable afterwards.

use async_std::task;
use sft_integration_tests::{Raw, TestServer};
use sft_protocol::limits::MAX_HEADER_LEN;
use std::os::unix::fs::{symlink, PermissionsExt};

const GOOD: &[u8] = b"{\"verb\":\"GET\",\"path\":\"hello.txt\"}\n";

fn server() -> TestServer {
    let server = TestServer::start();
    std::fs::write(server.path("hello.txt"), "hello\n").unwrap();
    symlink("loop-b", server.path("loop-a")).unwrap();
    symlink("loop-a", server.path("loop-b")).unwrap();
    server
}

/// Whether the connection is still in step: a good request gets its reply and body.
async fn usable(raw: &mut Raw) {
    raw.write(GOOD).await;
    let reply = raw.reply().await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(raw.body(6).await, b"hello\n");
}

const ID: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn each_refusal_has_its_stated_code_and_leaves_the_connection_usable() {
    let server = server();
    let table: Vec<(String, &str)> = vec![
        // §2: the verb's characters.
        (r#"{"verb":"G T"}"#.into(), "bad_request"),
        (r#"{"verb":"G\u002fT"}"#.into(), "bad_request"),
        // §2: versions.
        (
            r#"{"verb":"GET","path":"hello.txt","v":0}"#.into(),
            "unsupported",
        ),
        (
            r#"{"verb":"GET","path":"hello.txt","v":99}"#.into(),
            "unsupported",
        ),
        // §1: numbers are integers written as integers; keys are not repeated.
        (
            r#"{"verb":"GET","path":"hello.txt","v":1e0}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"GET","path":"hello.txt","offset":1e0}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"SEND","path":"x","size":1e0}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"SEND","path":"x","size":1.0}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"GET","path":"hello.txt","path":"x"}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"GET","path":"hello.txt","future":1,"future":1}"#.into(),
            "bad_request",
        ),
        // §3.1: what a request may carry.
        (
            r#"{"verb":"GET","path":"hello.txt","size":3}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"STAT","path":"hello.txt","body":"chunked"}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"SEND","path":"x","size":1,"body":"chunked"}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"SEND","path":"x","body":"gzip"}"#.into(),
            "unsupported",
        ),
        (r#"{"verb":"NOPE","size":3}"#.into(), "unknown_verb"),
        // SEND's own checks.
        (
            r#"{"verb":"SEND","path":"x","size":1,"resume":true}"#.into(),
            "bad_request",
        ),
        (
            format!(r#"{{"verb":"SEND","path":"x","size":1,"upload_id":"{ID}"}}"#),
            "bad_request",
        ),
        (
            r#"{"verb":"SEND","path":"","size":1}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"SEND","path":".","body":"chunked"}"#.into(),
            "bad_request",
        ),
        (
            r#"{"verb":"SEND","path":"hello.txt","size":1}"#.into(),
            "exists",
        ),
        // §4: a symlink loop.
        (r#"{"verb":"GET","path":"loop-a"}"#.into(), "bad_request"),
        (r#"{"verb":"STAT","path":"loop-a/x"}"#.into(), "bad_request"),
        (r#"{"verb":"GET","path":"../x"}"#.into(), "forbidden"),
    ];
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (line, code) in &table {
            raw.write(format!("{line}\n").as_bytes()).await;
            let reply = raw.reply().await;
            assert_eq!(reply["ok"], false, "{line} -> {reply}");
            assert_eq!(reply["code"], *code, "{line} -> {reply}");
            usable(&mut raw).await;
        }
    });
    assert!(!server.path("x").exists());
}

#[test]
fn permission_denied_is_forbidden() {
    let server = server();
    let locked = server.path("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("f"), "x").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read_dir(&locked).is_ok() {
        // Privileged: the file system denies nothing to this process. Nothing to check.
        eprintln!("skipped: permissions are not enforced for this user");
        return;
    }
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for line in [
            r#"{"verb":"GET","path":"locked/f"}"#,
            r#"{"verb":"SEND","path":"locked/g","size":1}"#,
        ] {
            raw.write(format!("{line}\n").as_bytes()).await;
            let reply = raw.reply().await;
            assert_eq!(reply["code"], "forbidden", "{line} -> {reply}");
            usable(&mut raw).await;
        }
    });
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn carriage_returns_count_toward_the_header_limit() {
    let server = server();
    // A header line of exactly the limit, `\n` included, is read.
    let line = |end: &str| {
        let head = r#"{"verb":"GET","path":"hello.txt","pad":""#;
        let tail = format!("\"}}{end}");
        let pad = "a".repeat(MAX_HEADER_LEN - head.len() - tail.len());
        format!("{head}{pad}{tail}")
    };
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let exact = line("\n");
        assert_eq!(exact.len(), MAX_HEADER_LEN);
        raw.write(exact.as_bytes()).await;
        assert_eq!(raw.reply().await["ok"], true);
        assert_eq!(raw.body(6).await, b"hello\n");
        // The same line ended by `\r\n` is one byte over: the limit is reached at its `\r`.
        // (Sent up to there only, so that the server reads every byte it was sent.)
        let mut over = exact.clone();
        over.pop();
        over.push('\r');
        assert_eq!(over.len(), MAX_HEADER_LEN);
        raw.write(over.as_bytes()).await;
        assert_eq!(raw.reply().await["code"], "too_large");
        assert!(raw.closed().await);
    });
}

#[test]
fn a_trailer_line_over_the_limit_is_too_large_and_closes() {
    let server = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(
            format!(r#"{{"verb":"SEND","path":"t","size":1,"trailer":true,"upload_id":"{ID}"}}"#)
                .as_bytes(),
        )
        .await;
        raw.write(b"\n").await;
        assert_eq!(raw.reply().await["ok"], true, "go-ahead");
        raw.write(b"x").await;
        raw.write(&vec![b' '; MAX_HEADER_LEN]).await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "too_large", "{reply}");
        assert!(raw.closed().await);
    });
    assert!(!server.path("t").exists());
}

#[test]
fn escapes_are_valid_json_end_to_end() {
    let server = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"v\\u0065rb\":\"G\\u0045T\",\"path\":\"hell\\u006f.txt\"}\n")
            .await;
        let reply = raw.reply().await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(raw.body(6).await, b"hello\n");
        raw.write(
            b"{\"verb\":\"ST\\u0041T\",\"path\":\"hello\\/..\\/hello.txt\",\"hash\":false}\n",
        )
        .await;
        let reply = raw.reply().await;
        assert_eq!(reply["entry"]["name"], "hello.txt", "{reply}");
    });
}

#[test]
fn get_with_an_offset_of_zero_echoes_it() {
    let server = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (offset, size) in [(0, 6), (2, 4)] {
            let line = format!(r#"{{"verb":"GET","path":"hello.txt","offset":{offset}}}"#);
            raw.write(format!("{line}\n").as_bytes()).await;
            let reply = raw.reply().await;
            assert_eq!(reply["offset"], offset, "{reply}");
            assert_eq!(reply["file_size"], 6, "{reply}");
            assert_eq!(reply["size"], size, "{reply}");
            assert_eq!(raw.body(size).await, &b"hello\n"[6 - size..]);
        }
        // No offset given: neither is echoed.
        raw.write(GOOD).await;
        let reply = raw.reply().await;
        assert!(
            reply.get("offset").is_none() && reply.get("file_size").is_none(),
            "{reply}"
        );
        assert_eq!(raw.body(6).await, b"hello\n");
    });
}

#[test]
fn send_onto_a_symlink_replaces_the_link_not_its_target() {
    let server = server();
    symlink("hello.txt", server.path("link")).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"link\",\"size\":3}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "exists");
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"link\",\"size\":3,\"overwrite\":true}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true, "go-ahead");
        raw.write(b"new").await;
        assert_eq!(raw.reply().await["size"], 3);
    });
    let link = std::fs::symlink_metadata(server.path("link")).unwrap();
    assert!(
        link.file_type().is_file(),
        "the link was replaced by a file"
    );
    assert_eq!(std::fs::read(server.path("link")).unwrap(), b"new");
    assert_eq!(std::fs::read(server.path("hello.txt")).unwrap(), b"hello\n");
}
