//! What a person used to scp, rsync, curl and `mv` expects of `sft`, run as real processes:
//! no colour codes in pipes, `-o` as curl uses it, `mv` into a folder, missing local folders
//! created, `sft mkdir`, a token requirement shown, a server that closes at once or is not an
//! sft server explained, and `send -r` leaving the server's file with the local time.

use sft_integration_tests::{
    bin, expect_code, json_lines, names, sft, stderr, ServerProcess, TestServer,
};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[track_caller]
fn assert_no_escape(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.contains(&0x1b),
        "{what} carries an escape code: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn did_you_mean_reaches_pipes_and_json_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = sft(&["ls", "127.0.0.1", "--jsn"], dir.path());
    expect_code(&out, 2);
    assert!(stderr(&out).contains("--json"), "{}", stderr(&out));
    assert_no_escape("sft's standard error", &out.stderr);

    let out = sft(&["ls", "127.0.0.1", "--jsn", "--json"], dir.path());
    expect_code(&out, 2);
    assert_no_escape("sft's standard error", &out.stderr);
    assert_no_escape("sft's JSON error", &out.stdout);
    let error = &json_lines(&out)[0]["error"];
    assert_eq!(error["code"], "usage");
    assert!(
        error["message"].as_str().unwrap().contains("--json"),
        "{error}"
    );

    let out = Command::new(bin("sft-server"))
        .arg("--hots")
        .stdin(Stdio::null())
        .output()
        .expect("run sft-server");
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("--host"), "{}", stderr(&out));
    assert_no_escape("sft-server's standard error", &out.stderr);
}

#[test]
fn get_o_naming_a_missing_file_says_what_o_means_and_creates_nothing() {
    let server = TestServer::start();
    fs::write(server.path("f.txt"), "hello\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = sft(
        &["get", &server.server_arg(), "f.txt", "-o", "out.txt"],
        dir.path(),
    );
    expect_code(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("-o names the folder") && err.contains("f.txt out.txt"),
        "{err}"
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

    // A folder meant: an existing one, or a name ending in `/`.
    let out = sft(
        &["get", &server.server_arg(), "f.txt", "-o", "new/"],
        dir.path(),
    );
    expect_code(&out, 0);
    assert_eq!(fs::read(dir.path().join("new/f.txt")).unwrap(), b"hello\n");
    let out = sft(
        &[
            "get",
            &server.server_arg(),
            "f.txt",
            "-o",
            "new",
            "--overwrite",
        ],
        dir.path(),
    );
    expect_code(&out, 0);
}

#[test]
fn get_creates_missing_local_folders_above_the_file() {
    let server = TestServer::start();
    fs::write(server.path("f.txt"), "hello\n").unwrap();
    fs::write(server.path("big.bin"), vec![7u8; 300 << 10]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (remote, local) in [
        ("f.txt", "nodir/sub/f.txt"),
        ("big.bin", "other/deep/big.bin"),
    ] {
        let out = sft(&["get", &server.server_arg(), remote, local], dir.path());
        expect_code(&out, 0);
        assert_eq!(
            fs::read(dir.path().join(local)).unwrap(),
            fs::read(server.path(remote)).unwrap()
        );
        let folder = dir.path().join(local).parent().unwrap().to_owned();
        assert_eq!(names(&folder), [remote], "no partial left behind");
    }
    // A file in the way is named as the user wrote it, not as the internal partial file.
    fs::write(dir.path().join("plain"), "").unwrap();
    let out = sft(
        &["get", &server.server_arg(), "f.txt", "plain/f.txt"],
        dir.path(),
    );
    expect_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("plain/f.txt") && !err.contains("sft-part"),
        "{err}"
    );
}

#[test]
fn mv_into_an_existing_folder_or_one_ending_in_a_slash() {
    let server = TestServer::start();
    fs::write(server.path("a.txt"), "a").unwrap();
    fs::write(server.path("b.txt"), "b").unwrap();
    fs::write(server.path("c.txt"), "c").unwrap();
    fs::create_dir(server.path("docs")).unwrap();
    fs::write(server.path("docs/c.txt"), "old").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = server.server_arg();

    let out = sft(&["mv", "--json", &host, "a.txt", "docs"], dir.path());
    expect_code(&out, 0);
    assert_eq!(json_lines(&out)[0]["to"], "docs/a.txt");
    let out = sft(&["mv", &host, "b.txt", "docs/"], dir.path());
    expect_code(&out, 0);
    assert_eq!(names(&server.path("docs")), ["a.txt", "b.txt", "c.txt"]);

    // The overwrite rule holds for the name inside.
    let out = sft(&["mv", &host, "c.txt", "docs/"], dir.path());
    expect_code(&out, 4);
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    let out = sft(&["mv", "--overwrite", &host, "c.txt", "docs/"], dir.path());
    expect_code(&out, 0);
    assert_eq!(fs::read(server.path("docs/c.txt")).unwrap(), b"c");

    // A trailing `/` naming no folder: nothing to move into.
    fs::write(server.path("d.txt"), "d").unwrap();
    let out = sft(&["mv", &host, "d.txt", "nodir/"], dir.path());
    expect_code(&out, 4);
    assert!(server.path("d.txt").exists());
    // A plain rename still renames.
    let out = sft(&["mv", &host, "d.txt", "e.txt"], dir.path());
    expect_code(&out, 0);
    assert!(server.path("e.txt").is_file());
}

#[test]
fn mkdir_creates_folders_and_parents_and_reports_each() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let host = server.server_arg();
    let out = sft(&["mkdir", "--json", &host, "a/b/c", "d"], dir.path());
    expect_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(
        lines[0],
        serde_json::json!({"path": "a/b/c", "created": true})
    );
    assert_eq!(lines[1], serde_json::json!({"path": "d", "created": true}));
    assert!(server.path("a/b/c").is_dir() && server.path("d").is_dir());

    let out = sft(&["mkdir", "-v", &host, "d"], dir.path());
    expect_code(&out, 0);
    assert!(
        stderr(&out).contains("d exists already"),
        "{}",
        stderr(&out)
    );

    // A file in the way fails that path; the others are still made.
    fs::write(server.path("f"), "").unwrap();
    let out = sft(&["mkdir", "--json", &host, "f", "g"], dir.path());
    expect_code(&out, 4);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["exit_code"], 4, "{lines:?}");
    assert_eq!(lines[1]["created"], true, "{lines:?}");
    assert!(server.path("g").is_dir());

    let read_only = TestServer::start_with(&["--read-only"], sft_commands::builtins());
    let out = sft(&["mkdir", &read_only.server_arg(), "x"], dir.path());
    expect_code(&out, 4);
    assert!(!read_only.path("x").exists());
}

#[test]
fn info_says_when_a_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let hex: String = Sha256::digest(b"s3cret-t0ken-for-info")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tokens = dir.path().join("tokens");
    fs::write(&tokens, format!("alice read {hex}\n")).unwrap();
    let guarded = TestServer::start_with(&["--tokens", s(&tokens)], sft_commands::builtins());
    let out = sft(&["info", &guarded.server_arg()], dir.path());
    expect_code(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("token            required"), "{text}");

    let open = TestServer::start();
    let out = sft(&["info", &open.server_arg()], dir.path());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("token            not required"), "{text}");
}

#[test]
fn a_connection_closed_by_allow_is_explained_and_not_retried() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f.txt"), "x").unwrap();
    let server = ServerProcess::start(
        root.path(),
        &["--host", "127.0.0.1", "--allow", "10.0.0.0/8"],
    );
    let dir = tempfile::tempdir().unwrap();
    let host = server.addr.to_string();
    let out = sft(
        &["get", "--retries", "3", "--json", &host, "f.txt"],
        dir.path(),
    );
    expect_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("closed the connection at once") && err.contains("--allow"),
        "{err}"
    );
    assert!(
        !err.contains("retry"),
        "a closed door is not knocked on again: {err}"
    );
    let last = json_lines(&out).pop().unwrap();
    assert_eq!(last["error"]["code"], "closed_at_once");
    assert_eq!(last["exit_code"], 3);
    assert!(names(dir.path()).is_empty());

    // Over TLS the handshake meets the close, and says the same.
    let certs = tempfile::tempdir().unwrap();
    let tls_dir = certs.path().join("tls");
    let args = [
        "--host",
        "127.0.0.1",
        "--allow",
        "10.0.0.0/8",
        "--tls-self-signed",
        s(&tls_dir),
    ];
    let server = ServerProcess::start(root.path(), &args);
    // No handshake happens, so any pin will do.
    let fingerprint = "ab".repeat(32);
    let host = server.addr.to_string();
    let out = sft(&["ls", "--fingerprint", &fingerprint, &host], dir.path());
    expect_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("closed the connection at once, before the TLS handshake"),
        "{err}"
    );
}

#[test]
fn an_ssh_server_is_named_as_not_an_sft_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let banner = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .write_all(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\x1b[31m\r\n")
            .unwrap();
        // What sft said first, as an SSH server would read it before giving up.
        let mut line = String::new();
        let _ = BufReader::new(&stream).read_line(&mut line);
        line
    });
    let dir = tempfile::tempdir().unwrap();
    let out = sft(&["ls", "--json", &addr.to_string()], dir.path());
    expect_code(&out, 6);
    let err = stderr(&out);
    assert!(
        err.contains("not an sft server (it sent 'SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"),
        "{err}"
    );
    assert_no_escape("sft's standard error", &out.stderr);
    assert_no_escape("sft's JSON error", &out.stdout);
    assert!(banner.join().unwrap().starts_with("{\"verb\":\"LIST\""));
}

/// Runs `sft ARGS` against `server`, expecting success, and waits until the server logged the
/// connection closed: the run's `--json` summary line and the requests the server logged.
fn sft_logged(
    server: &ServerProcess,
    args: &[&str],
    cwd: &Path,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let (closed, seen) = (
        server.logs_with("connection closed").len(),
        server.logs_with("request").len(),
    );
    let out = sft(args, cwd);
    expect_code(&out, 0);
    sft_integration_tests::wait_until(std::time::Duration::from_secs(20), || {
        server.logs_with("connection closed").len() > closed
    });
    let requests = server.logs_with("request").into_iter().skip(seen).collect();
    (json_lines(&out).pop().unwrap_or_default(), requests)
}

#[test]
fn send_r_gives_the_servers_copy_of_an_unchanged_file_the_local_time() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &["--host", "127.0.0.1"]);
    let host = server.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    fs::create_dir(work.path().join("site")).unwrap();
    fs::write(work.path().join("site/a.txt"), "the same words\n").unwrap();
    fs::write(work.path().join("site/b.txt"), "other words\n").unwrap();
    sft_logged(&server, &["send", "-r", &host, "site", "www"], work.path());

    // Touched: the same content, another time.
    let touched = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    fs::File::options()
        .write(true)
        .open(work.path().join("site/a.txt"))
        .unwrap()
        .set_modified(touched)
        .unwrap();
    let args = ["send", "-r", "--json", &host, "site", "www"];
    let (summary, requests) = sft_logged(&server, &args, work.path());
    assert_eq!(
        (summary["transferred"].as_u64(), summary["skipped"].as_u64()),
        (Some(0), Some(2))
    );
    let mtime = fs::metadata(root.path().join("www/a.txt")).unwrap().mtime();
    assert_eq!(mtime, 1_700_000_000, "the server's copy has the local time");
    assert_eq!(
        fs::read(root.path().join("www/a.txt")).unwrap(),
        b"the same words\n"
    );
    let settime: Vec<_> = requests
        .into_iter()
        .filter(|r| r["verb"] == "SETTIME")
        .collect();
    assert_eq!(settime.len(), 1, "{settime:?}");
    assert_eq!(settime[0]["path"], "www/a.txt");
    assert_eq!(settime[0]["outcome"], "ok");

    // The next run's quick check hits: nothing is hashed, asked about or sent but the listing.
    let (summary, requests) = sft_logged(&server, &args, work.path());
    assert_eq!(summary["skipped"], 2);
    let verbs: Vec<_> = requests
        .into_iter()
        .map(|r| r["verb"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(verbs.iter().all(|v| v == "LIST"), "{verbs:?}");
}
