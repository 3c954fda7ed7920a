//! Eager uploads (PROTOCOL.md §3.1): a sized body right behind its header, no go-ahead. Every
//! refusal comes after the server read and dropped the body, so pipelined uploads stay in step
//! and a refused body is never read as a request.

use async_std::task;
use sft_integration_tests::{Raw, TestServer};

const GOOD: &[u8] = b"{\"verb\":\"GET\",\"path\":\"hello.txt\"}\n";

fn server_with(args: &[&str]) -> TestServer {
    let server = TestServer::start_with(args, sft_commands::builtins());
    std::fs::write(server.path("hello.txt"), "hello\n").unwrap();
    server
}

/// Sends the good request and checks its reply and body: the connection is in step.
async fn good_request_works(raw: &mut Raw) {
    raw.write(GOOD).await;
    let reply = raw.reply().await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["size"], 6);
    assert_eq!(raw.body(6).await, b"hello\n");
}

/// An eager upload of `body` to `path`, with extra request fields.
fn eager(path: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut out = format!(
        "{{\"verb\":\"SEND\",\"path\":\"{path}\",\"size\":{},\"eager\":true{extra}}}\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn pipelined_eager_uploads_are_answered_in_order_and_a_refused_body_is_dropped() {
    let server = server_with(&[]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        // Three uploads in one write; the middle one is refused (`exists`), and its body is a
        // request line: read as a header, it would get a reply of its own.
        let hash = blake3::hash(b"first").to_hex().to_string();
        let mut wire = eager("a.txt", b"first", &format!(",\"blake3\":\"{hash}\""));
        wire.extend(eager("hello.txt", GOOD, ""));
        wire.extend(eager("sub/c.txt", b"third!", ""));
        raw.write(&wire).await;
        let first = raw.reply().await;
        assert_eq!(first["ok"], true, "{first}");
        assert_eq!(first["size"], 5, "a final reply, not a go-ahead: {first}");
        assert_eq!(first["blake3"], hash.as_str());
        let second = raw.reply().await;
        assert_eq!(second["code"], "exists", "{second}");
        let third = raw.reply().await;
        assert_eq!(third["ok"], true, "{third}");
        assert_eq!(third["size"], 6);
        good_request_works(&mut raw).await;
    });
    assert_eq!(std::fs::read(server.path("a.txt")).unwrap(), b"first");
    assert_eq!(std::fs::read(server.path("sub/c.txt")).unwrap(), b"third!");
    assert_eq!(
        std::fs::read(server.path("hello.txt")).unwrap(),
        b"hello\n",
        "the refused body was not stored"
    );
}

#[test]
fn an_eager_upload_to_a_read_only_server_is_refused_after_its_body() {
    let server = server_with(&["--read-only"]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(&eager("new.txt", GOOD, "")).await;
        assert_eq!(raw.reply().await["code"], "read_only");
        good_request_works(&mut raw).await;
    });
    assert!(!server.path("new.txt").exists());
}

#[test]
fn eager_with_resume_or_trailer_is_a_bad_request_after_its_body() {
    let server = server_with(&[]);
    let hash = blake3::hash(GOOD).to_hex().to_string();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for extra in [
            format!(",\"blake3\":\"{hash}\",\"resume\":true"),
            ",\"trailer\":true,\"upload_id\":\"0123456789abcdef0123456789abcdef\"".to_owned(),
        ] {
            raw.write(&eager("x.txt", GOOD, &extra)).await;
            let reply = raw.reply().await;
            assert_eq!(reply["code"], "bad_request", "{extra}: {reply}");
            assert!(
                reply["message"].as_str().unwrap().contains("eager"),
                "{reply}"
            );
        }
        good_request_works(&mut raw).await;
    });
    assert!(!server.path("x.txt").exists());
}

#[test]
fn refusals_before_any_handler_come_after_the_eager_body_too() {
    let server = server_with(&[]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        // An unknown verb, and a verb that takes no body.
        let mut wire = format!(
            "{{\"verb\":\"NOPE\",\"size\":{},\"eager\":true}}\n",
            GOOD.len()
        )
        .into_bytes();
        wire.extend_from_slice(GOOD);
        raw.write(&wire).await;
        assert_eq!(raw.reply().await["code"], "unknown_verb");
        let mut wire = format!(
            "{{\"verb\":\"STAT\",\"path\":\"hello.txt\",\"size\":{},\"eager\":true}}\n",
            GOOD.len()
        )
        .into_bytes();
        wire.extend_from_slice(GOOD);
        raw.write(&wire).await;
        assert_eq!(raw.reply().await["code"], "bad_request");
        good_request_works(&mut raw).await;
    });
}

#[test]
fn eager_with_a_chunked_body_is_refused_and_the_connection_closed() {
    let server = server_with(&[]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"s.txt\",\"body\":\"chunked\",\"eager\":true}\n{\"size\":0}\n")
            .await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "bad_request", "{reply}");
        assert!(raw.closed().await);
    });
    assert!(!server.path("s.txt").exists());
}
