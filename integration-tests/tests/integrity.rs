//! BLAKE3 verification and resumable transfers through the real binaries.

use sft_integration_tests::{
    list_files, random_bytes, sft, wait_until, Raw, Relay, ServerProcess, Tamper, TestServer,
};
use std::fs;
use std::path::Path;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);
const LOOPBACK: [&str; 2] = ["--host", "127.0.0.1"];

fn json_line(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON line ({e}): {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_bit_flipped_in_a_download_is_caught_and_nothing_is_stored() {
    let root = tempfile::tempdir().unwrap();
    let data = random_bytes(1 << 20, 21);
    fs::write(root.path().join("f.bin"), &data).unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let relay = Relay::start(
        server.addr,
        Tamper {
            flip_down_at: Some(300_000),
            ..Default::default()
        },
    );
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(
        &["get", "--json", &relay.addr.to_string(), "f.bin", "got.bin"],
        cwd.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"));
    assert_eq!(json_line(&out)["error"]["code"], "checksum_mismatch");
    assert!(
        files_in(cwd.path()).is_empty(),
        "nothing under the final name, no partial: {:?}",
        files_in(cwd.path())
    );
}

#[test]
fn a_bit_flipped_in_an_upload_is_caught_and_nothing_is_stored() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let relay = Relay::start(
        server.addr,
        Tamper {
            flip_up_at: Some(300_000),
            ..Default::default()
        },
    );
    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join("up.bin"), random_bytes(1 << 20, 22)).unwrap();
    let out = sft(&["send", &relay.addr.to_string(), "up.bin"], cwd.path());
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
    assert!(!root.path().join("up.bin").exists());
    wait_until(LONG, || {
        files_in(&root.path().join(".sft/partial")).is_empty()
            && list_files(&root.path().join(".sft/tmp")).is_empty()
    });
}

#[test]
fn an_interrupted_download_resumes_with_continue() {
    let root = tempfile::tempdir().unwrap();
    let data = random_bytes(24 << 20, 23);
    fs::write(root.path().join("big.bin"), &data).unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let cwd = tempfile::tempdir().unwrap();

    let relay = Relay::start(
        server.addr,
        Tamper {
            cut_down_after: Some(10 << 20),
            ..Default::default()
        },
    );
    let out = sft(&["get", &relay.addr.to_string(), "big.bin"], cwd.path());
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    relay.join();
    assert!(!cwd.path().join("big.bin").exists());
    let held = fs::metadata(cwd.path().join(".big.bin.sft-part"))
        .unwrap()
        .len();
    assert!(
        held > 0 && held < data.len() as u64,
        "partial holds {held} bytes"
    );

    let out = sft(
        &["get", "-c", "--json", &server.addr.to_string(), "big.bin"],
        cwd.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_line(&out);
    assert_eq!(report["size"], data.len());
    assert_eq!(report["resumed_from"], held);
    assert_eq!(report["bytes_transferred"], data.len() as u64 - held);
    assert_eq!(report["blake3"], blake3::hash(&data).to_hex().as_str());
    for key in ["verb", "remote", "local", "elapsed_ms", "bytes_per_sec"] {
        assert!(!report[key].is_null(), "--json lacks {key}: {report}");
    }
    assert!(
        fs::read(cwd.path().join("big.bin")).unwrap() == data,
        "byte-identical after the resume"
    );
    assert_eq!(files_in(cwd.path()), vec!["big.bin"]);
}

/// `get --retries` when the file is replaced on the server between the cut and the retry: the
/// resumed download fails its check (its start is of the old version), and is fetched again
/// whole, as a rerun would, instead of ending with a checksum mismatch. One file, then a batch.
#[test]
fn a_file_replaced_while_a_retry_waits_is_fetched_again_whole() {
    let root = tempfile::tempdir().unwrap();
    let old = random_bytes(4 << 20, 901);
    let new = random_bytes(4 << 20, 902);
    let small = random_bytes(100_000, 903);
    fs::write(root.path().join("big.bin"), &old).unwrap();
    fs::write(root.path().join("a.bin"), &small).unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let cwd = tempfile::tempdir().unwrap();
    let replace = |seed: &[u8]| {
        let (file, data) = (root.path().join("big.bin"), seed.to_vec());
        move || fs::write(file, data).unwrap()
    };
    // `sft get --json --retries 2` through the relay, which it waits for.
    let get = |relay: Relay, rest: &[&str]| {
        let addr = relay.addr.to_string();
        let args = [
            &["get", "--json", "--retries", "2", addr.as_str()][..],
            rest,
        ]
        .concat();
        let out = sft(&args, cwd.path());
        relay.join();
        out
    };
    let relay = Relay::cut_once_then(server.addr, 1 << 20, replace(&new));
    let out = get(relay, &["big.bin"]);
    let report = json_line(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(fs::read(cwd.path().join("big.bin")).unwrap() == new);
    assert_eq!(report["resumed_from"], 0, "fetched whole: {report}");
    assert_eq!(files_in(cwd.path()), ["big.bin"]);

    // In a batch: the same, for the file that was cut; the others are untouched.
    let relay = Relay::cut_once_then(server.addr, 100_000 + (1 << 20), replace(&old));
    let out = get(relay, &["-o", "got", "a.bin", "big.bin"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fs::read(cwd.path().join("got/big.bin")).unwrap() == old);
    assert!(fs::read(cwd.path().join("got/a.bin")).unwrap() == small);
    assert_eq!(files_in(&cwd.path().join("got")), ["a.bin", "big.bin"]);
}

#[test]
fn without_continue_a_leftover_partial_is_replaced() {
    let server = TestServer::start();
    let data = random_bytes(100_000, 24);
    fs::write(server.path("f.bin"), &data).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    fs::write(
        cwd.path().join(".f.bin.sft-part"),
        b"garbage that is not the file",
    )
    .unwrap();
    let out = sft(
        &["get", "--json", &server.server_arg(), "f.bin"],
        cwd.path(),
    );
    assert!(out.status.success());
    assert_eq!(json_line(&out)["resumed_from"], 0);
    assert!(fs::read(cwd.path().join("f.bin")).unwrap() == data);
}

#[test]
fn an_interrupted_upload_resumes_with_continue() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let cwd = tempfile::tempdir().unwrap();
    let data = random_bytes(24 << 20, 25);
    fs::write(cwd.path().join("big.bin"), &data).unwrap();

    let relay = Relay::start(
        server.addr,
        Tamper {
            cut_up_after: Some(10 << 20),
            ..Default::default()
        },
    );
    let out = sft(
        &["send", &relay.addr.to_string(), "big.bin", "in/big.bin"],
        cwd.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    relay.join();
    wait_until(LONG, || {
        server
            .logs_with("request")
            .iter()
            .any(|r| r["verb"] == "SEND" && r["outcome"] == "aborted")
    });
    assert!(!root.path().join("in/big.bin").exists());
    assert_eq!(
        files_in(&root.path().join(".sft/partial")).len(),
        1,
        "the server kept the partial"
    );

    let out = sft(
        &[
            "send",
            "-c",
            "--json",
            &server.addr.to_string(),
            "big.bin",
            "in/big.bin",
        ],
        cwd.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_line(&out);
    let resumed = report["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0, "{report}");
    assert_eq!(report["bytes_transferred"], data.len() as u64 - resumed);
    assert_eq!(report["blake3"], blake3::hash(&data).to_hex().as_str());
    assert!(fs::read(root.path().join("in/big.bin")).unwrap() == data);
    assert!(
        files_in(&root.path().join(".sft/partial")).is_empty(),
        "the partial became the file"
    );
}

#[test]
fn a_partial_cannot_be_continued_by_a_different_upload() {
    let server = TestServer::start();
    let size = 200_000u64;
    let first = random_bytes(size as usize, 26);
    let other = random_bytes(size as usize, 27);
    let header = |data: &[u8], resume: bool| {
        let h = blake3::hash(data).to_hex().to_string();
        serde_json::json!({"verb": "SEND", "path": "p.bin", "size": size, "blake3": h, "resume": resume}).to_string() + "\n"
    };
    async_std::task::block_on(async {
        // An upload breaks off halfway: the server keeps it.
        let mut raw = Raw::connect(server.addr).await;
        raw.write(header(&first, false).as_bytes()).await;
        assert_eq!(raw.reply().await, serde_json::json!({"ok": true}));
        raw.write(&first[..100_000]).await;
        drop(raw);
        server.wait_idle();

        // A different file for the same path and size starts from zero…
        let mut raw = Raw::connect(server.addr).await;
        raw.write(header(&other, true).as_bytes()).await;
        assert_eq!(raw.reply().await, serde_json::json!({"ok": true}));
        drop(raw);
        server.wait_idle();

        // …and the original can still continue where it stopped.
        let mut raw = Raw::connect(server.addr).await;
        raw.write(header(&first, true).as_bytes()).await;
        assert_eq!(
            raw.reply().await,
            serde_json::json!({"ok": true, "offset": 100_000})
        );
        raw.write(&first[100_000..]).await;
        let done = raw.reply().await;
        assert_eq!(done["size"], size);
        assert_eq!(done["blake3"], blake3::hash(&first).to_hex().as_str());
    });
    assert!(fs::read(server.path("p.bin")).unwrap() == first);
}

#[test]
fn a_send_with_a_wrong_hash_is_refused_at_the_end() {
    let server = TestServer::start();
    async_std::task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let wrong = blake3::hash(b"something else").to_hex().to_string();
        let req = serde_json::json!({"verb": "SEND", "path": "x", "size": 5, "blake3": wrong})
            .to_string()
            + "\n";
        raw.write(req.as_bytes()).await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(b"hello").await;
        assert_eq!(raw.reply().await["code"], "checksum_mismatch");
        // Malformed hashes are refused up front.
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"x\",\"size\":5,\"blake3\":\"xyz\"}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "bad_request");
    });
    assert!(!server.path("x").exists());
}

#[test]
fn the_hash_cache_serves_known_hashes_up_front_and_notices_changes() {
    let server = TestServer::start();
    // Larger than the small-file path (64 KiB), so an unknown hash comes in a trailer.
    let one = random_bytes(200_000, 31);
    let two = random_bytes(200_000, 32);
    fs::write(server.path("c.bin"), &one).unwrap();
    // A version written in the last few milliseconds is never cached (a write in the same
    // clock tick would not show in its times): let it age first.
    std::thread::sleep(std::time::Duration::from_millis(120));
    async_std::task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let get = b"{\"verb\":\"GET\",\"path\":\"c.bin\",\"hash\":true}\n";

        raw.write(get).await;
        let first = raw.reply().await;
        assert_eq!(first["trailer"], true, "{first}");
        assert!(first.get("blake3").is_none());
        assert!(raw.body(one.len()).await == one);
        let trailer = raw.reply().await;
        assert_eq!(trailer["blake3"], blake3::hash(&one).to_hex().as_str());

        raw.write(get).await;
        let second = raw.reply().await;
        assert_eq!(
            second["blake3"], trailer["blake3"],
            "cached: in the reply line"
        );
        assert!(second.get("trailer").is_none());
        raw.body(one.len()).await;

        fs::write(server.path("c.bin"), &two).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(120));
        raw.write(get).await;
        let third = raw.reply().await;
        assert_eq!(
            third["trailer"], true,
            "a changed file is hashed again: {third}"
        );
        assert!(raw.body(two.len()).await == two);
        assert_eq!(
            raw.reply().await["blake3"],
            blake3::hash(&two).to_hex().as_str()
        );

        // Resuming from an offset still yields the whole file's hash.
        raw.write(b"{\"verb\":\"GET\",\"path\":\"c.bin\",\"hash\":true,\"offset\":199997}\n")
            .await;
        let part = raw.reply().await;
        assert_eq!(part["size"], 3);
        assert_eq!(part["file_size"], 200_000);
        assert_eq!(part["blake3"], blake3::hash(&two).to_hex().as_str());
        assert_eq!(raw.body(3).await, &two[199_997..]);

        raw.write(b"{\"verb\":\"GET\",\"path\":\"c.bin\",\"offset\":200001}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "bad_request");
    });
}

#[test]
fn small_files_carry_their_hash_in_the_reply_line() {
    let server = TestServer::start();
    fs::write(server.path("s.txt"), "version one").unwrap();
    async_std::task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for content in ["version one", "version two"] {
            fs::write(server.path("s.txt"), content).unwrap();
            raw.write(b"{\"verb\":\"GET\",\"path\":\"s.txt\",\"hash\":true}\n")
                .await;
            let reply = raw.reply().await;
            assert_eq!(
                reply["blake3"],
                blake3::hash(content.as_bytes()).to_hex().as_str(),
                "{reply}"
            );
            assert!(reply.get("trailer").is_none());
            assert_eq!(raw.body(11).await, content.as_bytes());
        }
        raw.write(b"{\"verb\":\"GET\",\"path\":\"s.txt\",\"hash\":true,\"offset\":8}\n")
            .await;
        let part = raw.reply().await;
        assert_eq!(
            (part["size"].as_u64(), part["file_size"].as_u64()),
            (Some(3), Some(11))
        );
        assert_eq!(
            part["blake3"],
            blake3::hash(b"version two").to_hex().as_str()
        );
        assert_eq!(raw.body(3).await, b"two");
    });
}

#[test]
fn no_verify_downloads_ask_for_no_hash() {
    let server = TestServer::start();
    fs::write(server.path("n.txt"), "plain").unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(
        &[
            "get",
            "--no-verify",
            "--json",
            &server.server_arg(),
            "n.txt",
        ],
        cwd.path(),
    );
    assert!(out.status.success());
    assert!(json_line(&out)["blake3"].is_null());
    assert_eq!(fs::read(cwd.path().join("n.txt")).unwrap(), b"plain");
}

#[test]
fn json_errors_carry_the_code_and_the_exit_status() {
    let server = TestServer::start();
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(
        &["get", "--json", &server.server_arg(), "missing"],
        cwd.path(),
    );
    assert_eq!(out.status.code(), Some(4));
    let line = json_line(&out);
    assert_eq!(line["error"]["code"], "not_found");
    assert_eq!(line["exit_code"], 4);
}

#[test]
fn a_send_can_give_its_hash_in_a_trailer() {
    let server = TestServer::start();
    let data = random_bytes(300_000, 41);
    let hash = blake3::hash(&data).to_hex().to_string();
    let wrong = blake3::hash(b"not it").to_hex().to_string();
    let id = "0123456789abcdef0123456789abcdef";
    async_std::task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let header = |path: &str, extra: serde_json::Value| {
            let mut req = serde_json::json!({"verb": "SEND", "path": path, "size": data.len(), "trailer": true});
            req.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            req.to_string() + "\n"
        };

        // The right hash after the body: stored, and echoed.
        raw.write(header("good.bin", serde_json::json!({})).as_bytes())
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&data).await;
        raw.write(format!("{{\"blake3\":\"{hash}\"}}\n").as_bytes())
            .await;
        assert_eq!(raw.reply().await["blake3"], hash.as_str());

        // A wrong one: nothing stored, connection still in step.
        raw.write(header("bad.bin", serde_json::json!({})).as_bytes())
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&data).await;
        raw.write(format!("{{\"blake3\":\"{wrong}\"}}\n").as_bytes())
            .await;
        assert_eq!(raw.reply().await["code"], "checksum_mismatch");

        // A malformed trailer line: refused, connection still in step.
        raw.write(header("worse.bin", serde_json::json!({})).as_bytes())
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&data).await;
        raw.write(b"{\"blake3\":\"xyz\"}\n").await;
        assert_eq!(raw.reply().await["code"], "bad_request");

        // Contradictory or incomplete requests are refused before any byte.
        for extra in [
            serde_json::json!({"blake3": hash}),
            serde_json::json!({"trailer": false, "upload_id": id}),
            serde_json::json!({"upload_id": "short"}),
            serde_json::json!({"resume": true}),
        ] {
            raw.write(header("x.bin", extra.clone()).as_bytes()).await;
            assert_eq!(raw.reply().await["code"], "bad_request", "{extra}");
        }

        // With an upload id, a broken-off upload is kept and resumable.
        raw.write(header("resumed.bin", serde_json::json!({"upload_id": id})).as_bytes())
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&data[..100_000]).await;
        drop(raw);
        server.wait_idle();
        let mut raw = Raw::connect(server.addr).await;
        raw.write(
            header(
                "resumed.bin",
                serde_json::json!({"upload_id": id, "resume": true}),
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(raw.reply().await["offset"], 100_000);
        raw.write(&data[100_000..]).await;
        raw.write(format!("{{\"blake3\":\"{hash}\"}}\n").as_bytes())
            .await;
        assert_eq!(raw.reply().await["size"], data.len());
    });
    assert!(fs::read(server.path("good.bin")).unwrap() == data);
    assert!(fs::read(server.path("resumed.bin")).unwrap() == data);
    for name in ["bad.bin", "worse.bin", "x.bin"] {
        assert!(!server.path(name).exists(), "{name}");
    }
}
