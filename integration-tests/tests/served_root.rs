//! The served root itself: what it holds besides files, what happens when it vanishes, and
//! what start-up does (and does not do) to it.

use async_std::task;
use serde_json::{json, Value};
use sft_integration_tests::{wait_until, Raw, ServerProcess, TestServer};
use sft_server::{Config, Server};
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

const LOOPBACK: [&str; 2] = ["--host", "127.0.0.1"];

/// Sends one request and reads its reply line, within a deadline (a hang is a failure).
async fn ask(raw: &mut Raw, request: Value) -> Value {
    raw.write(format!("{request}\n").as_bytes()).await;
    async_std::future::timeout(Duration::from_secs(5), raw.reply())
        .await
        .unwrap_or_else(|_| panic!("no reply within 5 s to {request}"))
}

/// GETs `path` and returns the file's contents, or the error reply.
async fn get(raw: &mut Raw, path: &str) -> Result<Vec<u8>, Value> {
    let reply = ask(raw, json!({"verb": "GET", "path": path, "hash": false})).await;
    if reply["ok"] != true {
        return Err(reply);
    }
    let size = reply["size"].as_u64().expect("a size") as usize;
    Ok(raw.body(size).await)
}

#[test]
fn sockets_fifos_and_folders_are_bad_requests_and_never_block() {
    let server = TestServer::start();
    let _socket = UnixListener::bind(server.path("sock")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        server.path("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    fs::create_dir(server.path("folder")).unwrap();
    std::os::unix::fs::symlink("sock", server.path("link_to_sock")).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (path, what) in [
            ("sock", "socket"),
            ("link_to_sock", "socket"),
            ("fifo", "FIFO"),
            ("folder", "folder"),
        ] {
            let reply = get(&mut raw, path).await.unwrap_err();
            assert_eq!(reply["code"], "bad_request", "GET {path}: {reply}");
            let message = reply["message"].as_str().unwrap();
            assert!(
                message.contains(what) && message.contains("regular file"),
                "GET {path}: the message says what is wrong: {message}"
            );
        }
        // The connection is still in step, and the kinds are reported as they are.
        let reply = ask(&mut raw, json!({"verb": "STAT", "path": "sock"})).await;
        assert_eq!(reply["entry"]["kind"], "other", "{reply}");
        assert_eq!(get(&mut raw, "sock").await.unwrap_err()["ok"], false);
    });
}

#[test]
fn a_root_deleted_and_recreated_is_served_again_and_both_events_are_logged() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("served");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("before.txt"), "before").unwrap();
    let server = ServerProcess::start(&root, &LOOPBACK);
    const GONE: &str =
        "the served folder vanished: requests fail until a folder is back at its path";
    const BACK: &str = "the served folder is back: serving it again";
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        assert_eq!(get(&mut raw, "before.txt").await.unwrap(), b"before");

        fs::remove_dir_all(&root).unwrap();
        for _ in 0..3 {
            let reply = get(&mut raw, "before.txt").await.unwrap_err();
            assert_eq!(reply["code"], "not_found", "{reply}");
        }
        wait_until(Duration::from_secs(10), || {
            !server.logs_with(GONE).is_empty()
        });

        fs::create_dir(&root).unwrap();
        fs::write(root.join("after.txt"), "after").unwrap();
        assert_eq!(get(&mut raw, "after.txt").await.unwrap(), b"after");
        let reply = ask(&mut raw, json!({"verb": "LIST"})).await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(raw.reply().await["name"], "after.txt");
        assert_eq!(raw.reply().await["end"], true);
    });
    wait_until(Duration::from_secs(10), || {
        !server.logs_with(BACK).is_empty()
    });
    assert_eq!(server.logs_with(GONE).len(), 1, "the loss is logged once");
    assert_eq!(server.logs_with(BACK).len(), 1);
}

/// Every name below `dir` with its size and modification time, and `dir`'s own.
fn snapshot(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let meta = fs::symlink_metadata(dir).unwrap();
    out.push((
        dir.display().to_string(),
        meta.len(),
        meta.modified().unwrap(),
    ));
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(snapshot(&entry.path()));
        } else {
            let name = entry.path().display().to_string();
            out.push((name, meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_read_only_server_never_writes_into_its_root() {
    let server_root = tempfile::tempdir().unwrap();
    let root = server_root.path().join("served");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("sub/file.txt"), "read me").unwrap();
    let before = snapshot(&root);
    // Read-only for everyone but root, for whom permission bits do not count: the snapshot
    // below is what proves nothing was written.
    let mode = |m| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&root, fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o555);
    {
        let server = ServerProcess::start(&root, &["--host", "127.0.0.1", "--read-only"]);
        task::block_on(async {
            let mut raw = Raw::connect(server.addr).await;
            assert_eq!(get(&mut raw, "sub/file.txt").await.unwrap(), b"read me");
            let reply = ask(&mut raw, json!({"verb": "LIST", "recursive": true})).await;
            assert_eq!(reply["ok"], true, "{reply}");
            while raw.reply().await.get("end").is_none() {}
            let reply = ask(&mut raw, json!({"verb": "STAT", "path": "sub/file.txt"})).await;
            assert_eq!(reply["ok"], true, "{reply}");
        });
    }
    mode(0o755);
    assert!(
        !root.join(".sft").exists(),
        "no reserved folder was created"
    );
    assert_eq!(snapshot(&root), before, "nothing in the root changed");
}

#[test]
fn a_server_that_cannot_listen_leaves_nothing_in_its_root() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let config = Config::from_args_iter([
        "sft-server",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--root",
        root_arg,
    ])
    .unwrap();
    let err = task::block_on(Server::bind(config, sft_commands::builtins())).unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
    assert_eq!(
        fs::read_dir(root.path()).unwrap().count(),
        0,
        "the root is as it was"
    );
}

#[test]
fn the_reserved_folder_appears_with_the_first_upload_only() {
    let server = TestServer::start();
    assert!(!server.path(".sft").exists(), "start-up writes nothing");
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let reply = ask(&mut raw, json!({"verb": "MKDIR", "path": "made"})).await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert!(!server.path(".sft").exists(), "a folder needs no staging");
        let reply = ask(
            &mut raw,
            json!({"verb": "SEND", "path": "up.txt", "size": 2}),
        )
        .await;
        assert_eq!(reply["ok"], true, "go-ahead: {reply}");
        raw.write(b"hi").await;
        let reply = raw.reply().await;
        assert_eq!(reply["size"], 2, "stored: {reply}");
    });
    assert_eq!(fs::read(server.path("up.txt")).unwrap(), b"hi");
    assert!(server.path(".sft/tmp").is_dir());
}
