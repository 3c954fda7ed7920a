//! The generic call: `sft call` and `Client::call` with built-in verbs, the example crate's
//! verbs, and a verb defined right here, none of which the client was built to know.

use async_std::task;
use serde_json::{json, Map, Value};
use sft_client::{Body, Client, Error};
use sft_commands::{BoxFuture, Command, CommandError, Context};
use sft_integration_tests::{random_bytes, sft, sft_stdin, TestServer};
use sft_protocol::verbs::{StreamFormat, Verb};
use sft_protocol::{ErrorCode, Request, WireError};
use std::fs;
use std::process::Output;

/// `COUNT`: a line stream `{"n":1}` … `{"n":to}`, ended by `{"end":true,"count":to}`, or by an
/// error line in place of item `fail_at`.
#[derive(Debug)]
struct Count;

#[derive(serde::Serialize, serde::Deserialize)]
struct CountRequest {
    to: u64,
    #[serde(default)]
    fail_at: Option<u64>,
}

impl Verb for CountRequest {
    const NAME: &'static str = "COUNT";
}

impl Command for Count {
    fn verb(&self) -> &'static str {
        CountRequest::NAME
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: CountRequest = request.args()?;
            ctx.reply_ok(&json!({"stream": StreamFormat::Lines}))
                .await
                .map_err(CommandError::Abort)?;
            for n in 1..=args.to {
                if args.fail_at == Some(n) {
                    let err = WireError::internal(format!("failed at {n}"));
                    return ctx.reply_error(&err).await.map_err(CommandError::Abort);
                }
                ctx.write_line(&json!({"n": n}))
                    .await
                    .map_err(CommandError::Abort)?;
            }
            ctx.write_line(&json!({"end": true, "count": args.to}))
                .await
                .map_err(CommandError::Abort)
        })
    }
}

/// A server with the built-ins, the example crate's `WC` and `HEAD`, and `COUNT`.
fn server() -> TestServer {
    let mut registry = sft_text_verbs::registry();
    registry.register(Count);
    let server = TestServer::start_with(&[], registry);
    fs::write(server.path("hello.txt"), "hello\n").unwrap();
    server
}

#[track_caller]
fn code(out: &Output, want: i32) {
    assert_eq!(
        out.status.code(),
        Some(want),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn sft_call_with_built_in_verbs() {
    let server = server();
    let arg = server.server_arg();
    let cwd = tempfile::tempdir().unwrap();

    // No body: just the reply line.
    let out = sft(
        &["call", &arg, "STAT", r#"{"path":"hello.txt"}"#],
        cwd.path(),
    );
    code(&out, 0);
    let reply = lines(&out);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["entry"]["size"], 6);

    // A sized body follows the reply line on stdout, byte for byte, as with `nc`.
    let out = sft(
        &["call", &arg, "get", r#"{"path":"hello.txt"}"#],
        cwd.path(),
    );
    code(&out, 0);
    let reply_end = out.stdout.iter().position(|&b| b == b'\n').unwrap() + 1;
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout[..reply_end]).unwrap();
    assert_eq!(reply["size"], 6, "{reply}");
    assert_eq!(&out.stdout[reply_end..], b"hello\n");

    // … or goes to a file with -o.
    let data = random_bytes(300_000, 21);
    fs::write(server.path("blob.bin"), &data).unwrap();
    let out = sft(
        &[
            "call",
            &arg,
            "GET",
            r#"{"path":"blob.bin"}"#,
            "-o",
            "out.bin",
        ],
        cwd.path(),
    );
    code(&out, 0);
    let reply = lines(&out);
    assert_eq!(reply.len(), 1, "only the reply line on stdout");
    assert_eq!(reply[0]["size"], 300000);
    assert!(fs::read(cwd.path().join("out.bin")).unwrap() == data);

    // A line stream: every line through the end line.
    let out = sft(&["call", &arg, "LIST"], cwd.path());
    code(&out, 0);
    let got = lines(&out);
    assert_eq!(got[0], json!({"ok": true, "stream": "lines", "path": "."}));
    assert_eq!(
        got.last().unwrap(),
        &json!({"end": true, "count": 2, "skipped": 0})
    );
    assert_eq!(got.len(), 4);

    // An upload: the file's length goes into "size"; the body is sent after the go-ahead.
    fs::write(cwd.path().join("up.txt"), "uploaded\n").unwrap();
    let out = sft(
        &[
            "call",
            &arg,
            "SEND",
            r#"{"path":"in/up.txt"}"#,
            "-i",
            "up.txt",
        ],
        cwd.path(),
    );
    code(&out, 0);
    assert_eq!(lines(&out), [json!({"ok": true, "size": 9})]);
    assert_eq!(
        fs::read_to_string(server.path("in/up.txt")).unwrap(),
        "uploaded\n"
    );
}

#[test]
fn sft_call_with_verbs_the_client_was_not_built_with() {
    let server = server();
    let arg = server.server_arg();
    let cwd = tempfile::tempdir().unwrap();

    let out = sft(&["call", &arg, "WC", r#"{"path":"hello.txt"}"#], cwd.path());
    code(&out, 0);
    assert_eq!(
        lines(&out),
        [json!({"ok": true, "lines": 1, "words": 1, "bytes": 6})]
    );

    let out = sft(&["call", &arg, "COUNT", r#"{"to":3}"#], cwd.path());
    code(&out, 0);
    assert_eq!(
        lines(&out),
        [
            json!({"ok": true, "stream": "lines"}),
            json!({"n": 1}),
            json!({"n": 2}),
            json!({"n": 3}),
            json!({"end": true, "count": 3}),
        ]
    );

    // A stream that ends with an error line: all of it is shown, then exit 4.
    let out = sft(
        &["call", &arg, "COUNT", r#"{"to":3,"fail_at":2}"#],
        cwd.path(),
    );
    code(&out, 4);
    let got = lines(&out);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["code"], "internal");
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed at 2"));

    // An error reply is printed as the reply line, and is exit 4.
    let out = sft(&["call", &arg, "FROBNICATE"], cwd.path());
    code(&out, 4);
    let got = lines(&out);
    assert_eq!(got[0]["code"], "unknown_verb");
    assert!(got[0]["message"].as_str().unwrap().contains("WC"));
}

#[test]
fn sft_call_streams_a_chunked_upload_by_the_body_rule() {
    let server = server();
    let arg = server.server_arg();
    let cwd = tempfile::tempdir().unwrap();
    let data = random_bytes(600_000, 22);
    let hash = blake3::hash(&data).to_hex().to_string();

    // From standard input: no size needed, the client frames the chunks and declares the hash.
    let out = sft_stdin(
        &[
            "call",
            &arg,
            "SEND",
            r#"{"path":"streamed.bin","body":"chunked"}"#,
            "-i",
            "-",
        ],
        cwd.path(),
        &data,
    );
    code(&out, 0);
    let reply = lines(&out);
    assert_eq!(reply.len(), 1, "the final reply only: {reply:?}");
    assert_eq!(reply[0]["size"], data.len());
    assert_eq!(reply[0]["blake3"], hash.as_str());
    assert!(fs::read(server.path("streamed.bin")).unwrap() == data);

    // From a file, whose size then stays out of the arguments.
    fs::write(cwd.path().join("f.bin"), &data).unwrap();
    let out = sft(
        &[
            "call",
            &arg,
            "SEND",
            r#"{"path":"again.bin","body":"chunked"}"#,
            "-i",
            "f.bin",
        ],
        cwd.path(),
    );
    code(&out, 0);
    assert_eq!(lines(&out)[0]["blake3"], hash.as_str());
    assert!(fs::read(server.path("again.bin")).unwrap() == data);

    // A chunked upload with nothing to send is refused before anything is sent.
    let out = sft(
        &["call", &arg, "SEND", r#"{"path":"x","body":"chunked"}"#],
        cwd.path(),
    );
    code(&out, 2);
    assert!(!server.path("x").exists());
}

#[test]
fn sft_call_usage_errors_send_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join("f"), "x").unwrap();
    // Port 1 on loopback: nothing listens, so a request that got as far as connecting would
    // exit 3, not 2.
    for args in [
        &["call", "127.0.0.1:1", "STAT", "{not json"][..],
        &["call", "127.0.0.1:1", "STAT", "[1,2]"],
        &["call", "127.0.0.1:1", "STAT", "\"path\""],
        &["call", "127.0.0.1:1", "SEND", r#"{"path":"x"}"#, "-i", "-"],
        &["call", "127.0.0.1:1"],
    ] {
        let out = sft(args, cwd.path());
        code(&out, 2);
        assert!(out.stdout.is_empty());
    }
    let server = server();
    let arg = server.server_arg();
    for args in [
        &["call", &arg, "G T"][..],
        &["call", &arg, "STAT", r#"{"verb":"GET"}"#],
        &["call", &arg, "SEND", r#"{"path":"x","size":5}"#],
        &[
            "call",
            &arg,
            "SEND",
            r#"{"path":"x","size":"5"}"#,
            "-i",
            "f",
        ],
    ] {
        let out = sft(args, cwd.path());
        code(&out, 2);
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: invalid request"));
    }
    assert!(!server.path("x").exists());
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn client_call_reads_each_body_kind_and_keeps_the_connection_in_step() {
    let server = server();
    task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        for _ in 0..2 {
            let reply = client
                .call("GET", &args(json!({"path": "hello.txt"})))
                .await
                .unwrap();
            assert_eq!(reply.body(), Body::Sized(6));
            assert_eq!(reply.fields()["size"], 6);
            let mut body = Vec::new();
            assert_eq!(reply.read_body(&mut body).await.unwrap(), 6);
            assert_eq!(body, b"hello\n");

            let reply = client.call("COUNT", &args(json!({"to": 2}))).await.unwrap();
            assert_eq!(reply.header(), r#"{"ok":true,"stream":"lines"}"#);
            let mut body = Vec::new();
            reply.read_body(&mut body).await.unwrap();
            assert_eq!(body, b"{\"n\":1}\n{\"n\":2}\n{\"count\":2,\"end\":true}\n");

            let reply = client
                .call("COUNT", &args(json!({"to": 5, "fail_at": 1})))
                .await
                .unwrap();
            let err = reply.read_body(&mut Vec::new()).await.unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::Internal));

            let err = client
                .call("WC", &args(json!({"path": "missing"})))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::NotFound));

            let mut source = &b"via call"[..];
            let reply = client
                .call_upload(
                    "SEND",
                    &args(json!({"path": "up.txt", "size": 8, "overwrite": true})),
                    &mut source,
                )
                .await
                .unwrap();
            assert_eq!(
                reply.body(),
                Body::None,
                "an upload's final reply has no body"
            );
            reply.read_body(&mut Vec::new()).await.unwrap();
        }
        assert_eq!(fs::read(server.path("up.txt")).unwrap(), b"via call");

        // A body left unread: the connection is out of step and says so.
        let reply = client
            .call("GET", &args(json!({"path": "hello.txt"})))
            .await
            .unwrap();
        drop(reply);
        let err = client.stat("hello.txt").await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
    });
}
