//! The body rule of PROTOCOL.md §3.1, enforced by the session for every verb alike: a request
//! that declares a body (`size` or `body`) to a verb that takes none is answered `bad_request`
//! before any body is sent, and a writing verb on a read-only server `read_only`, before the
//! verb's handler runs. Spoken by hand over raw sockets.

use async_std::task;
use sft_commands::{BoxFuture, Command, CommandError, Context, Registry};
use sft_integration_tests::{Raw, TestServer};
use sft_protocol::verbs::Empty;
use sft_protocol::Request;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const GOOD: &[u8] = b"{\"verb\":\"GET\",\"path\":\"hello.txt\"}\n";

/// Sends a good request and checks its reply and body: the connection is in step.
async fn good_request_works(raw: &mut Raw) {
    raw.write(GOOD).await;
    let reply = raw.reply().await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["size"], 6);
    assert_eq!(raw.body(6).await, b"hello\n");
}

/// Sends `line`, expects an error reply with `code`, then checks the connection still works.
async fn refused(raw: &mut Raw, line: &str, code: &str) {
    raw.write(format!("{line}\n").as_bytes()).await;
    let reply = raw.reply().await;
    assert_eq!(reply["ok"], false, "{line} -> {reply}");
    assert_eq!(reply["code"], code, "{line} -> {reply}");
    good_request_works(raw).await;
}

fn start(args: &[&str], registry: Registry) -> TestServer {
    let server = TestServer::start_with(args, registry);
    std::fs::write(server.path("hello.txt"), "hello\n").unwrap();
    std::fs::create_dir(server.path("docs")).unwrap();
    server
}

#[test]
fn built_in_verbs_that_take_no_body_refuse_one() {
    let server = start(&[], sft_commands::builtins());
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for request in [
            r#"{"verb":"GET","path":"hello.txt""#,
            r#"{"verb":"STAT","path":"hello.txt""#,
            r#"{"verb":"LIST","path":"docs""#,
            r#"{"verb":"MKDIR","path":"new""#,
        ] {
            for declared in [r#","size":3}"#, r#","size":0}"#, r#","body":"chunked"}"#] {
                refused(&mut raw, &format!("{request}{declared}"), "bad_request").await;
            }
        }
    });
    assert!(!server.path("new").exists(), "MKDIR did not run");
}

#[test]
fn a_refused_body_is_never_read() {
    // A client that sends its body without waiting for a go-ahead breaks the protocol; the
    // server reads those bytes as the next header, which shows it did not take them as a body.
    let server = start(&[], sft_commands::builtins());
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"hello.txt\",\"size\":3}\nabc\n")
            .await;
        assert_eq!(raw.reply().await["code"], "bad_request");
        assert_eq!(
            raw.reply().await["code"],
            "bad_request",
            "`abc` is a header"
        );
        good_request_works(&mut raw).await;
    });
}

/// A verb written without a thought for bodies: it takes none, never reads the connection,
/// and counts its runs.
struct Forgetful(Arc<AtomicUsize>);

impl Command for Forgetful {
    fn verb(&self) -> &'static str {
        "FORGETFUL"
    }

    fn run<'a>(
        &'a self,
        _request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::SeqCst);
            ctx.reply_ok(&Empty {}).await.map_err(CommandError::Abort)
        })
    }
}

/// A verb that writes (by its declaration) and counts its runs.
struct Scribble(Arc<AtomicUsize>);

impl Command for Scribble {
    fn verb(&self) -> &'static str {
        "SCRIBBLE"
    }

    fn writes(&self) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        _request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::SeqCst);
            ctx.reply_ok(&Empty {}).await.map_err(CommandError::Abort)
        })
    }
}

#[test]
fn a_verb_that_forgets_about_bodies_still_gets_the_rule() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = sft_commands::builtins();
    registry.register(Forgetful(Arc::clone(&runs)));
    let server = start(&[], registry);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"FORGETFUL\"}\n").await;
        assert_eq!(raw.reply().await["ok"], true);
        for declared in [
            r#""size":5"#,
            r#""body":"chunked""#,
            r#""size":1,"body":"chunked""#,
        ] {
            refused(
                &mut raw,
                &format!(r#"{{"verb":"forgetful",{declared}}}"#),
                "bad_request",
            )
            .await;
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1, "refused before it ran");
}

#[test]
fn a_writing_verb_is_refused_on_a_read_only_server_before_it_runs() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = sft_commands::builtins();
    registry.register(Scribble(Arc::clone(&runs)));
    let server = start(&["--read-only"], registry);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        refused(&mut raw, r#"{"verb":"SCRIBBLE"}"#, "read_only").await;
        // The built-in writers, refused the same way.
        refused(&mut raw, r#"{"verb":"MKDIR","path":"new"}"#, "read_only").await;
        refused(
            &mut raw,
            r#"{"verb":"SETTIME","path":"x","mtime":0}"#,
            "read_only",
        )
        .await;
        refused(
            &mut raw,
            r#"{"verb":"SEND","path":"x","size":1}"#,
            "read_only",
        )
        .await;
        refused(
            &mut raw,
            r#"{"verb":"SEND","path":"x","body":"chunked"}"#,
            "read_only",
        )
        .await;
    });
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(!server.path("new").exists() && !server.path("x").exists());

    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = sft_commands::builtins();
    registry.register(Scribble(Arc::clone(&runs)));
    let writable = start(&[], registry);
    task::block_on(async {
        let mut raw = Raw::connect(writable.addr).await;
        raw.write(b"{\"verb\":\"SCRIBBLE\"}\n").await;
        assert_eq!(raw.reply().await["ok"], true);
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn the_example_crates_verbs_refuse_bodies() {
    let server = start(&[], sft_text_verbs::registry());
    std::fs::write(server.path("poem.txt"), "one\ntwo\nthree\n").unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for verb in ["WC", "HEAD"] {
            for declared in [r#""size":3"#, r#""body":"chunked""#] {
                let line = format!(r#"{{"verb":"{verb}","path":"poem.txt",{declared}}}"#);
                refused(&mut raw, &line, "bad_request").await;
            }
        }
        raw.write(b"{\"verb\":\"WC\",\"path\":\"poem.txt\"}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
    });
}
