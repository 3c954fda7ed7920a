//! The client's own safety: it never writes through a planted symlink, never sends a file other
//! than the one it walked, gives up connecting within `--timeout`, never lets a server's names
//! drive the terminal, and keeps memory bounded whatever a listing holds.

use sft_integration_tests::{bin, sft, wait_until, TestServer};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A listening socket on 127.0.0.1 whose accept queue is full and never drained: the kernel
/// drops further SYNs, so a connection attempt to it never gets an answer.
fn unanswering_port() -> (rustix::fd::OwnedFd, std::net::TcpStream, u16) {
    use rustix::net::{AddressFamily, SocketType};
    let listener = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    rustix::net::bind(&listener, &any).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    let port = std::net::SocketAddrV4::try_from(rustix::net::getsockname(&listener).unwrap())
        .unwrap()
        .port();
    // A backlog of 0 holds one connection: this one fills it.
    let filler = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(5),
    )
    .unwrap();
    (listener, filler, port)
}

#[test]
fn timeout_bounds_connecting() {
    let (_listener, _filler, port) = unanswering_port();
    let cwd = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(bin("sft"))
        .args(["ls", "--timeout", "2", &format!("127.0.0.1:{port}")])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");
}

/// Runs `sft ARGS…` in `cwd` and returns its exit code and standard error.
fn run(args: &[&str], cwd: &Path) -> (Option<i32>, String) {
    let out = sft(args, cwd);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_planted_partial_symlink_is_refused_and_its_target_untouched() {
    let server = TestServer::start();
    std::fs::write(server.path("plain.txt"), vec![b'x'; 100_000]).unwrap();
    let addr = server.server_arg();
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let planted = dir.path().join(".plain.txt.sft-part");
    std::os::unix::fs::symlink("victim", &planted).unwrap();
    let args = r#"{"path":"plain.txt"}"#;
    for cmd in [
        &["get", &addr, "plain.txt"][..],
        &["get", "-c", &addr, "plain.txt"],
        &["get", "-o", ".", &addr, "plain.txt"],
        &["get", "-c", "-o", ".", &addr, "plain.txt"],
        &["call", &addr, "GET", args, "-o", "plain.txt"],
    ] {
        let (code, stderr) = run(cmd, dir.path());
        assert_eq!(code, Some(1), "{cmd:?}: {stderr}");
        assert!(
            stderr.contains(".plain.txt.sft-part") && stderr.contains("symlink"),
            "{cmd:?}: {stderr}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{cmd:?}");
        assert!(
            std::fs::symlink_metadata(dir.path().join("plain.txt")).is_err(),
            "{cmd:?} left something under the final name"
        );
        assert!(std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

/// Reads one request line from `conn`.
fn request_line(conn: &mut std::net::TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while conn.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    line
}

/// Two downloads of one file into one folder at once: the test serves both by hand, so that
/// the second starts while the first is half way, and writes a little before the first ends.
/// The first must end with the whole file under its name whenever it reports success; the
/// second either refuses clearly or also delivers the whole file.
#[test]
fn two_downloads_of_one_file_never_mix() {
    let data = sft_integration_tests::random_bytes(4 << 20, 10);
    let (half, quarter) = (2 << 20, 256 << 10);
    let hash = blake3::hash(&data).to_hex().to_string();
    let header = format!(
        "{{\"ok\":true,\"size\":{},\"blake3\":\"{hash}\"}}\n",
        data.len()
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join(".big.bin.sft-part");
    let target = dir.path().join("big.bin");
    let spawn = || {
        Command::new(bin("sft"))
            .args(["get", "-q", &addr, "big.bin"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);

    let mut first = spawn();
    let (mut a, _) = listener.accept().unwrap();
    request_line(&mut a);
    a.write_all(header.as_bytes()).unwrap();
    a.write_all(&data[..half]).unwrap();
    wait_until(Duration::from_secs(20), || len(&partial) == half as u64);

    let mut second = spawn();
    let (mut b, _) = listener.accept().unwrap();
    request_line(&mut b);
    let _ = b.write_all(header.as_bytes());
    let _ = b.write_all(&data[..quarter]);
    // The second either gives up, or (sharing the partial) has cut it down and written to it.
    wait_until(Duration::from_secs(20), || {
        second.try_wait().unwrap().is_some() || len(&partial) == quarter as u64
    });

    a.write_all(&data[half..]).unwrap();
    let first_status = first.wait().unwrap();
    let mut first_err = String::new();
    first
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut first_err)
        .unwrap();
    if first_status.success() {
        assert!(
            std::fs::read(&target).unwrap() == data,
            "the first download reported success, but its file is not the file"
        );
    }
    let _ = b.write_all(&data[quarter..]);
    drop(b);
    let second_status = second.wait().unwrap();
    let mut second_err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut second_err)
        .unwrap();
    assert!(first_status.success(), "{first_err}");
    if !second_status.success() {
        assert_eq!(second_status.code(), Some(1), "{second_err}");
        assert!(
            second_err.contains("another download is writing it"),
            "{second_err}"
        );
    }
    assert!(std::fs::read(&target).unwrap() == data);
    assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
}

/// Whether `bytes` hold a C1 CSI, a DEL or a right-to-left override as they are.
fn raw_controls(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.contains(['\u{9b}', '\u{7f}', '\u{202e}'])
}

#[test]
fn names_never_reach_the_terminal_raw() {
    let server = TestServer::start();
    let name = "a\u{9b}31m\u{7f}b\u{202e}txt.exe";
    std::fs::write(server.path(name), b"hello").unwrap();
    let addr = server.server_arg();
    let cwd = tempfile::tempdir().unwrap();
    let stat_args = serde_json::json!({ "path": name }).to_string();
    for cmd in [
        &["ls", &addr][..],
        &["ls", "--json", &addr],
        &["ls", "-r", "--json", &addr],
        &["stat", &addr, name],
        &["stat", "--json", &addr, name],
        &["call", &addr, "LIST", "{}"],
        &["call", &addr, "STAT", &stat_args],
        &["get", "--json", &addr, name, "out.txt"],
        &["get", "-v", &addr, name, "out.txt"],
        &["get", "--json", &addr, "missing\u{9b}\u{202e}"],
    ] {
        let out = sft(cmd, cwd.path());
        assert!(
            !raw_controls(&out.stdout) && !raw_controls(&out.stderr),
            "{cmd:?}: {:?} {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // JSON still carries the real name.
    let out = sft(&["ls", "--json", &addr], cwd.path());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["entries"][0]["name"], name);
    let out = sft(&["stat", "--json", &addr, name], cwd.path());
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entry["name"], name);
    let out = sft(&["call", &addr, "LIST", "{}"], cwd.path());
    let lines: Vec<serde_json::Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines[1]["name"], name, "{lines:?}");
    let out = sft(&["get", "--json", &addr, name, "out.txt"], cwd.path());
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["remote"], name);
}

/// A file of a folder being uploaded is swapped for a symlink to a file outside it after the
/// walk, before it is sent: it is refused, nothing of the outside file reaches the server, and
/// the connection goes on with the next file.
#[test]
fn a_file_swapped_for_a_symlink_after_the_walk_is_not_sent() {
    let server = TestServer::start();
    let base = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("a.txt"), b"mine").unwrap();
    std::fs::write(base.path().join("b.txt"), b"also mine").unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"top secret").unwrap();
    let walked = sft_client::walk(base.path(), "up").unwrap();
    assert_eq!(walked.files.len(), 2);
    // The swap, between the walk and the upload.
    std::fs::remove_file(base.path().join("a.txt")).unwrap();
    std::os::unix::fs::symlink(&secret, base.path().join("a.txt")).unwrap();
    async_std::task::block_on(async {
        let mut client = sft_client::Client::connect(&server.server_arg(), 7005)
            .await
            .unwrap();
        let opts = sft_client::SendOptions::default();
        let refused = client.send_upload(&walked.files[0], opts).await;
        match refused {
            Err(e @ sft_client::Error::Local { .. }) => {
                assert!(e.to_string().contains("not sent"), "{e}")
            }
            other => panic!("the swapped file was not refused: {other:?}"),
        }
        client.send_upload(&walked.files[1], opts).await.unwrap();
    });
    assert!(!server.path("up/a.txt").exists());
    assert_eq!(
        std::fs::read(server.path("up/b.txt")).unwrap(),
        b"also mine"
    );
    for file in sft_integration_tests::list_files(server.root.path()) {
        assert_ne!(std::fs::read(&file).unwrap(), b"top secret", "{file:?}");
    }
}

/// The peak resident memory of process `pid` so far, in KiB (`None` once it is gone).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A hostile server lists 300,000 files with long names for `get -r` (about 80 MB of names),
/// refuses the first few thousand GETs, then stops answering: the client's peak memory, read
/// while it waits, stays far below what holding the names would take.
#[test]
fn get_r_memory_is_bounded_whatever_the_listing_holds() {
    const ENTRIES: usize = 300_000;
    const REFUSED: usize = 3_000;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (refused_all, told) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
        let mut out = std::io::BufWriter::new(conn);
        let mut line = String::new();
        let mut get = 0;
        use std::io::BufRead;
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let request: serde_json::Value = serde_json::from_str(&line).unwrap();
            line.clear();
            match request["verb"].as_str().unwrap() {
                "STAT" => {
                    writeln!(
                        out,
                        r#"{{"ok":true,"entry":{{"name":"d","kind":"folder","size":0,"mtime":0}}}}"#
                    )
                    .unwrap();
                }
                "LIST" => {
                    writeln!(out, r#"{{"ok":true,"stream":"lines","path":"d"}}"#).unwrap();
                    let long = "n".repeat(240);
                    for i in 0..ENTRIES {
                        writeln!(
                            out,
                            r#"{{"name":"{long}{i:07}","kind":"file","size":1,"mtime":0}}"#
                        )
                        .unwrap();
                    }
                    writeln!(out, r#"{{"end":true,"count":{ENTRIES},"skipped":0}}"#).unwrap();
                }
                _ => {
                    get += 1;
                    writeln!(out, r#"{{"ok":false,"code":"not_found","message":"gone"}}"#).unwrap();
                    if get == REFUSED {
                        out.flush().unwrap();
                        refused_all.send(()).unwrap();
                        let _ = released.recv_timeout(Duration::from_secs(120));
                        return;
                    }
                }
            }
            out.flush().unwrap();
        }
    });
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("sft"))
        .args(["get", "-q", "-r", "--timeout", "120", &addr, "d", "out"])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    told.recv_timeout(Duration::from_secs(120))
        .expect("the client asked for the files within 2 minutes");
    let peak = peak_rss_kib(child.id()).expect("the client still runs");
    release.send(()).unwrap();
    server.join().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    println!("peak RSS of sft get -r over {ENTRIES} entries: {peak} KiB");
    assert!(peak < 60 * 1024, "peak RSS {peak} KiB");
}
