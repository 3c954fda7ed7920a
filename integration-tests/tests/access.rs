//! Access control end to end: `sft-server --tokens` (AUTH, `unauthorized`, read and write
//! tokens, SIGHUP reload, tokens never logged), `--allow` for IPv4 and IPv6, and `sft --token`
//! (sent once per connection, never in plaintext off this machine without --insecure-token).

use async_std::task;
use serde_json::Value;
use sft_integration_tests::{bin, stderr, wait_until, Raw, ServerProcess, TestServer};
use sha2::{Digest, Sha256};
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const READ_TOKEN: &str = "r3ad-0nly-7f1c2e9a4b";
const WRITE_TOKEN: &str = "wr1te-all-5d8e0b3c6a";
const NEW_TOKEN: &str = "n3w-t0ken-91b7c4e2f0";

/// A tokens-file line for `token`.
fn line(name: &str, access: &str, token: &str) -> String {
    let hex: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{name} {access} {hex}\n")
}

/// A folder with a tokens file (alice reads, bob writes) and a served root holding `a.txt`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "# who may do what\n{}\n{}",
            line("alice", "read", READ_TOKEN),
            line("bob", "write", WRITE_TOKEN)
        );
        fs::write(dir.path().join("tokens"), text).unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::write(dir.path().join("root/a.txt"), "hello\n").unwrap();
        fs::create_dir(dir.path().join("root/docs")).unwrap();
        Setup { dir }
    }

    fn tokens(&self) -> std::path::PathBuf {
        self.dir.path().join("tokens")
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    fn server(&self, extra: &[&str]) -> ServerProcess {
        let tokens = self.tokens();
        let mut args = vec!["--host", "127.0.0.1", "--tokens", tokens.to_str().unwrap()];
        args.extend_from_slice(extra);
        ServerProcess::start(&self.root(), &args)
    }
}

/// Every log line so far contains none of the tokens.
fn assert_no_token_in_logs(server: &ServerProcess) {
    let logs = server.logs.lock().unwrap();
    assert!(!logs.is_empty());
    for l in logs.iter() {
        for token in [READ_TOKEN, WRITE_TOKEN, NEW_TOKEN] {
            assert!(!l.contains(token), "a token in the log: {l}");
        }
    }
}

async fn ask(raw: &mut Raw, request: &str) -> Value {
    raw.write(format!("{request}\n").as_bytes()).await;
    raw.reply().await
}

fn code_of(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "expected a refusal: {reply}");
    reply["code"].as_str().unwrap()
}

async fn auth(raw: &mut Raw, token: &str) -> Value {
    ask(raw, &format!(r#"{{"verb":"AUTH","token":"{token}"}}"#)).await
}

/// A GET of `a.txt` answered in full: the connection is in step.
async fn get_a(raw: &mut Raw) {
    let reply = ask(raw, r#"{"verb":"GET","path":"a.txt"}"#).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(raw.body(6).await, b"hello\n");
}

/// Runs `sft ARGS` with `SFT_TOKEN` set to `env_token` (or unset).
fn sft_env(args: &[&str], cwd: &Path, env_token: Option<&str>) -> Output {
    let mut c = Command::new(bin("sft"));
    c.args(args).current_dir(cwd).stdin(Stdio::null());
    c.env_remove("SFT_TOKEN");
    if let Some(t) = env_token {
        c.env("SFT_TOKEN", t);
    }
    c.output().expect("run sft")
}

#[test]
fn before_a_token_only_hello_and_auth_are_answered() {
    let setup = Setup::new();
    let server = setup.server(&["--log-level", "debug"]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let hello = ask(&mut raw, r#"{"verb":"HELLO"}"#).await;
        assert_eq!(hello["ok"], true, "{hello}");
        assert_eq!(hello["limits"]["auth"], true, "{hello}");
        let verbs: Vec<&str> = hello["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(verbs.contains(&"AUTH"), "{verbs:?}");
        for request in [
            r#"{"verb":"GET","path":"a.txt"}"#,
            r#"{"verb":"LIST","path":""}"#,
            r#"{"verb":"STAT","path":"a.txt"}"#,
            r#"{"verb":"MKDIR","path":"new"}"#,
            r#"{"verb":"SEND","path":"b.txt","size":3}"#,
        ] {
            let reply = ask(&mut raw, request).await;
            assert_eq!(code_of(&reply), "unauthorized", "{request}: {reply}");
            assert!(
                reply["message"].as_str().unwrap().contains("AUTH"),
                "{reply}"
            );
        }
        // A wrong token: refused, and the connection is still usable.
        let wrong = auth(&mut raw, "not-a-token").await;
        assert_eq!(code_of(&wrong), "unauthorized", "{wrong}");
        let again = ask(&mut raw, r#"{"verb":"GET","path":"a.txt"}"#).await;
        assert_eq!(code_of(&again), "unauthorized");
        let ok = auth(&mut raw, READ_TOKEN).await;
        assert_eq!(
            ok,
            serde_json::json!({"ok":true,"name":"alice","access":"read"})
        );
        get_a(&mut raw).await;
    });
    assert!(!setup.root().join("new").exists());
    assert!(!setup.root().join("b.txt").exists());

    // The command line: no token, a wrong one, then the right one from SFT_TOKEN or --token.
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.addr.to_string();
    let none = sft_env(&["get", &addr, "a.txt", "-"], cwd.path(), None);
    assert_eq!(none.status.code(), Some(4), "{}", stderr(&none));
    let text = stderr(&none);
    assert!(
        text.contains("unauthorized") && text.contains("--token") && text.contains("SFT_TOKEN"),
        "{text}"
    );
    let wrong = sft_env(
        &["get", &addr, "a.txt", "-", "--token", "nope"],
        cwd.path(),
        None,
    );
    assert_eq!(wrong.status.code(), Some(4), "{}", stderr(&wrong));
    let env = sft_env(&["get", &addr, "a.txt", "-"], cwd.path(), Some(READ_TOKEN));
    assert_eq!(env.status.code(), Some(0), "{}", stderr(&env));
    assert_eq!(env.stdout, b"hello\n");
    let flag = sft_env(&["ls", &addr, "--token", READ_TOKEN], cwd.path(), None);
    assert_eq!(flag.status.code(), Some(0), "{}", stderr(&flag));
    assert!(String::from_utf8_lossy(&flag.stdout).contains("a.txt"));

    assert_no_token_in_logs(&server);
    let authenticated = server.logs_with("authenticated");
    assert!(
        authenticated.iter().any(|l| l["name"] == "alice"),
        "{authenticated:?}"
    );
}

#[test]
fn a_read_token_reads_and_every_write_is_forbidden_on_a_usable_connection() {
    let setup = Setup::new();
    let server = setup.server(&[]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        assert_eq!(auth(&mut raw, READ_TOKEN).await["access"], "read");
        get_a(&mut raw).await;
        let stat = ask(&mut raw, r#"{"verb":"STAT","path":"a.txt"}"#).await;
        assert_eq!(stat["ok"], true, "{stat}");
        let list = ask(&mut raw, r#"{"verb":"LIST","path":""}"#).await;
        assert_eq!(list["ok"], true, "{list}");
        // The listing streams until its end line.
        loop {
            let item = raw.reply().await;
            if item.get("end").is_some() || item.get("ok").is_some() {
                break;
            }
        }
        get_a(&mut raw).await;
        for request in [
            // Sized and chunked bodies: refused before the go-ahead, so none is sent.
            r#"{"verb":"SEND","path":"b.txt","size":5}"#,
            r#"{"verb":"SEND","path":"b.txt","body":"chunked"}"#,
            r#"{"verb":"MKDIR","path":"new"}"#,
            r#"{"verb":"DELETE","path":"a.txt"}"#,
            r#"{"verb":"RENAME","from":"a.txt","to":"docs/a.txt"}"#,
            r#"{"verb":"SETTIME","path":"a.txt","mtime":0}"#,
        ] {
            let reply = ask(&mut raw, request).await;
            assert_eq!(code_of(&reply), "forbidden", "{request}: {reply}");
            let message = reply["message"].as_str().unwrap();
            assert!(message.contains("may only read"), "{message}");
            get_a(&mut raw).await;
        }
    });
    assert!(setup.root().join("a.txt").exists());
    assert!(!setup.root().join("b.txt").exists());
    assert!(!setup.root().join("new").exists());
    assert!(!setup.root().join("docs/a.txt").exists());

    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join("up.txt"), "up\n").unwrap();
    let addr = server.addr.to_string();
    let send = sft_env(
        &["send", &addr, "up.txt", "--token", READ_TOKEN],
        cwd.path(),
        None,
    );
    assert_eq!(send.status.code(), Some(4), "{}", stderr(&send));
    assert!(stderr(&send).contains("may only read"), "{}", stderr(&send));
    assert!(!setup.root().join("up.txt").exists());
    assert_no_token_in_logs(&server);
}

#[test]
fn an_eager_send_refused_to_a_read_token_keeps_the_connection_in_step() {
    let setup = Setup::new();
    let server = setup.server(&[]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let hello = ask(&mut raw, r#"{"verb":"HELLO"}"#).await;
        if hello["protocol"].as_u64().unwrap_or(1) < 2 {
            eprintln!("skipped: this server does not take eager uploads (protocol < 2)");
            return;
        }
        assert_eq!(auth(&mut raw, READ_TOKEN).await["access"], "read");
        // Header and body in one write: the body must be read and dropped, not taken for
        // the next header.
        let body = "{\"verb\":\"DELETE\",\"path\":\"a.txt\"}\n";
        let header = format!(
            "{{\"verb\":\"SEND\",\"path\":\"b.txt\",\"size\":{},\"eager\":true}}\n",
            body.len()
        );
        raw.write(format!("{header}{body}").as_bytes()).await;
        let reply = raw.reply().await;
        assert_eq!(code_of(&reply), "forbidden", "{reply}");
        get_a(&mut raw).await;
    });
    assert!(setup.root().join("a.txt").exists());
    assert!(!setup.root().join("b.txt").exists());
}

/// Admission's order: who you are, then may you write, then what may follow the header.
#[test]
fn on_a_read_only_server_a_connection_without_a_token_hears_unauthorized_first() {
    let setup = Setup::new();
    let server = setup.server(&["--read-only"]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for request in [
            r#"{"verb":"MKDIR","path":"new"}"#,
            r#"{"verb":"SEND","path":"b.txt","size":3}"#,
            // A body MKDIR does not take: still who you are first.
            r#"{"verb":"MKDIR","path":"new","size":3}"#,
        ] {
            let reply = ask(&mut raw, request).await;
            assert_eq!(code_of(&reply), "unauthorized", "{request}: {reply}");
        }
        assert_eq!(auth(&mut raw, WRITE_TOKEN).await["access"], "write");
        for request in [
            r#"{"verb":"MKDIR","path":"new"}"#,
            r#"{"verb":"MKDIR","path":"new","size":3}"#,
        ] {
            let reply = ask(&mut raw, request).await;
            assert_eq!(code_of(&reply), "read_only", "{request}: {reply}");
        }
        let reply = ask(&mut raw, r#"{"verb":"STAT","path":"a.txt","size":3}"#).await;
        assert_eq!(code_of(&reply), "bad_request", "{reply}");
        get_a(&mut raw).await;
    });
    assert!(!setup.root().join("new").exists());
}

#[test]
fn a_write_token_may_do_everything() {
    let setup = Setup::new();
    let server = setup.server(&[]);
    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join("up.txt"), "up\n").unwrap();
    let addr = server.addr.to_string();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--token", WRITE_TOKEN]);
        let out = sft_env(&all, cwd.path(), None);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        out
    };
    run(&["send", &addr, "up.txt", "docs/up.txt"]);
    assert_eq!(fs::read(setup.root().join("docs/up.txt")).unwrap(), b"up\n");
    run(&["mv", &addr, "docs/up.txt", "docs/moved.txt"]);
    run(&["get", &addr, "docs/moved.txt", "back.txt"]);
    assert_eq!(fs::read(cwd.path().join("back.txt")).unwrap(), b"up\n");
    run(&["rm", &addr, "docs/moved.txt"]);
    assert!(!setup.root().join("docs/moved.txt").exists());
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        assert_eq!(auth(&mut raw, WRITE_TOKEN).await["name"], "bob");
        let mkdir = ask(&mut raw, r#"{"verb":"MKDIR","path":"made"}"#).await;
        assert_eq!(mkdir["ok"], true, "{mkdir}");
    });
    assert!(setup.root().join("made").is_dir());
    assert_no_token_in_logs(&server);
}

#[test]
fn sighup_reloads_the_tokens_and_a_bad_file_keeps_the_old_ones() {
    let setup = Setup::new();
    let server = setup.server(&["--log-level", "debug"]);
    // The handler is installed once the server is bound: wait for it before signalling.
    wait_until(Duration::from_secs(20), || {
        !server
            .logs_with("SIGHUP reloads the tokens file")
            .is_empty()
    });
    task::block_on(async {
        let mut alice = Raw::connect(server.addr).await;
        assert_eq!(auth(&mut alice, READ_TOKEN).await["ok"], true);
        let mut raw = Raw::connect(server.addr).await;
        assert_eq!(code_of(&auth(&mut raw, NEW_TOKEN).await), "unauthorized");

        // Alice goes, carol comes.
        let text = format!(
            "{}{}",
            line("bob", "write", WRITE_TOKEN),
            line("carol", "read", NEW_TOKEN)
        );
        fs::write(setup.tokens(), text).unwrap();
        server.signal("HUP");
        wait_until(Duration::from_secs(20), || {
            server.logs_with("tokens reloaded").len() == 1
        });
        assert_eq!(server.logs_with("tokens reloaded")[0]["tokens"], 2);
        let carol = auth(&mut raw, NEW_TOKEN).await;
        assert_eq!(carol["name"], "carol", "{carol}");
        get_a(&mut raw).await;
        let mut other = Raw::connect(server.addr).await;
        assert_eq!(code_of(&auth(&mut other, READ_TOKEN).await), "unauthorized");
        // A connection that authenticated with a withdrawn token loses it.
        let gone = ask(&mut alice, r#"{"verb":"GET","path":"a.txt"}"#).await;
        assert_eq!(code_of(&gone), "unauthorized", "{gone}");

        // A malformed file: logged, and the tokens in force stay.
        fs::write(
            setup.tokens(),
            format!("# c\n{}carol reed x\n", line("bob", "write", WRITE_TOKEN)),
        )
        .unwrap();
        server.signal("HUP");
        wait_until(Duration::from_secs(20), || {
            !server
                .logs_with("tokens not reloaded: the previous tokens stay in force")
                .is_empty()
        });
        let why = &server.logs_with("tokens not reloaded: the previous tokens stay in force")[0];
        let error = why["error"].as_str().unwrap();
        assert!(
            error.contains("line 3") && error.contains("tokens"),
            "{error}"
        );
        let mut later = Raw::connect(server.addr).await;
        assert_eq!(auth(&mut later, NEW_TOKEN).await["name"], "carol");
        get_a(&mut later).await;
    });
    assert_no_token_in_logs(&server);
}

#[test]
fn a_sighup_during_start_up_is_answered_once_the_server_runs() {
    let setup = Setup::new();
    // The tokens file is a pipe: start-up waits in the middle (reading it) until a writer comes.
    let fifo = setup.tokens();
    let source = setup.dir.path().join("tokens.txt");
    fs::rename(&fifo, &source).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    // In the background of the shell that becomes the server: once the server has opened the
    // pipe, a SIGHUP to it ($$), then the tokens.
    let writer = format!(
        "(exec 3>'{}'; kill -HUP $$; cat '{}' >&3) & true",
        fifo.display(),
        source.display()
    );
    let args = ["--host", "127.0.0.1", "--tokens", fifo.to_str().unwrap()];
    let mut server = ServerProcess::start_in_shell(&setup.root(), &args, Some(&writer));
    let reloading = "signal received: reloading the tokens file";
    wait_until(Duration::from_secs(20), || {
        !server.logs_with(reloading).is_empty()
    });
    // The reload reads the pipe again.
    fs::write(&fifo, fs::read(&source).unwrap()).unwrap();
    wait_until(Duration::from_secs(20), || {
        !server.logs_with("tokens reloaded").is_empty()
    });
    assert!(server.is_running(), "SIGHUP stopped the server");
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        assert_eq!(auth(&mut raw, READ_TOKEN).await["name"], "alice");
        get_a(&mut raw).await;
    });
}

#[test]
fn a_malformed_tokens_file_stops_start_up_with_its_name_and_line() {
    let setup = Setup::new();
    let bad = setup.dir.path().join("bad-tokens");
    fs::write(
        &bad,
        format!(
            "{}\nmallory admin {}\n",
            line("alice", "read", READ_TOKEN),
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = Command::new(bin("sft-server"))
        .args(["--port", "0", "--host", "127.0.0.1", "--root"])
        .arg(setup.root())
        .arg("--tokens")
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .expect("run sft-server");
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(bad.to_str().unwrap()) && text.contains("line 3"),
        "{text}"
    );
    assert!(text.contains("read or write"), "{text}");
}

#[test]
fn an_open_server_answers_auth_with_anonymous_write() {
    let server = TestServer::start();
    fs::write(server.path("a.txt"), "hello\n").unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let hello = ask(&mut raw, r#"{"verb":"HELLO"}"#).await;
        assert!(hello["limits"].get("auth").is_none(), "{hello}");
        get_a(&mut raw).await;
        let reply = auth(&mut raw, "anything").await;
        assert_eq!(
            reply,
            serde_json::json!({"ok":true,"name":"anonymous","access":"write"})
        );
        get_a(&mut raw).await;
    });
    // And `sft --token` works against it, from this machine.
    let cwd = tempfile::tempdir().unwrap();
    let out = sft_env(
        &["get", &server.server_arg(), "a.txt", "-", "--token", "x"],
        cwd.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `sft ARGS` refused to send its token (a usage error that says how to send it anyway).
#[track_caller]
fn assert_token_withheld(out: &Output, args: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(out));
    assert!(stderr(out).contains("--insecure-token"), "{}", stderr(out));
}

#[test]
fn the_client_never_sends_a_token_in_plaintext_off_this_machine_unless_told() {
    let cwd = tempfile::tempdir().unwrap();
    // A documentation address: nothing answers there, so only a refusal before connecting
    // ends with the usage exit code (a connection attempt would time out: exit 3).
    for args in [
        &["ls", "192.0.2.1", "--token", "t", "--timeout", "2"][..],
        &[
            "get",
            "192.0.2.1",
            "a.txt",
            "--token",
            "t",
            "--timeout",
            "2",
        ][..],
        &[
            "info",
            "[2001:db8::1]:7005",
            "--token",
            "t",
            "--timeout",
            "2",
        ][..],
    ] {
        let out = sft_env(args, cwd.path(), None);
        assert_token_withheld(&out, args);
    }
    let env = sft_env(
        &["ls", "192.0.2.1", "--timeout", "2"],
        cwd.path(),
        Some("t"),
    );
    assert_eq!(env.status.code(), Some(2), "{}", stderr(&env));
    // Told to, it does try to connect.
    let told = sft_env(
        &[
            "ls",
            "192.0.2.1",
            "--token",
            "t",
            "--insecure-token",
            "--timeout",
            "1",
        ],
        cwd.path(),
        None,
    );
    assert_eq!(told.status.code(), Some(3), "{}", stderr(&told));
}

/// Connects to `addr` and says whether the server closed the connection without a byte.
async fn closed_unread(addr: SocketAddr) -> bool {
    let mut raw = Raw::connect(addr).await;
    // Either the request never reaches a session, or it is answered; not a health check, whose
    // connection would be logged at debug alone.
    let _ =
        futures::AsyncWriteExt::write_all(&mut raw.stream, b"{\"verb\":\"STAT\",\"path\":\".\"}\n")
            .await;
    raw.line().await.is_none()
}

/// `--allow RULE` on a server listening on both 127.0.0.1 and ::1.
fn allow_on_both(rule: &str) -> Option<ServerProcess> {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback (::1) on this machine");
        return None;
    }
    let root = tempfile::tempdir().unwrap().keep();
    Some(ServerProcess::start(
        &root,
        &["--host", "::", "--allow", rule],
    ))
}

#[test]
fn allow_admits_ipv4_and_closes_ipv6_at_accept() {
    let Some(server) = allow_on_both("127.0.0.1/32") else {
        return;
    };
    let port = server.addr.port();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    task::block_on(async {
        assert!(!closed_unread(v4).await, "127.0.0.1 is allowed");
        for _ in 0..3 {
            assert!(closed_unread(v6).await, "::1 is not allowed");
        }
        assert!(!closed_unread(v4).await, "127.0.0.1 still is");
    });
    // The log is in order: once the second session's line is in, every refusal's is too.
    wait_until(Duration::from_secs(20), || {
        server.logs_with("connection opened").len() == 2
    });
    // Logged once for the three refusals (once a minute per address).
    let refused = server.logs_with("connection refused: address not allowed (--allow)");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]["peer"].as_str().unwrap().contains("::1"),
        "{refused:?}"
    );
    let _ = fs::remove_dir_all(&server.root);
}

#[test]
fn allow_admits_ipv6_and_closes_ipv4_at_accept() {
    let Some(server) = allow_on_both("::1/128") else {
        return;
    };
    let port = server.addr.port();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    task::block_on(async {
        assert!(closed_unread(v4).await, "127.0.0.1 is not allowed");
        assert!(!closed_unread(v6).await, "::1 is allowed");
    });
    wait_until(Duration::from_secs(20), || {
        server.logs_with("connection opened").len() == 1
    });
    assert_eq!(
        server
            .logs_with("connection refused: address not allowed (--allow)")
            .len(),
        1
    );
    let _ = fs::remove_dir_all(&server.root);
}

/// An address of this machine that is not a loopback one, if it has any: the one it would
/// reach a documentation address from (a UDP "connect" sends nothing).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Every way a token can leave the client follows `--token`'s rule: `sft call … AUTH`, any
/// call with a "token" argument, and the library's connect options, `authenticate` and
/// `call`. Over plaintext to an address that is not loopback nothing is sent, unless told.
#[test]
fn a_token_in_a_call_is_never_sent_in_plaintext_off_this_machine_unless_told() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this machine has no address but loopback ones");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("a.txt"), "hello\n").unwrap();
    let server = ServerProcess::start(root.path(), &["--host", "0.0.0.0"]);
    let far = SocketAddr::new(ip, server.addr.port()).to_string();
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        &["call", &far, "AUTH", r#"{"token":"s3cret-t0ken"}"#][..],
        &["call", &far, "auth", "{}"],
        &[
            "call",
            &far,
            "STAT",
            r#"{"path":"a.txt","token":"s3cret-t0ken"}"#,
        ],
    ] {
        let out = sft_env(args, cwd.path(), None);
        assert_token_withheld(&out, args);
        assert!(out.stdout.is_empty());
    }
    let told = sft_env(
        &[
            "call",
            "--insecure-token",
            &far,
            "AUTH",
            r#"{"token":"s3cret-t0ken"}"#,
        ],
        cwd.path(),
        None,
    );
    assert_eq!(told.status.code(), Some(0), "{}", stderr(&told));
    assert!(String::from_utf8_lossy(&told.stdout).contains("anonymous"));
    task::block_on(async {
        use sft_client::{parse_server, Client, ConnectOptions, Error};
        let addr = parse_server(&far, 7005).unwrap();
        let token = ConnectOptions {
            token: Some("s3cret-t0ken".into()),
            ..ConnectOptions::default()
        };
        let refused = Client::connect_with(addr.clone(), &token).await;
        assert!(matches!(refused, Err(Error::Request(_))), "{refused:?}");
        let mut client = Client::connect_with(addr.clone(), &ConnectOptions::default())
            .await
            .unwrap();
        let args = serde_json::json!({"token": "s3cret-t0ken"});
        let call = client
            .call("AUTH", args.as_object().unwrap())
            .await
            .map(|r| r.header().to_owned());
        assert!(matches!(call, Err(Error::Request(_))), "{call:?}");
        let auth = client.authenticate("s3cret-t0ken").await;
        assert!(matches!(auth, Err(Error::Request(_))), "{auth:?}");
        // Nothing was sent: the connection is in step.
        assert_eq!(client.stat("a.txt").await.unwrap().size, 6);
        let told = ConnectOptions {
            token_in_plaintext: true,
            ..token
        };
        Client::connect_with(addr, &told).await.unwrap();
    });
    let auths = || {
        let logs = server.logs.lock().unwrap();
        logs.iter().filter(|l| l.contains("\"AUTH\"")).count()
    };
    wait_until(Duration::from_secs(20), || auths() >= 2);
    assert_eq!(auths(), 2, "only the two told to");
}

#[test]
fn at_trace_level_requests_are_described_and_a_token_never_shown() {
    let setup = Setup::new();
    let tokens = setup.tokens();
    let args = ["--host", "127.0.0.1", "--tokens", tokens.to_str().unwrap()];
    let server = ServerProcess::start_in_shell(&setup.root(), &args, Some("export SFT_LOG=trace"));
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        assert_eq!(auth(&mut raw, READ_TOKEN).await["name"], "alice");
        get_a(&mut raw).await;
        let refused = ask(&mut raw, r#"{"verb":"GET","path":"../x"}"#).await;
        assert_eq!(code_of(&refused), "forbidden");
        // Bad JSON that carries a token is not shown either.
        raw.write(format!("{{\"verb\":\"AUTH\",\"token\":\"{WRITE_TOKEN}\"\n").as_bytes())
            .await;
        assert_eq!(code_of(&raw.reply().await), "bad_request");
    });
    wait_until(Duration::from_secs(20), || {
        server.logs_with("request").len() >= 3 && !server.logs_with("malformed request").is_empty()
    });
    let headers = server.logs_with("request header");
    assert!(
        headers
            .iter()
            .any(|h| h["header"].as_str().is_some_and(|h| h.contains("a.txt"))),
        "{headers:?}"
    );
    assert!(
        headers
            .iter()
            .any(|h| h["header"].as_str().is_some_and(|h| h.contains("(hidden)"))),
        "{headers:?}"
    );
    assert_eq!(server.logs_with("path resolved")[0]["path"], "a.txt");
    assert!(!server.logs_with("path refused").is_empty());
    let sent = server.logs_with("sending a file body");
    assert_eq!(sent[0]["bytes"], 6, "{sent:?}");
    assert_no_token_in_logs(&server);
}
