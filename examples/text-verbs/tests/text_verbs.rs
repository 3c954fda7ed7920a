//! Tests of the example verbs, the two ways EXTENDING.md describes:
//! - through the real binaries: this crate's `sft-text-server` and the `sft call` client;
//! - in process: `sft_server::Server` with this crate's registry, and `sft_client::Client::call`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const POEM: &str =
    "The sea is calm tonight.\nThe tide is full, the moon lies fair\n\nUpon the straits;\n";

/// This crate's server binary, on 127.0.0.1 and a free port, serving `root`; killed on drop.
struct TextServer {
    child: Child,
    addr: SocketAddr,
}

impl TextServer {
    fn start(root: &Path) -> TextServer {
        TextServer::start_with(root, &[])
    }

    /// Starts the server with `extra` flags.
    fn start_with(root: &Path, extra: &[&str]) -> TextServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sft-text-server"))
            .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .args(extra)
            .arg("--root")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sft-text-server");
        // The "listening" log line carries the address actually bound.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["msg"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server logs its address")
            .parse()
            .expect("a socket address");
        TextServer { child, addr }
    }
}

impl Drop for TextServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `sft` client binary. `cargo test --workspace` builds it beside this test's binary;
/// `SFT_BIN` names another.
fn sft_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SFT_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join(format!("sft{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p sft-client`), or set SFT_BIN",
        bin.display()
    );
    bin
}

fn sft(args: &[&str], cwd: &Path) -> Output {
    Command::new(sft_bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run sft")
}

/// The first stdout line of `sft call`, the reply header, as JSON.
fn header(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn sft_call_drives_the_new_verbs() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("poem.txt"), POEM).unwrap();
    let server = TextServer::start(root.path());
    let addr = server.addr.to_string();
    let cwd = tempfile::tempdir().unwrap();

    // WC: reply fields only. The verb is matched case-insensitively.
    for verb in ["WC", "wc"] {
        let out = sft(&["call", &addr, verb, r#"{"path":"poem.txt"}"#], cwd.path());
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            header(&out),
            serde_json::json!({"ok": true, "lines": 4, "words": 16, "bytes": POEM.len()})
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    }

    // HEAD: a body, to stdout after the header, or to a file with -o.
    let out = sft(
        &["call", &addr, "HEAD", r#"{"path":"poem.txt","lines":2}"#],
        cwd.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let two_lines = "The sea is calm tonight.\nThe tide is full, the moon lies fair\n";
    let expected = format!("{{\"ok\":true,\"size\":{}}}\n{two_lines}", two_lines.len());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    let out = sft(
        &[
            "call",
            &addr,
            "HEAD",
            r#"{"path":"poem.txt"}"#,
            "-o",
            "head.txt",
        ],
        cwd.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(header(&out)["size"], POEM.len());
    assert_eq!(
        std::fs::read_to_string(cwd.path().join("head.txt")).unwrap(),
        POEM
    );

    // The sandbox applies to new verbs as to the built-ins; errors are replies (exit 4).
    let out = sft(&["call", &addr, "WC", r#"{"path":"../x"}"#], cwd.path());
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(header(&out)["code"], "forbidden");
    let out = sft(&["call", &addr, "WC", r#"{"path":"missing"}"#], cwd.path());
    assert_eq!(header(&out)["code"], "not_found");
    let out = sft(&["call", &addr, "WC", "{}"], cwd.path());
    assert_eq!(header(&out)["code"], "bad_request");

    // The built-ins are still served beside them.
    let out = sft(&["stat", &addr, "poem.txt", "--json"], cwd.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entry["size"], POEM.len());
}

#[test]
fn in_process_with_the_client_library() {
    use async_std::task;
    use sft_server::{Config, Server};

    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("poem.txt"), POEM).unwrap();
    let argv = [
        "sft-text-server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--root",
    ];
    let config =
        Config::from_args_iter(argv.iter().copied().chain([root.path().to_str().unwrap()]))
            .unwrap();
    let server = task::block_on(Server::bind(config, sft_text_verbs::registry())).unwrap();
    let addr = server.local_addr().to_string();
    let handle = server.handle();
    let running = task::spawn(server.run());

    task::block_on(async {
        let mut client = sft_client::Client::connect(&addr, 7005).await.unwrap();
        let args = serde_json::json!({"path": "poem.txt", "lines": 1});
        let reply = client
            .call("HEAD", args.as_object().unwrap())
            .await
            .unwrap();
        assert_eq!(reply.body(), sft_client::Body::Sized(25));
        let mut body = Vec::new();
        reply.read_body(&mut body).await.unwrap();
        assert_eq!(body, b"The sea is calm tonight.\n");

        // The same connection carries the next call.
        let args = serde_json::json!({"path": "poem.txt"});
        let reply = client.call("WC", args.as_object().unwrap()).await.unwrap();
        assert_eq!(reply.fields()["words"], 16);
        assert_eq!(reply.body(), sft_client::Body::None);
        reply.read_body(&mut Vec::new()).await.unwrap();
    });
    handle.shutdown();
    task::block_on(running).unwrap();
}

#[test]
fn the_server_binary_names_itself() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sft-text-server"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run sft-text-server")
    };
    let out = run(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("sft-text-server {}", env!("CARGO_PKG_VERSION"))
    );

    let out = run(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "sft-text-server",
        "WC and HEAD",
        "--stall-timeout",
        "EXAMPLES",
        "sft-text-server --root /srv/files",
    ] {
        assert!(text.contains(part), "--help lacks {part:?}: {text}");
    }
    assert!(!text.contains("sft-server"), "{text}");

    // The failure line names this binary too.
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing");
    let out = run(&["--port", "0", "--root", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("sft-text-server: error: "), "{err}");
}

/// A client that asks `HEAD` for a body far larger than the socket buffers and never reads it
/// is cut off by the server once nothing has moved for the stall timeout: the session does not
/// wait on it forever.
#[test]
fn a_head_client_that_never_reads_is_cut_off_after_the_stall_timeout() {
    const SIZE: usize = 64 << 20;
    let root = tempfile::tempdir().unwrap();
    let line = format!("{}\n", "x".repeat(63));
    std::fs::write(root.path().join("big.txt"), line.repeat(SIZE / 64)).unwrap();
    let stall = Duration::from_secs(1);
    let server = TextServer::start_with(root.path(), &["--stall-timeout", "1", "--min-rate", "0"]);

    let mut sock = std::net::TcpStream::connect(server.addr).unwrap();
    sock.write_all(b"{\"verb\":\"HEAD\",\"path\":\"big.txt\",\"lines\":2000000}\n")
        .unwrap();
    // The reply's first bytes: the file is measured and the body is under way.
    let mut first = [0u8; 16];
    sock.read_exact(&mut first).unwrap();
    assert_eq!(
        &first[..11],
        b"{\"ok\":true,",
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    let asked = Instant::now();
    // Not reading on: the server fills the socket buffers, then its writes stall. Past the
    // stall timeout (and a margin for a loaded machine) it must have closed the connection.
    let margin = Duration::from_secs(3);
    std::thread::sleep(stall + margin);

    // What the buffers hold then ends in end-of-stream (or a reset), long before the 64 MiB
    // announced. Were the connection still open, a read would wait and time out instead.
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let ended = loop {
        match sock.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Ok(()),
            Err(e) => break Err(e),
        }
        assert!(total <= SIZE + 100, "more than the body arrived");
    };
    ended.unwrap_or_else(|e| {
        panic!(
            "the connection was still open {:?} after the request: {e}",
            asked.elapsed()
        )
    });
    assert!(
        total < SIZE / 2,
        "the server went on sending: {total} of {SIZE} bytes arrived"
    );
}
