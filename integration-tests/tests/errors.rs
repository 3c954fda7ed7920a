//! Error cases spoken by hand over raw sockets: each is followed by a good request, and the
//! server keeps serving everyone else.

use async_std::task;
use serde_json::json;
use sft_integration_tests::{random_bytes, Raw, TestServer};
use std::os::unix::fs::symlink;

const GOOD: &[u8] = b"{\"verb\":\"GET\",\"path\":\"hello.txt\"}\n";

fn server() -> TestServer {
    let server = TestServer::start();
    std::fs::write(server.path("hello.txt"), "hello\n").unwrap();
    server
}

/// Sends the good request and checks its reply and body.
async fn good_request_works(raw: &mut Raw) {
    raw.write(GOOD).await;
    let reply = raw.reply().await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["size"], 6);
    assert_eq!(raw.body(6).await, b"hello\n");
}

#[test]
fn not_found_leaves_the_connection_usable() {
    let server = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"nope.txt\"}\n")
            .await;
        let reply = raw.reply().await;
        assert_eq!(reply["ok"], false);
        assert_eq!(reply["code"], "not_found");
        assert!(
            reply["message"].as_str().unwrap().contains("nope.txt"),
            "{reply}"
        );
        good_request_works(&mut raw).await;
    });
}

#[test]
fn malformed_requests_get_error_replies_and_the_connection_goes_on() {
    let server = server();
    let table: &[(&[u8], &str)] = &[
        (b"hello\n", "bad_request"),
        (b"GET hello.txt\n", "bad_request"),
        (b"\n", "bad_request"),
        (b"[1,2,3]\n", "bad_request"),
        (b"{\"verb\":\"GET\"\n", "bad_request"),
        (b"{\"path\":\"hello.txt\"}\n", "bad_request"),
        (
            b"{\"verb\":\"FROBNICATE\",\"path\":\"x\"}\n",
            "unknown_verb",
        ),
        (b"{\"verb\":\"GET\"}\n", "bad_request"),
        (b"{\"verb\":\"GET\",\"path\":7}\n", "bad_request"),
        (
            b"{\"verb\":\"SEND\",\"path\":\"x\",\"size\":-1}\n",
            "bad_request",
        ),
        (
            b"{\"verb\":\"SEND\",\"path\":\"x\",\"size\":\"big\"}\n",
            "bad_request",
        ),
        (b"{\"verb\":\"SEND\",\"path\":\"x\"}\n", "bad_request"),
        (b"{\"verb\":\"GET\",\"path\":\"\xff\xfe\"}\n", "bad_request"),
        (b"\x00\x01\x02\x03\xff\xfe\x80\n", "bad_request"),
        (
            b"{\"verb\":\"GET\",\"v\":99,\"path\":\"hello.txt\"}\n",
            "unsupported",
        ),
        (
            b"{\"verb\":\"GET\",\"path\":\"../../etc/passwd\"}\n",
            "forbidden",
        ),
        (
            b"{\"verb\":\"GET\",\"path\":\"/etc/passwd\"}\n",
            "forbidden",
        ),
        (b"{\"verb\":\"GET\",\"path\":\".sft/tmp\"}\n", "forbidden"),
        (
            b"{\"verb\":\"GET\",\"path\":\"a\\u0000b\"}\n",
            "bad_request",
        ),
        (b"{\"verb\":\"GET\",\"path\":\"\"}\n", "bad_request"),
    ];
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (input, code) in table {
            raw.write(input).await;
            let reply = raw.reply().await;
            assert_eq!(reply["ok"], false, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(
                reply["code"],
                *code,
                "{:?} → {reply}",
                String::from_utf8_lossy(input)
            );
            assert!(!reply["message"].as_str().unwrap().is_empty());
            good_request_works(&mut raw).await;
        }
    });
}

#[test]
fn verbs_are_case_insensitive_and_escapes_decode() {
    let server = server();
    std::fs::write(server.path("a b.txt"), "spaced").unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"get\",\"path\":\"a\\u0020b.txt\"}\n")
            .await;
        assert_eq!(raw.reply().await["size"], 6);
        assert_eq!(raw.body(6).await, b"spaced");
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let mut burst = Vec::new();
        for _ in 0..3 {
            burst.extend_from_slice(GOOD);
            burst.extend_from_slice(b"{\"verb\":\"GET\",\"path\":\"missing\"}\n");
        }
        raw.write(&burst).await;
        for _ in 0..3 {
            assert_eq!(raw.reply().await["size"], 6);
            assert_eq!(raw.body(6).await, b"hello\n");
            assert_eq!(raw.reply().await["code"], "not_found");
        }
    });
}

#[test]
fn an_over_long_header_is_refused_without_buffering_it_and_others_are_unaffected() {
    let server = server();
    task::block_on(async {
        let mut bystander = Raw::connect(server.addr).await;
        let mut raw = Raw::connect(server.addr).await;
        // 1 MiB with no newline: the server answers after 8 KiB and closes.
        let junk = vec![b'a'; 1 << 20];
        let _ = futures::AsyncWriteExt::write_all(&mut raw.stream, &junk).await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "too_large");
        assert!(raw.closed().await);
        good_request_works(&mut bystander).await;
    });
}

#[test]
fn a_connection_closed_mid_header_ends_only_that_session() {
    let server = server();
    task::block_on(async {
        let mut bystander = Raw::connect(server.addr).await;
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GE").await;
        drop(raw);
        good_request_works(&mut bystander).await;
        drop(bystander);
    });
    server.wait_idle();
    task::block_on(async { good_request_works(&mut Raw::connect(server.addr).await).await });
}

#[test]
fn an_upload_cut_off_midway_leaves_nothing() {
    let server = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"dir/cut.bin\",\"size\":1048576}\n")
            .await;
        assert_eq!(raw.reply().await, serde_json::json!({"ok": true}));
        raw.write(&random_bytes(500_000, 1)).await;
        sft_integration_tests::wait_until(std::time::Duration::from_secs(20), || {
            server.staging_files().len() == 1
        });
        drop(raw);
    });
    server.wait_idle();
    assert!(
        !server.path("dir/cut.bin").exists(),
        "no file under the final name"
    );
    assert!(server.staging_files().is_empty(), "no staging debris");
    task::block_on(async { good_request_works(&mut Raw::connect(server.addr).await).await });
}

#[test]
fn an_upload_cut_off_does_not_touch_the_existing_file() {
    let server = server();
    std::fs::write(server.path("keep.bin"), "old contents").unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"keep.bin\",\"size\":1000,\"overwrite\":true}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&[b'x'; 999]).await;
    });
    server.wait_idle();
    assert_eq!(
        std::fs::read_to_string(server.path("keep.bin")).unwrap(),
        "old contents"
    );
    assert!(server.staging_files().is_empty());
}

#[test]
fn a_client_vanishing_mid_download_does_not_hurt_the_server() {
    let server = server();
    std::fs::write(server.path("big.bin"), random_bytes(20 << 20, 3)).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"big.bin\"}\n")
            .await;
        assert_eq!(raw.reply().await["size"], 20 << 20);
        raw.body(100_000).await;
        drop(raw);
    });
    server.wait_idle();
    let before = std::fs::read(server.path("big.bin")).unwrap();
    assert_eq!(before, random_bytes(20 << 20, 3));
    task::block_on(async { good_request_works(&mut Raw::connect(server.addr).await).await });
}

#[test]
fn a_refused_upload_sends_no_go_ahead_and_the_connection_stays_in_step() {
    let server = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"hello.txt\",\"size\":5}\n")
            .await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "exists");
        good_request_works(&mut raw).await;
    });
    assert_eq!(
        std::fs::read_to_string(server.path("hello.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn paths_that_leave_the_root_are_forbidden_both_ways() {
    let server = server();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "secret").unwrap();
    symlink(outside.path().join("secret"), server.path("link_to_secret")).unwrap();
    symlink(outside.path(), server.path("link_to_outside")).unwrap();
    let absolute = outside.path().join("secret");
    let gets = [
        "../secret".to_owned(),
        "a/../../secret".to_owned(),
        absolute.to_str().unwrap().to_owned(),
        "link_to_secret".to_owned(),
        "link_to_outside/secret".to_owned(),
    ];
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for path in &gets {
            let req = serde_json::json!({"verb": "GET", "path": path}).to_string() + "\n";
            raw.write(req.as_bytes()).await;
            assert_eq!(raw.reply().await["code"], "forbidden", "GET {path}");
        }
        for path in [
            "../evil",
            "link_to_outside/evil",
            "/tmp/evil",
            ".sft/tmp/evil",
        ] {
            let req =
                serde_json::json!({"verb": "SEND", "path": path, "size": 4}).to_string() + "\n";
            raw.write(req.as_bytes()).await;
            assert_eq!(raw.reply().await["code"], "forbidden", "SEND {path}");
        }
        good_request_works(&mut raw).await;
    });
    let names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec!["secret"],
        "nothing was written outside the root"
    );
}

/// A `SEND` onto a symlink takes the link as an existing file, wherever it points (outside the
/// root, inside it, nowhere): `exists` without `overwrite`; with it, the link itself is replaced
/// by the upload, small or streamed, and nothing is written through it (PROTOCOL.md §4).
#[test]
fn a_send_onto_a_symlink_replaces_the_link_itself() {
    let server = server();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "secret").unwrap();
    symlink(outside.path().join("secret"), server.path("out")).unwrap();
    symlink("hello.txt", server.path("in")).unwrap();
    symlink("nowhere", server.path("dangling")).unwrap();
    let streamed = random_bytes(300 * 1024, 7);
    let uploads: [(&str, &[u8]); 3] = [("out", b"new"), ("in", &streamed), ("dangling", b"new")];
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (name, body) in uploads {
            let refused = raw.send(json!({"verb": "SEND", "path": name}), body).await;
            assert_eq!(refused["code"], "exists", "{name}: {refused}");
            assert!(std::fs::symlink_metadata(server.path(name))
                .unwrap()
                .is_symlink());
            let request = json!({"verb": "SEND", "path": name, "overwrite": true});
            let stored = raw.send(request, body).await;
            assert_eq!(stored["ok"], true, "{name}: {stored}");
            let now = std::fs::symlink_metadata(server.path(name)).unwrap();
            assert!(now.is_file(), "{name}: the link itself was replaced");
            assert_eq!(std::fs::read(server.path(name)).unwrap(), body);
        }
        good_request_works(&mut raw).await;
    });
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "secret"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
}

#[test]
fn over_long_paths_and_names_are_refused() {
    let server = server();
    let long_name = "n".repeat(256);
    let long_path = "d/".repeat(2100) + "f";
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for path in [&long_name, &long_path] {
            for verb in ["GET", "SEND"] {
                let req =
                    serde_json::json!({"verb": verb, "path": path, "size": 1}).to_string() + "\n";
                raw.write(req.as_bytes()).await;
                assert_eq!(
                    raw.reply().await["code"],
                    "bad_request",
                    "{verb} of a {}-byte path",
                    path.len()
                );
            }
        }
        good_request_works(&mut raw).await;
    });
    assert!(
        !server.path("d").exists(),
        "no folders were created for a refused path"
    );
}

#[test]
fn folders_and_non_folders_are_refused_sensibly() {
    let server = server();
    std::fs::create_dir(server.path("adir")).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"adir\"}\n").await;
        assert_eq!(raw.reply().await["code"], "bad_request");
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"adir\",\"size\":1,\"overwrite\":true}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "bad_request");
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"hello.txt/child\",\"size\":1}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "bad_request");
        good_request_works(&mut raw).await;
    });
}

#[test]
fn upload_limit_and_read_only_are_enforced_before_any_byte() {
    let limited = TestServer::start_with(&["--max-upload-bytes", "10"], sft_commands::builtins());
    let read_only = TestServer::start_with(&["--read-only"], sft_commands::builtins());
    task::block_on(async {
        let mut raw = Raw::connect(limited.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"big\",\"size\":11}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "too_large");
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"small\",\"size\":10}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(b"0123456789").await;
        assert_eq!(raw.reply().await["size"], 10);

        let mut raw = Raw::connect(read_only.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"x\",\"size\":1}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "read_only");
    });
    assert!(!limited.path("big").exists());
    assert!(!read_only.path("x").exists());
}
