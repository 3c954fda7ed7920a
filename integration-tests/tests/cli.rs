//! End-to-end tests of the real `sft` and `sft-server` binaries, run as processes.
//!
//! Every test uses its own temporary folders and ephemeral ports; waits are bounded polls of a
//! condition (`wait_until`), never sleeps.

use sft_integration_tests::{bin, list_files, random_bytes, sft, wait_until, ServerProcess};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A real server on 127.0.0.1 (and an ephemeral port) serving a new temporary root.
struct Fixture {
    server: ServerProcess,
    root: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        Self::start_with(&["--host", "127.0.0.1"])
    }

    fn start_with(args: &[&str]) -> Fixture {
        let root = tempfile::tempdir().expect("temp root");
        let server = ServerProcess::start(root.path(), args);
        Fixture { server, root }
    }

    fn port(&self) -> String {
        self.server.addr.port().to_string()
    }

    /// `127.0.0.1:PORT` (or `[::1]:PORT`), as a client argument.
    fn arg(&self) -> String {
        self.server.addr.to_string()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Puts a file into the served root.
    fn put(&self, rel: &str, bytes: &[u8]) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    fn staging(&self) -> Vec<PathBuf> {
        list_files(&self.path(".sft/tmp"))
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, showing the client's stderr when it differs.
#[track_caller]
fn expect_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}, wanted {code}; stderr: {}",
        out.status,
        stderr(out)
    );
}

/// Asserts a client error: the exit code, an `error: ` line, and a phrase in it.
#[track_caller]
fn expect_error(out: &Output, code: i32, phrase: &str) {
    expect_code(out, code);
    let err = stderr(out);
    assert!(
        err.starts_with("error: "),
        "stderr {err:?} does not start with \"error: \""
    );
    assert!(
        err.to_lowercase().contains(phrase),
        "stderr {err:?} does not mention {phrase:?}"
    );
}

/// `.NAME.sft-part` beside `local`.
fn part_of(local: &Path) -> PathBuf {
    let name = local.file_name().unwrap().to_str().unwrap();
    local.with_file_name(format!(".{name}.sft-part"))
}

/// Files (recursively) in `dir`, as paths relative to it.
fn names_in(dir: &Path) -> Vec<PathBuf> {
    list_files(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_owned())
        .collect()
}

/// A one-connection fake server on 127.0.0.1: reads the request line, answers with `reply`
/// and closes. The thread returns the request line it read.
fn fake_server(reply: Vec<u8>) -> (SocketAddr, JoinHandle<String>) {
    fake_server_series(vec![reply])
}

/// Like [`fake_server`], answering one request after another with each reply in turn; returns
/// the last request line.
fn fake_server_series(replies: Vec<Vec<u8>>) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        let mut stream = stream;
        for reply in replies {
            line.clear();
            reader.read_line(&mut line).expect("request line");
            // The client may already have given up (protocol error): a failed write is fine.
            let _ = stream.write_all(&reply);
            let _ = stream.flush();
        }
        // The whole request was read, so closing sends a clean end of stream, not a reset.
        drop(stream);
        line
    });
    (addr, thread)
}

// 1
#[test]
fn get_by_ip_writes_identical_file() {
    let fx = Fixture::start();
    let data = random_bytes(1 << 20, 1);
    fx.put("data.bin", &data);
    let cwd = tempfile::tempdir().unwrap();
    let local = cwd.path().join("copy.bin");

    let out = sft(&["get", &fx.arg(), "data.bin", s(&local)], cwd.path());
    expect_code(&out, 0);
    assert!(fs::read(&local).unwrap() == data, "downloaded bytes differ");
    assert!(!part_of(&local).exists(), "partial file left behind");
    assert_eq!(names_in(cwd.path()), vec![PathBuf::from("copy.bin")]);
}

// 2
#[test]
fn get_by_dns_name_defaults_local_to_remote_name() {
    let fx = Fixture::start();
    let data = random_bytes(100_000, 2);
    fx.put("sub/dir/report.pdf", &data);

    let cwd = tempfile::tempdir().unwrap();
    let server = format!("localhost:{}", fx.port());
    let out = sft(&["get", &server, "sub/dir/report.pdf"], cwd.path());
    expect_code(&out, 0);
    assert!(fs::read(cwd.path().join("report.pdf")).unwrap() == data);
    assert_eq!(names_in(cwd.path()), vec![PathBuf::from("report.pdf")]);
}

// 2
#[test]
fn get_with_port_flag() {
    let fx = Fixture::start();
    let data = random_bytes(70_000, 3);
    fx.put("a/b.txt", &data);

    let cwd = tempfile::tempdir().unwrap();
    let out = sft(
        &["get", "-p", &fx.port(), "localhost", "a/b.txt"],
        cwd.path(),
    );
    expect_code(&out, 0);
    assert!(fs::read(cwd.path().join("b.txt")).unwrap() == data);
    assert_eq!(names_in(cwd.path()), vec![PathBuf::from("b.txt")]);
}

// 2
#[test]
fn get_into_existing_directory() {
    let fx = Fixture::start();
    let data = random_bytes(12_345, 4);
    fx.put("x/notes.txt", &data);

    let cwd = tempfile::tempdir().unwrap();
    let dest = cwd.path().join("downloads");
    fs::create_dir(&dest).unwrap();
    let out = sft(&["get", &fx.arg(), "x/notes.txt", "downloads"], cwd.path());
    expect_code(&out, 0);
    assert!(fs::read(dest.join("notes.txt")).unwrap() == data);
    assert_eq!(
        names_in(cwd.path()),
        vec![PathBuf::from("downloads/notes.txt")]
    );
}

// 3
#[test]
fn get_to_stdout() {
    let fx = Fixture::start();
    let data = random_bytes(300_000, 5);
    fx.put("blob.bin", &data);

    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", &fx.arg(), "blob.bin", "-"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "stdout differs from the file");
    assert!(
        names_in(cwd.path()).is_empty(),
        "nothing written to the cwd"
    );
}

// 4
#[test]
fn send_explicit_remote() {
    let fx = Fixture::start();
    let cwd = tempfile::tempdir().unwrap();
    let data = random_bytes(1 << 20, 6);
    fs::write(cwd.path().join("local.bin"), &data).unwrap();

    let out = sft(
        &["send", &fx.arg(), "local.bin", "deep/er/stored.bin"],
        cwd.path(),
    );
    expect_code(&out, 0);
    assert!(fs::read(fx.path("deep/er/stored.bin")).unwrap() == data);
    assert!(fx.staging().is_empty());
}

// 4
#[test]
fn send_remote_omitted_uses_local_name() {
    let fx = Fixture::start();
    let cwd = tempfile::tempdir().unwrap();
    let data = random_bytes(5000, 7);
    fs::create_dir(cwd.path().join("src")).unwrap();
    fs::write(cwd.path().join("src/photo.jpg"), &data).unwrap();

    let out = sft(&["send", &fx.arg(), "src/photo.jpg"], cwd.path());
    expect_code(&out, 0);
    assert!(fs::read(fx.path("photo.jpg")).unwrap() == data);
}

// 4
#[test]
fn send_into_remote_folder() {
    let fx = Fixture::start();
    let cwd = tempfile::tempdir().unwrap();
    let data = random_bytes(5000, 8);
    fs::write(cwd.path().join("data.csv"), &data).unwrap();

    let out = sft(&["send", &fx.arg(), "data.csv", "inbox/new/"], cwd.path());
    expect_code(&out, 0);
    assert!(fx.path("inbox/new").is_dir());
    assert!(fs::read(fx.path("inbox/new/data.csv")).unwrap() == data);
}

// 4
#[test]
fn send_refuses_existing_without_overwrite() {
    let fx = Fixture::start();
    let cwd = tempfile::tempdir().unwrap();
    let first = random_bytes(4000, 9);
    let second = random_bytes(6000, 10);
    let local = cwd.path().join("f.bin");

    fs::write(&local, &first).unwrap();
    expect_code(&sft(&["send", &fx.arg(), "f.bin"], cwd.path()), 0);
    assert!(fs::read(fx.path("f.bin")).unwrap() == first);

    fs::write(&local, &second).unwrap();
    let out = sft(&["send", &fx.arg(), "f.bin"], cwd.path());
    expect_error(&out, 4, "changed: f.bin (use --overwrite to replace)");
    assert!(
        fs::read(fx.path("f.bin")).unwrap() == first,
        "refused upload changed the file"
    );

    let out = sft(&["send", &fx.arg(), "f.bin", "--overwrite"], cwd.path());
    expect_code(&out, 0);
    assert!(
        fs::read(fx.path("f.bin")).unwrap() == second,
        "--overwrite did not replace"
    );
    assert!(fx.staging().is_empty());
}

// 5
#[test]
fn names_with_spaces_and_unicode_both_directions() {
    let fx = Fixture::start();
    let cwd = tempfile::tempdir().unwrap();
    let name = "ünïcødé ✓.txt";
    let data = random_bytes(20_000, 11);
    let local_dir = cwd.path().join("local dir ✓");
    fs::create_dir(&local_dir).unwrap();
    fs::write(local_dir.join(name), &data).unwrap();

    // Upload into a remote folder named with a space: REMOTE ends in `/`.
    let local = format!("local dir ✓/{name}");
    let out = sft(&["send", &fx.arg(), &local, "dir with space/"], cwd.path());
    expect_code(&out, 0);
    let remote = format!("dir with space/{name}");
    assert!(fs::read(fx.path(&remote)).unwrap() == data);

    // Download back, LOCAL omitted: named after the remote's last component.
    let back = tempfile::tempdir().unwrap();
    let out = sft(&["get", &fx.arg(), &remote], back.path());
    expect_code(&out, 0);
    assert!(fs::read(back.path().join(name)).unwrap() == data);

    // And to an explicit LOCAL with spaces and unicode.
    let out = sft(&["get", &fx.arg(), &remote, "cöpy of it.txt"], back.path());
    expect_code(&out, 0);
    assert!(fs::read(back.path().join("cöpy of it.txt")).unwrap() == data);

    // A file put on the server by hand, downloaded by its unicode path.
    fx.put("ordner mit ß/日本語 file.bin", b"kanji");
    let out = sft(
        &["get", &fx.arg(), "ordner mit ß/日本語 file.bin", "-"],
        back.path(),
    );
    expect_code(&out, 0);
    assert_eq!(out.stdout, b"kanji");
}

// 6
#[test]
fn exit_code_not_found() {
    let fx = Fixture::start();
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", &fx.arg(), "missing.txt"], cwd.path());
    expect_error(&out, 4, "not found");
    assert!(
        names_in(cwd.path()).is_empty(),
        "a refused download left files: {:?}",
        names_in(cwd.path())
    );
}

// 6
#[test]
fn exit_code_connection_refused() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", &format!("127.0.0.1:{port}"), "x.txt"], cwd.path());
    expect_error(&out, 3, "connection refused");
}

// 6
#[test]
fn exit_code_unresolvable_name() {
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", "no-such-host.invalid", "x.txt"], cwd.path());
    expect_error(&out, 3, "no-such-host.invalid");
}

// 6
#[test]
fn exit_code_usage() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        &["get"][..],
        &["send"],
        &["fetch", "a", "b"],
        &[],
        &["get", "h", "x", "--port", "nope"],
        // Malformed server addresses are caught before any connection is tried.
        &["get", "127.0.0.1:99999", "x"],
        &["get", "[::1", "x"],
        // A remote that names no file, with no LOCAL to name the download.
        &["get", "127.0.0.1:1", "some/dir/"],
    ] {
        let out = sft(args, cwd.path());
        expect_code(&out, 2);
        assert!(
            !out.stderr.is_empty(),
            "{args:?}: a usage error is explained on stderr"
        );
    }
}

// 6
#[test]
fn help_lists_examples() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["get", "--help"], &["send", "--help"]] {
        let out = sft(args, cwd.path());
        expect_code(&out, 0);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXAMPLES"), "{args:?}: no EXAMPLES in {text}");
    }
}

// 6
#[test]
fn exit_code_forbidden_path() {
    let fx = Fixture::start();
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", &fx.arg(), "../etc/passwd"], cwd.path());
    expect_error(&out, 4, "forbidden");
    assert!(names_in(cwd.path()).is_empty());

    // Uploads too.
    fs::write(cwd.path().join("f"), b"x").unwrap();
    let out = sft(&["send", &fx.arg(), "f", "../escape"], cwd.path());
    expect_error(&out, 4, "forbidden");
    assert!(!fx.root.path().parent().unwrap().join("escape").exists());
}

// 7
#[test]
fn cut_off_download_leaves_nothing() {
    let mut reply = br#"{"ok":true,"size":100000}"#.to_vec();
    reply.push(b'\n');
    reply.extend(random_bytes(1000, 12));
    let (addr, fake) = fake_server(reply);

    let cwd = tempfile::tempdir().unwrap();
    let local = cwd.path().join("out.bin");
    let out = sft(
        &["get", &addr.to_string(), "big.bin", s(&local)],
        cwd.path(),
    );
    expect_error(&out, 5, "cut off");
    let request: serde_json::Value = serde_json::from_str(&fake.join().unwrap()).unwrap();
    assert_eq!(
        request,
        serde_json::json!({"verb": "GET", "path": "big.bin", "hash": true})
    );
    assert!(!local.exists(), "a cut-off download produced the file");
    // What did arrive is kept beside the target for `sft get --continue`.
    assert_eq!(fs::read(part_of(&local)).unwrap(), random_bytes(1000, 12));
    assert_eq!(
        names_in(cwd.path()),
        vec![PathBuf::from(".out.bin.sft-part")]
    );
}

// 7
#[test]
fn cut_off_download_keeps_existing_file() {
    // The client first asks what the file is (it differs from the local one: --overwrite).
    let stat = br#"{"ok":true,"entry":{"name":"keep.txt","kind":"file","size":100000,"mtime":0}}"#;
    let mut stat = stat.to_vec();
    stat.push(b'\n');
    let mut reply = br#"{"ok":true,"size":100000}"#.to_vec();
    reply.push(b'\n');
    reply.extend(random_bytes(1000, 13));
    let (addr, fake) = fake_server_series(vec![stat, reply]);

    let cwd = tempfile::tempdir().unwrap();
    let local = cwd.path().join("keep.txt");
    fs::write(&local, b"the original contents").unwrap();
    let out = sft(
        &["get", "--overwrite", &addr.to_string(), "keep.txt"],
        cwd.path(),
    );
    expect_error(&out, 5, "cut off");
    fake.join().unwrap();
    assert_eq!(fs::read(&local).unwrap(), b"the original contents");
    assert_eq!(fs::read(part_of(&local)).unwrap().len(), 1000);
}

// 8
#[test]
fn protocol_violation_exits_6() {
    let (addr, fake) = fake_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec());
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", &addr.to_string(), "index.html"], cwd.path());
    expect_error(&out, 6, "protocol");
    fake.join().unwrap();
    assert!(names_in(cwd.path()).is_empty());
}

/// Gives `path` the time and permission bits (0o644, 420) the by-hand examples show.
fn stamp(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_732_440_000))
        .unwrap();
    f.set_permissions(fs::Permissions::from_mode(0o644))
        .unwrap();
}

// 9
#[test]
fn nc_example_byte_exact() {
    let fx = Fixture::start();
    fx.put("hello.txt", b"hello\n");
    stamp(&fx.path("hello.txt"));
    let mut stream = TcpStream::connect(fx.server.addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream
        .write_all(b"{\"verb\":\"GET\",\"path\":\"hello.txt\"}\n")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "{\"ok\":true,\"size\":6,\"mtime\":1732440000,\"mode\":420}\nhello\n",
        "raw reply differs"
    );
}

// 10
#[test]
fn server_logs_structured_lines() {
    let fx = Fixture::start();
    let data = random_bytes(4321, 14);
    fx.put("logged.bin", &data);
    let cwd = tempfile::tempdir().unwrap();
    expect_code(&sft(&["get", &fx.arg(), "logged.bin"], cwd.path()), 0);

    let srv = &fx.server;
    wait_until(LIMIT, || !srv.logs_with("listening").is_empty());
    let listening = &srv.logs_with("listening")[0];
    assert_eq!(listening["level"], "info");
    assert_eq!(listening["addr"], fx.arg().as_str());
    let root = fs::canonicalize(fx.root.path()).unwrap();
    assert_eq!(listening["root"], s(&root));

    wait_until(LIMIT, || !srv.logs_with("connection closed").is_empty());
    let opened = srv.logs_with("connection opened");
    assert_eq!(opened.len(), 1, "{opened:?}");
    let session = opened[0]["session"].as_u64().expect("numeric session");
    let peer: SocketAddr = opened[0]["peer"]
        .as_str()
        .expect("peer")
        .parse()
        .expect("peer address");
    assert!(peer.ip().is_loopback());

    let requests = srv.logs_with("request");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r["session"].as_u64(), Some(session));
    assert_eq!(r["verb"], "GET");
    assert_eq!(r["path"], "logged.bin");
    assert_eq!(r["bytes_out"].as_u64(), Some(data.len() as u64));
    assert_eq!(r["bytes_in"].as_u64(), Some(0));
    assert!(
        r["ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "ms: {}",
        r["ms"]
    );
    assert_eq!(r["outcome"], "ok");

    let closed = &srv.logs_with("connection closed")[0];
    assert_eq!(closed["session"].as_u64(), Some(session));
    assert_eq!(closed["peer"].as_str(), Some(peer.to_string().as_str()));
    assert!(closed["ms"].as_f64().is_some());
}

/// A one-connection TCP relay to `upstream` that forwards only the first `limit` bytes from its
/// client and then holds the rest back, so an upload can never finish while the test watches.
/// When its client goes away it closes the upstream connection, as the client's own close would.
fn stalling_relay(upstream: SocketAddr, limit: usize) -> (SocketAddr, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let (mut client, _) = listener.accept().expect("accept");
        let mut server = TcpStream::connect(upstream).expect("connect upstream");
        let mut from_server = server.try_clone().unwrap();
        let mut to_client = client.try_clone().unwrap();
        let back = thread::spawn(move || {
            let _ = std::io::copy(&mut from_server, &mut to_client);
        });
        let mut forwarded = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let take = n.min(limit - forwarded);
                    if take > 0 && server.write_all(&buf[..take]).is_err() {
                        break;
                    }
                    forwarded += take;
                }
            }
        }
        let _ = server.shutdown(Shutdown::Both);
        let _ = back.join();
        forwarded
    });
    (addr, thread)
}

// 11
#[test]
fn server_survives_client_killed_mid_upload() {
    let mut fx = Fixture::start();
    let cwd = tempfile::tempdir().unwrap();
    let big = cwd.path().join("big.bin");
    fs::write(&big, random_bytes(64 << 20, 15)).unwrap();
    fx.put("other.txt", b"still serving\n");

    let (relay, relay_thread) = stalling_relay(fx.server.addr, 4 << 20);
    let mut child = Command::new(bin("sft"))
        // Unverified: a plain staging upload, which must leave no debris at all.
        .args([
            "send",
            "--no-verify",
            &relay.to_string(),
            s(&big),
            "big.bin",
        ])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sft send");

    // Mid-transfer: the staging file exists and has received part of the body.
    let staging = fx.path(".sft/tmp");
    wait_until(LIMIT, || {
        list_files(&staging)
            .iter()
            .any(|p| fs::metadata(p).is_ok_and(|m| m.len() >= 1 << 20))
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the upload cannot have finished"
    );
    child.kill().expect("kill sft");
    child.wait().unwrap();
    let forwarded = relay_thread.join().unwrap();
    assert!(
        (1 << 20..=4 << 20).contains(&forwarded),
        "relayed {forwarded} bytes"
    );

    wait_until(LIMIT, || fx.staging().is_empty());
    assert!(
        !fx.path("big.bin").exists(),
        "an interrupted upload was stored"
    );
    wait_until(LIMIT, || {
        fx.server
            .logs_with("request")
            .iter()
            .any(|r| r["verb"] == "SEND" && r["outcome"] == "aborted")
    });

    let out = sft(&["get", &fx.arg(), "other.txt", "-"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(out.stdout, b"still serving\n");
    assert!(fx.server.is_running(), "the server exited");
    assert!(!fx.path("big.bin").exists());
}

// 12
#[test]
fn ipv6_loopback() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        eprintln!("skipping ipv6_loopback: cannot bind [::1]: {e}");
        return;
    }
    let fx = Fixture::start_with(&["--host", "::1"]);
    assert!(fx.server.addr.is_ipv6());
    let data = random_bytes(200_000, 16);
    fx.put("six.bin", &data);
    let cwd = tempfile::tempdir().unwrap();
    let server = format!("[::1]:{}", fx.port());
    let out = sft(&["get", &server, "six.bin"], cwd.path());
    expect_code(&out, 0);
    assert!(fs::read(cwd.path().join("six.bin")).unwrap() == data);

    // And the default-port form with the flag.
    let out = sft(
        &["get", "-p", &fx.port(), "[::1]", "six.bin", "again.bin"],
        cwd.path(),
    );
    expect_code(&out, 0);
    assert!(fs::read(cwd.path().join("again.bin")).unwrap() == data);
}
