//! What the `sft` command writes where, run as a real process: data alone on standard output,
//! machine output beside it, a closed pipe ending it quietly, nothing on a redirected standard
//! error after a success, addresses as people type them, `ls` like `ls`, and a busy server
//! retried like a cut-off.

use sft_integration_tests::{
    bin, random_bytes, sft, stderr, wait_until, ServerProcess, TestServer,
};
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn expect_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}, wanted {code}; stderr: {}",
        out.status,
        stderr(out)
    );
}

#[test]
fn json_never_joins_the_bytes_of_a_download_to_standard_output() {
    let server = TestServer::start();
    let data = random_bytes(100_000, 5);
    fs::write(server.path("f.bin"), &data).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.server_arg();

    let out = sft(&["get", "--json", &addr, "f.bin", "-"], cwd.path());
    expect_code(&out, 0);
    assert!(out.stdout == data, "stdout holds more than the file");
    let line: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(line["bytes_transferred"], 100_000);

    // A failure too: its JSON goes to standard error, standard output stays empty.
    let out = sft(&["get", "--json", &addr, "missing", "-"], cwd.path());
    expect_code(&out, 4);
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert!(stderr(&out).contains("\"exit_code\":4"), "{}", stderr(&out));
}

/// Runs `sft ARGS | head -c 10` in a shell and returns sft's exit status and its stderr.
fn into_short_pipe(args: &[&str]) -> (String, String) {
    let err = tempfile::NamedTempFile::new().unwrap();
    let line = format!(
        "'{}' {} 2>'{}' | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}",
        bin("sft").display(),
        args.join(" "),
        err.path().display()
    );
    let out = Command::new("bash")
        .args(["-c", &line])
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let status = stdout(&out).trim().to_owned();
    (status, fs::read_to_string(err.path()).unwrap())
}

#[test]
fn a_closed_standard_output_ends_quietly_with_the_sigpipe_status() {
    let server = TestServer::start();
    fs::write(server.path("big.bin"), random_bytes(16 << 20, 6)).unwrap();
    fs::create_dir(server.path("many")).unwrap();
    for i in 0..3000 {
        fs::write(
            server.path(&format!("many/file-with-a-longish-name-{i:05}")),
            b"",
        )
        .unwrap();
    }
    let addr = server.server_arg();
    for args in [
        vec!["get", &addr, "big.bin", "-"],
        vec!["ls", &addr, "many"],
        vec!["ls", "--json", &addr, "many"],
    ] {
        let (status, err) = into_short_pipe(&args);
        assert_eq!(status, "141", "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}: nothing on stderr");
    }
}

#[test]
fn a_success_says_nothing_on_a_redirected_standard_error_unless_verbose() {
    let server = TestServer::start();
    fs::write(server.path("a.txt"), b"alpha").unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.server_arg();
    // Each verbose run goes to a new destination, so it transfers (an identical file already
    // there would be skipped).
    for (args, verbose) in [
        (
            vec!["get", &addr, "a.txt"],
            vec!["get", &addr, "a.txt", "a2.txt"],
        ),
        (
            vec!["send", &addr, "a.txt", "b.txt"],
            vec!["send", &addr, "a.txt", "b2.txt"],
        ),
        (
            vec!["get", &addr, "-o", "dir", "a.txt", "b.txt"],
            vec!["get", &addr, "-o", "dir2", "a.txt", "b.txt"],
        ),
    ] {
        let out = sft(&args, cwd.path());
        expect_code(&out, 0);
        assert_eq!(stderr(&out), "", "{args:?}");
        let mut verbose = verbose.clone();
        verbose.push("-v");
        let out = sft(&verbose, cwd.path());
        expect_code(&out, 0);
        assert!(stderr(&out).contains(" in "), "{args:?}: {}", stderr(&out));
        assert!(!out.stderr.contains(&0x1b), "{args:?}: no colour codes");
    }
    // Errors are still said, without colour codes, usage errors included.
    for (args, code) in [
        (vec!["get", &addr, "nothing-here"], 4),
        (vec!["get", "--frobnicate", &addr], 2),
        (vec!["get", &addr], 2),
    ] {
        let out = sft(&args, cwd.path());
        expect_code(&out, code);
        assert!(!stderr(&out).is_empty(), "{args:?}");
        assert!(!out.stderr.contains(&0x1b), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn usage_lines_make_only_what_is_required_look_required() {
    let cwd = tempfile::tempdir().unwrap();
    for (verb, usage) in [
        ("get", "sft get [OPTIONS] SERVER REMOTE [LOCAL]"),
        ("send", "sft send [OPTIONS] SERVER LOCAL [REMOTE]"),
        ("ls", "sft ls [OPTIONS] <SERVER> [dir]"),
    ] {
        let out = sft(&[verb, "--help"], cwd.path());
        expect_code(&out, 0);
        let text = stdout(&out);
        assert!(text.contains(usage), "{verb}: {text}");
        assert!(!text.contains("[FLAGS]"), "{verb}: {text}");
        assert!(!out.stdout.contains(&0x1b), "{verb}: no colour codes");
    }
}

#[test]
fn addresses_as_people_type_them() {
    let cwd = tempfile::tempdir().unwrap();
    // A port after a bare IPv6 address: brackets are suggested.
    let out = sft(&["get", "::1:43187", "x"], cwd.path());
    expect_code(&out, 2);
    assert!(stderr(&out).contains("[::1]:43187"), "{}", stderr(&out));
    // The same with the path missing: still the address explained, not only clap's words.
    let out = sft(&["get", "::1:43187"], cwd.path());
    expect_code(&out, 2);
    assert!(stderr(&out).contains("[::1]:43187"), "{}", stderr(&out));
    // scp's host:path, with or without a port: the form is explained.
    for server in ["files.example:7005:dir/file", "files.example:dir/file"] {
        let out = sft(&["get", server], cwd.path());
        expect_code(&out, 2);
        assert!(
            stderr(&out).contains("HOST[:PORT] REMOTE"),
            "{server}: {}",
            stderr(&out)
        );
    }
    // A name that does not resolve is named in plain text, never as a Rust tuple.
    let out = sft(&["get", "no-such-host.invalid", "x"], cwd.path());
    expect_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("could not resolve no-such-host.invalid (port 7005)"),
        "{err}"
    );
    assert!(!err.contains("(\""), "{err}");

    // A bare IPv6 address means that address on the port given (where IPv6 works here).
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("six.txt"), b"over ipv6").unwrap();
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping the IPv6 part: no ::1 here");
        return;
    }
    let server = ServerProcess::start(root.path(), &["--host", "::1"]);
    let port = server.addr.port().to_string();
    let out = sft(&["get", "-p", &port, "::1", "six.txt"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(fs::read(cwd.path().join("six.txt")).unwrap(), b"over ipv6");
}

#[test]
fn ls_sorts_like_ls_shows_a_file_and_sizes_for_people_on_request() {
    let server = TestServer::start();
    fs::write(server.path("b.txt"), vec![7u8; 3 << 20]).unwrap();
    fs::create_dir(server.path("c")).unwrap();
    fs::write(server.path("a.txt"), b"a").unwrap();
    fs::create_dir(server.path("a")).unwrap();
    fs::write(server.path("d.txt"), b"dd").unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.server_arg();

    let out = sft(&["ls", &addr], cwd.path());
    expect_code(&out, 0);
    let text = stdout(&out);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(names, ["a", "a.txt", "b.txt", "c", "d.txt"], "{text}");
    // Not a terminal: no header, sizes in bytes.
    assert!(text.contains(" 3145728 "), "{text}");
    assert!(!text.contains("NAME"), "{text}");

    let out = sft(&["ls", "-h", &addr], cwd.path());
    expect_code(&out, 0);
    assert!(stdout(&out).contains(" 3.0 MiB "), "{}", stdout(&out));

    // A file is shown as itself.
    let out = sft(&["ls", &addr, "b.txt"], cwd.path());
    expect_code(&out, 0);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("file") && text.trim_end().ends_with("b.txt"),
        "{text}"
    );
    let out = sft(&["ls", "--json", "-h", &addr, "b.txt"], cwd.path());
    expect_code(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["entries"][0]["size"], 3 << 20, "raw bytes in JSON");
    assert_eq!(doc["count"], 1);

    // `stat` says `name`, as its JSON does.
    let out = sft(&["stat", &addr, "d.txt"], cwd.path());
    expect_code(&out, 0);
    assert!(
        stdout(&out).starts_with("name    d.txt\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_busy_server_is_a_transient_failure_that_retries_outlast() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f.txt"), b"worth the wait").unwrap();
    let server = ServerProcess::start(root.path(), &["--max-connections", "1"]);
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.addr.to_string();
    let busy_lines = || server.logs_with("connection refused: busy").len();

    // The only connection allowed, held; a request on it shows it is being served.
    let mut held = TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(&mut held, b"{\"verb\":\"STAT\",\"path\":\"f.txt\"}\n").unwrap();
    let mut reply = [0u8; 1];
    held.read_exact(&mut reply).unwrap();

    let out = sft(&["get", &addr, "f.txt", "once.txt"], cwd.path());
    expect_code(&out, 5);
    assert!(
        stderr(&out).contains("at its limit of 1 connections; try again later"),
        "{}",
        stderr(&out)
    );
    let before = busy_lines();

    let child = Command::new(bin("sft"))
        .args(["get", "--retries", "6", &addr, "f.txt", "later.txt"])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Released once the client has been turned away.
    wait_until(Duration::from_secs(20), || busy_lines() > before);
    drop(held);
    let out = child.wait_with_output().unwrap();
    expect_code(&out, 0);
    assert_eq!(
        fs::read(cwd.path().join("later.txt")).unwrap(),
        b"worth the wait"
    );
}

#[test]
fn a_download_cut_off_says_where_its_partial_is_kept() {
    use sft_integration_tests::{Relay, Tamper};
    let server = TestServer::start();
    fs::write(server.path("big.bin"), random_bytes(4 << 20, 8)).unwrap();
    let relay = Relay::start(
        server.addr,
        Tamper {
            cut_down_after: Some(2 << 20),
            ..Tamper::default()
        },
    );
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", &relay.addr.to_string(), "big.bin"], cwd.path());
    expect_code(&out, 5);
    let err = stderr(&out);
    assert!(err.contains("kept ") && err.contains(" MiB in "), "{err}");
    assert!(
        err.contains(".big.bin.sft-part; run the same command again (or add -c) to continue"),
        "{err}"
    );
    assert!(cwd.path().join(".big.bin.sft-part").exists());
}
