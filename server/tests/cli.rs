//! The `sft-server` binary's own command line. (Having an integration test here also makes
//! `cargo test --workspace` build the binary that the end-to-end tests run.)

use std::process::Command;

fn server(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sft-server"))
        .args(args)
        .output()
        .expect("run sft-server")
}

#[test]
fn help_lists_options_and_examples() {
    let out = server(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["--port", "--root", "--host", "--log-format", "EXAMPLES"] {
        assert!(text.contains(needle), "help lacks {needle}: {text}");
    }
}

#[test]
fn version_is_printed() {
    let out = server(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("sft-server {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_options_and_bad_roots_fail_clearly() {
    let out = server(&["--log-format", "xml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("xml"));

    let out = server(&["--port", "0", "--root", "/definitely/not/a/folder"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot serve /definitely/not/a/folder"),
        "{err}"
    );
}

#[test]
fn a_taken_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let root = std::env::temp_dir();
    let out = server(&[
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--root",
        root.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}
