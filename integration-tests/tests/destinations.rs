//! Where `get` and `send` put a file, as scp users expect: into a folder named with a trailing
//! `/` (created if missing), into an existing remote folder or the served root, and never over
//! a different existing file without `--overwrite` (an identical one is simply skipped) — one
//! policy for both directions. Run as real processes.

use sft_integration_tests::{expect_code, names, sft, stderr, TestServer};
use std::fs;

#[test]
fn get_into_a_missing_folder_named_with_a_slash_creates_it() {
    let server = TestServer::start();
    fs::write(server.path("a.txt"), b"alpha\n").unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(
        &["get", &server.server_arg(), "a.txt", "newdir/"],
        cwd.path(),
    );
    expect_code(&out, 0);
    assert_eq!(
        fs::read(cwd.path().join("newdir/a.txt")).unwrap(),
        b"alpha\n"
    );
    assert_eq!(names(cwd.path()), ["newdir"]);
    let out = sft(
        &["get", &server.server_arg(), "a.txt", "deep/er/"],
        cwd.path(),
    );
    expect_code(&out, 0);
    assert_eq!(
        fs::read(cwd.path().join("deep/er/a.txt")).unwrap(),
        b"alpha\n"
    );
}

#[test]
fn send_into_an_existing_remote_folder_the_root_or_a_new_folder() {
    let server = TestServer::start();
    fs::create_dir(server.path("photos")).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join("img.jpg"), b"jpeg bytes").unwrap();
    fs::write(cwd.path().join("a.txt"), b"alpha\n").unwrap();
    let addr = server.server_arg();
    let out = sft(&["send", &addr, "img.jpg", "photos"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(
        fs::read(server.path("photos/img.jpg")).unwrap(),
        b"jpeg bytes"
    );
    let out = sft(&["send", &addr, "a.txt", "."], cwd.path());
    expect_code(&out, 0);
    assert_eq!(fs::read(server.path("a.txt")).unwrap(), b"alpha\n");
    let out = sft(&["send", &addr, "a.txt", "newdir/"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(fs::read(server.path("newdir/a.txt")).unwrap(), b"alpha\n");
}

#[test]
fn an_existing_different_file_is_kept_without_overwrite_and_an_identical_one_skipped() {
    let server = TestServer::start();
    fs::write(server.path("a.txt"), b"server's a\n").unwrap();
    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join("c.pdf"), b"my own c\n").unwrap();
    fs::write(cwd.path().join("mine.txt"), b"mine\n").unwrap();
    fs::write(server.path("mine.txt"), b"theirs\n").unwrap();
    let addr = server.server_arg();

    // get: a different local file stays, with the `exists` exit code and a clear line.
    let out = sft(&["get", &addr, "a.txt", "c.pdf"], cwd.path());
    expect_code(&out, 4);
    assert!(
        stderr(&out).contains("changed: c.pdf (use --overwrite to replace)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(cwd.path().join("c.pdf")).unwrap(), b"my own c\n");
    // send: the same policy for a different remote file.
    let out = sft(&["send", &addr, "mine.txt"], cwd.path());
    expect_code(&out, 4);
    assert!(
        stderr(&out).contains("changed: mine.txt (use --overwrite to replace)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(server.path("mine.txt")).unwrap(), b"theirs\n");

    // With --overwrite both are replaced…
    let out = sft(&["get", "--overwrite", &addr, "a.txt", "c.pdf"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(fs::read(cwd.path().join("c.pdf")).unwrap(), b"server's a\n");
    let out = sft(&["send", "--overwrite", &addr, "mine.txt"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(fs::read(server.path("mine.txt")).unwrap(), b"mine\n");

    // …and once identical, simply skipped, in both directions.
    for verb in ["get", "send"] {
        let (from, to) = match verb {
            "get" => ("a.txt", "c.pdf"),
            _ => ("mine.txt", "mine.txt"),
        };
        let out = sft(&[verb, "--json", &addr, from, to], cwd.path());
        expect_code(&out, 0);
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(line["skipped"], true, "{verb}: {line}");
        assert_eq!(line["bytes_transferred"], 0, "{verb}: {line}");
        let out = sft(&[verb, &addr, from, to], cwd.path());
        expect_code(&out, 0);
        assert!(stderr(&out).contains("skipped"), "{verb}: {}", stderr(&out));
    }
}
