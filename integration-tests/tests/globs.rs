//! Remote patterns, matched by `sft get` against the server's listings (as scp's remote globs
//! are): into `-o DIR`, into a LOCAL folder, across folders; no match is an error. Run as real
//! processes.

use sft_integration_tests::{expect_code, names, sft, stderr, TestServer};
use std::fs;

fn served() -> TestServer {
    let server = TestServer::start();
    fs::create_dir_all(server.path("logs/old")).unwrap();
    fs::create_dir_all(server.path("other")).unwrap();
    for name in [
        "logs/a.txt",
        "logs/b.txt",
        "logs/c.log",
        "logs/.hidden.txt",
        "logs/old/z.txt",
    ] {
        fs::write(server.path(name), name.as_bytes()).unwrap();
    }
    fs::write(server.path("other/a.txt"), b"other a").unwrap();
    server
}

#[test]
fn a_remote_pattern_downloads_what_it_matches() {
    let server = served();
    let addr = server.server_arg();
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", &addr, "-o", "dir", "logs/*.txt"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(names(&cwd.path().join("dir")), ["a.txt", "b.txt"]);
    assert_eq!(
        fs::read(cwd.path().join("dir/a.txt")).unwrap(),
        b"logs/a.txt"
    );

    let out = sft(&["get", &addr, "logs/[bc].*", "into/"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(names(&cwd.path().join("into")), ["b.txt", "c.log"]);

    let out = sft(&["get", &addr, "o?her/*", "third"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(
        fs::read(cwd.path().join("third/a.txt")).unwrap(),
        b"other a"
    );

    // Folders match in the middle; two files of one name would collide, and are refused.
    let out = sft(&["get", &addr, "*/a.txt", "fourth"], cwd.path());
    expect_code(&out, 2);
    assert!(
        stderr(&out).contains("two sources are named"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_pattern_that_matches_nothing_is_an_error() {
    let server = served();
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(
        &["get", &server.server_arg(), "logs/*.none", "x/"],
        cwd.path(),
    );
    expect_code(&out, 4);
    assert!(
        stderr(&out).contains("no match for logs/*.none"),
        "{}",
        stderr(&out)
    );
    assert!(!cwd.path().join("x").exists());
}
