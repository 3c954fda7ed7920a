//! Times and permission bits: what `GET`, `LIST` and `STAT` report, what `SEND` stores, and the
//! bits an upload gets without asking (the umask, or those of the file it replaces).

use async_std::task;
use serde_json::{json, Value};
use sft_integration_tests::{Raw, ServerProcess, TestServer};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

const MTIME: i64 = 1_700_000_000;

fn set_mtime(path: &Path, secs: i64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs as u64))
        .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Sends a sized `SEND` with `extra` fields and `body`; returns the final reply.
async fn send(raw: &mut Raw, path: &str, body: &[u8], extra: Value) -> Value {
    let mut request = json!({"verb": "SEND", "path": path});
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    raw.send(request, body).await
}

#[test]
fn get_replies_carry_the_sent_files_time_and_permission_bits() {
    let server = TestServer::start();
    let small = server.path("small.txt");
    let large = server.path("large.bin");
    fs::write(&small, b"small").unwrap();
    fs::write(&large, vec![7u8; 200 * 1024]).unwrap();
    for (path, mode) in [(&small, 0o640), (&large, 0o4755)] {
        set_mtime(path, MTIME);
        chmod(path, mode);
    }
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (name, size, hash) in [
            ("small.txt", 5, false),
            ("small.txt", 5, true),
            ("large.bin", 200 * 1024, false),
            ("large.bin", 200 * 1024, true),
        ] {
            let request = json!({"verb": "GET", "path": name, "hash": hash});
            raw.write(format!("{request}\n").as_bytes()).await;
            let reply = raw.reply().await;
            assert_eq!(reply["mtime"], MTIME, "{name}: {reply}");
            let want = if name == "small.txt" { 0o640 } else { 0o755 };
            assert_eq!(reply["mode"], want, "{name}: no set-id bits: {reply}");
            raw.body(size).await;
            if reply["trailer"] == true {
                raw.reply().await;
            }
        }
    });
}

#[test]
fn list_and_stat_entries_carry_permission_bits() {
    let server = TestServer::start();
    fs::create_dir(server.path("d")).unwrap();
    fs::write(server.path("d/f"), b"f").unwrap();
    chmod(&server.path("d/f"), 0o2751);
    chmod(&server.path("d"), 0o750);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"d/f\",\"hash\":false}\n")
            .await;
        assert_eq!(raw.reply().await["entry"]["mode"], 0o2751);
        raw.write(b"{\"verb\":\"LIST\",\"recursive\":true}\n").await;
        assert_eq!(raw.reply().await["ok"], true);
        let d = raw.reply().await;
        let f = raw.reply().await;
        assert_eq!((&d["name"], &d["mode"]), (&json!("d"), &json!(0o750)));
        assert_eq!((&f["name"], &f["mode"]), (&json!("d/f"), &json!(0o2751)));
        assert_eq!(raw.reply().await["end"], true);
    });
}

#[test]
fn send_stores_the_requested_time_and_bits() {
    let server = TestServer::start();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let hash = blake3::hash(b"hello").to_hex().to_string();
        let extra = json!({"blake3": hash, "mtime": MTIME, "mode": 0o4755});
        let reply = send(&mut raw, "hashed.txt", b"hello", extra).await;
        assert_eq!(reply["ok"], true, "{reply}");
        let reply = send(
            &mut raw,
            "plain.txt",
            b"hi",
            json!({"mtime": 12345, "mode": 0o600}),
        )
        .await;
        assert_eq!(reply["ok"], true, "{reply}");

        // Chunked: the same fields.
        raw.write(
            format!(
                "{}\n",
                json!({"verb": "SEND", "path": "streamed.txt", "body": "chunked",
                       "mtime": MTIME + 1, "mode": 0o700})
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(b"{\"size\":3}\nabc{\"size\":0}\n").await;
        assert_eq!(raw.reply().await["size"], 3);
    });
    let meta = |name: &str| fs::metadata(server.path(name)).unwrap();
    assert_eq!(meta("hashed.txt").mtime(), MTIME);
    assert_eq!(mode_of(&server.path("hashed.txt")), 0o755, "never set-id");
    assert_eq!(meta("plain.txt").mtime(), 12345);
    assert_eq!(mode_of(&server.path("plain.txt")), 0o600);
    assert_eq!(meta("streamed.txt").mtime(), MTIME + 1);
    assert_eq!(mode_of(&server.path("streamed.txt")), 0o700);
}

#[test]
fn uploads_get_the_umasks_bits_and_replacements_keep_the_old_ones() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in_shell(root.path(), &[], Some("umask 022"));
    fs::write(root.path().join("kept.txt"), b"old").unwrap();
    chmod(&root.path().join("kept.txt"), 0o640);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let hash = |b: &[u8]| blake3::hash(b).to_hex().to_string();
        // Resumable (a declared hash) and plain uploads alike.
        let reply = send(&mut raw, "new.txt", b"new", json!({"blake3": hash(b"new")})).await;
        assert_eq!(reply["ok"], true, "{reply}");
        let reply = send(&mut raw, "plain.txt", b"plain", json!({})).await;
        assert_eq!(reply["ok"], true, "{reply}");
        let extra = json!({"blake3": hash(b"replaced"), "overwrite": true});
        let reply = send(&mut raw, "kept.txt", b"replaced", extra).await;
        assert_eq!(reply["ok"], true, "{reply}");
        let reply = send(&mut raw, "exec.sh", b"#!", json!({"mode": 0o755})).await;
        assert_eq!(reply["ok"], true, "{reply}");
    });
    assert_eq!(mode_of(&root.path().join("new.txt")), 0o644);
    assert_eq!(mode_of(&root.path().join("plain.txt")), 0o644);
    assert_eq!(fs::read(root.path().join("kept.txt")).unwrap(), b"replaced");
    assert_eq!(mode_of(&root.path().join("kept.txt")), 0o640);
    assert_eq!(mode_of(&root.path().join("exec.sh")), 0o755);
}
