//! Folder sync, both ways, run as real processes: a rerun transfers only what differs (nothing
//! when nothing changed), a changed file is replaced only with `--overwrite`, `--checksum`
//! compares hashes of every same-size file, and interrupted transfers are continued without
//! being asked to.

use sft_integration_tests::{
    expect_code, json_lines, random_bytes, sft, stderr, Relay, Tamper, TestServer,
};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

const FILES: usize = 2000;

/// The batch's summary `--json` line (an error line may follow it).
#[track_caller]
fn summary(out: &Output) -> serde_json::Value {
    let lines = json_lines(out);
    let found = lines.iter().rev().find(|l| l["summary"] == true).cloned();
    found.unwrap_or_else(|| panic!("no summary line; stderr: {}", stderr(out)))
}

#[track_caller]
fn counts(out: &Output) -> (u64, u64, u64, u64) {
    let s = summary(out);
    (
        s["transferred"].as_u64().unwrap(),
        s["skipped"].as_u64().unwrap(),
        s["failed"].as_u64().unwrap(),
        s["bytes_transferred"].as_u64().unwrap(),
    )
}

/// A folder of `FILES` small files in two levels.
fn fill(dir: &Path) {
    for i in 0..FILES {
        let sub = dir.join(format!("d{}", i % 10));
        fs::create_dir_all(&sub).unwrap();
        fs::write(
            sub.join(format!("f{i:04}.txt")),
            format!("file number {i}\n"),
        )
        .unwrap();
    }
}

/// Sets a file's modification time to a fixed day long ago: a rewritten file then never
/// shares its time with the other copy, even when both were written within one second.
fn age(path: &Path) {
    let day = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(day)
        .unwrap();
}

/// Changes three files of `dir`: two keep their size with other bytes, one grows.
fn change_three(dir: &Path) -> [std::path::PathBuf; 3] {
    let a = dir.join("d1/f0001.txt");
    let b = dir.join("d2/f0002.txt");
    let c = dir.join("d3/f0003.txt");
    fs::write(&a, b"FILE NUMBER 1\n").unwrap();
    fs::write(&b, b"file numbeR 2\n").unwrap();
    fs::write(&c, b"file number 3, and longer now\n").unwrap();
    for p in [&a, &b, &c] {
        age(p);
    }
    [a, b, c]
}

/// Inode and contents of every file below `dir`: what "left untouched" means.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, u64, Vec<u8>)> {
    sft_integration_tests::list_files(dir)
        .into_iter()
        .map(|p| {
            let ino = fs::metadata(&p).unwrap().ino();
            let data = fs::read(&p).unwrap();
            (p, ino, data)
        })
        .collect()
}

#[test]
fn get_r_twice_moves_nothing_and_overwrite_moves_exactly_what_changed() {
    let server = TestServer::start();
    fill(&server.path("data"));
    let addr = server.server_arg();
    let cwd = tempfile::tempdir().unwrap();
    let get = |extra: &[&str]| {
        let mut args = vec!["get", "-r", "--json", &addr, "data", "out"];
        args.splice(2..2, extra.iter().copied());
        sft(&args, cwd.path())
    };
    let out = get(&[]);
    expect_code(&out, 0);
    assert_eq!(counts(&out).0, FILES as u64);
    let before = snapshot(&cwd.path().join("out"));
    assert_eq!(before.len(), FILES);

    // Again (and again with -c, which used to fetch every finished file once more).
    for extra in [&[][..], &["-c"][..]] {
        let out = get(extra);
        expect_code(&out, 0);
        assert_eq!(counts(&out), (0, FILES as u64, 0, 0), "{extra:?}");
        assert_eq!(snapshot(&cwd.path().join("out")), before);
    }

    let changed = change_three(&server.path("data"));
    let out = get(&[]);
    expect_code(&out, 4);
    assert_eq!(counts(&out), (0, FILES as u64 - 3, 3, 0));
    let err = stderr(&out);
    assert_eq!(err.matches("changed: ").count(), 3, "{err}");
    assert!(err.contains("(use --overwrite to replace)"), "{err}");
    assert_eq!(snapshot(&cwd.path().join("out")), before);

    let out = get(&["--overwrite"]);
    expect_code(&out, 0);
    let (moved, skipped, failed, _) = counts(&out);
    assert_eq!((moved, skipped, failed), (3, FILES as u64 - 3, 0));
    for path in &changed {
        let rel = path.strip_prefix(server.path("data")).unwrap();
        assert_eq!(
            fs::read(cwd.path().join("out").join(rel)).unwrap(),
            fs::read(path).unwrap()
        );
    }
    let out = get(&[]);
    expect_code(&out, 0);
    assert_eq!(counts(&out), (0, FILES as u64, 0, 0));
}

#[test]
fn send_r_twice_moves_nothing_and_overwrite_moves_exactly_what_changed() {
    let server = TestServer::start();
    let cwd = tempfile::tempdir().unwrap();
    fill(&cwd.path().join("data"));
    let addr = server.server_arg();
    let send = |extra: &[&str]| {
        let mut args = vec!["send", "-r", "--json", &addr, "data", "up"];
        args.splice(2..2, extra.iter().copied());
        sft(&args, cwd.path())
    };
    let out = send(&[]);
    expect_code(&out, 0);
    assert_eq!(counts(&out).0, FILES as u64);
    let before = snapshot(&server.path("up"));
    assert_eq!(before.len(), FILES);

    // Again: it used to fail once per file with `exists`.
    for extra in [&[][..], &["-c"][..]] {
        let out = send(extra);
        expect_code(&out, 0);
        assert_eq!(counts(&out), (0, FILES as u64, 0, 0), "{extra:?}");
        assert_eq!(snapshot(&server.path("up")), before);
    }

    let changed = change_three(&cwd.path().join("data"));
    let out = send(&[]);
    expect_code(&out, 4);
    assert_eq!(counts(&out), (0, FILES as u64 - 3, 3, 0));
    assert_eq!(stderr(&out).matches("changed: ").count(), 3);
    assert_eq!(snapshot(&server.path("up")), before);

    let out = send(&["--overwrite"]);
    expect_code(&out, 0);
    let (moved, skipped, failed, _) = counts(&out);
    assert_eq!((moved, skipped, failed), (3, FILES as u64 - 3, 0));
    for path in &changed {
        let rel = path.strip_prefix(cwd.path().join("data")).unwrap();
        assert_eq!(
            fs::read(server.path("up").join(rel)).unwrap(),
            fs::read(path).unwrap()
        );
    }
}

#[test]
fn checksum_finds_a_change_the_quick_check_cannot_see() {
    let server = TestServer::start();
    let cwd = tempfile::tempdir().unwrap();
    fs::create_dir_all(server.path("box")).unwrap();
    fs::create_dir_all(cwd.path().join("box")).unwrap();
    // Same size, same time, other bytes: only a hash tells them apart.
    fs::write(server.path("box/x.txt"), b"server copy\n").unwrap();
    fs::write(cwd.path().join("box/x.txt"), b"client copy\n").unwrap();
    age(&server.path("box/x.txt"));
    age(&cwd.path().join("box/x.txt"));
    let addr = server.server_arg();
    for verb in ["get", "send"] {
        let out = sft(&[verb, "-r", "--json", &addr, "box", "box"], cwd.path());
        expect_code(&out, 0);
        assert_eq!(counts(&out), (0, 1, 0, 0), "{verb}");
        let out = sft(
            &[verb, "-r", "--json", "--checksum", &addr, "box", "box"],
            cwd.path(),
        );
        expect_code(&out, 4);
        assert_eq!(counts(&out), (0, 0, 1, 0), "{verb}");
    }
    assert_eq!(
        fs::read(server.path("box/x.txt")).unwrap(),
        b"server copy\n"
    );
    assert_eq!(
        fs::read(cwd.path().join("box/x.txt")).unwrap(),
        b"client copy\n"
    );
}

#[test]
fn a_kept_partial_download_is_continued_without_being_asked() {
    let server = TestServer::start();
    let data = random_bytes(1 << 20, 81);
    fs::write(server.path("big.bin"), &data).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    fs::write(cwd.path().join(".big.bin.sft-part"), &data[..300_000]).unwrap();
    let out = sft(
        &["get", "--json", &server.server_arg(), "big.bin"],
        cwd.path(),
    );
    expect_code(&out, 0);
    let report = &json_lines(&out)[0];
    assert_eq!(report["resumed_from"], 300_000, "{report}");
    assert_eq!(fs::read(cwd.path().join("big.bin")).unwrap(), data);
    assert!(!cwd.path().join(".big.bin.sft-part").exists());
}

#[test]
fn a_partial_of_another_version_is_fetched_again_whole() {
    let server = TestServer::start();
    let data = random_bytes(1 << 20, 82);
    fs::write(server.path("big.bin"), &data).unwrap();
    fs::create_dir_all(server.path("dir")).unwrap();
    fs::write(server.path("dir/big.bin"), &data).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let stale = random_bytes(300_000, 83);
    fs::write(cwd.path().join(".big.bin.sft-part"), &stale).unwrap();
    fs::create_dir_all(cwd.path().join("dir")).unwrap();
    fs::write(cwd.path().join("dir/.big.bin.sft-part"), &stale).unwrap();
    let addr = server.server_arg();
    let out = sft(&["get", &addr, "big.bin"], cwd.path());
    expect_code(&out, 0);
    let out = sft(&["get", "-r", &addr, "dir"], cwd.path());
    expect_code(&out, 0);
    for at in ["big.bin", "dir/big.bin"] {
        assert!(fs::read(cwd.path().join(at)).unwrap() == data, "{at}");
    }
    assert!(!cwd.path().join(".big.bin.sft-part").exists());
    assert!(!cwd.path().join("dir/.big.bin.sft-part").exists());
}

#[test]
fn an_upload_cut_off_is_continued_by_a_plain_rerun() {
    let server = TestServer::start();
    let relay = Relay::start(
        server.addr,
        Tamper {
            cut_up_after: Some(1 << 20),
            ..Default::default()
        },
    );
    let cwd = tempfile::tempdir().unwrap();
    let data = random_bytes(6 << 20, 84);
    fs::write(cwd.path().join("up.bin"), &data).unwrap();
    let out = sft(&["send", &relay.addr.to_string(), "up.bin"], cwd.path());
    expect_code(&out, 5);
    relay.join();
    server.wait_idle();
    let out = sft(
        &["send", "--json", &server.server_arg(), "up.bin"],
        cwd.path(),
    );
    expect_code(&out, 0);
    let report = &json_lines(&out)[0];
    assert!(report["resumed_from"].as_u64().unwrap() > 0, "{report}");
    assert!(fs::read(server.path("up.bin")).unwrap() == data);
}

#[test]
fn many_file_forms_skip_what_is_there_too() {
    let server = TestServer::start();
    let cwd = tempfile::tempdir().unwrap();
    for name in ["a.txt", "b.txt"] {
        fs::write(server.path(name), format!("server {name}")).unwrap();
        fs::write(cwd.path().join(name), format!("client {name}!")).unwrap();
    }
    let addr = server.server_arg();
    let get = ["get", "--json", &addr, "-o", "down", "a.txt", "b.txt"];
    let send = ["send", "--json", &addr, "a.txt", "b.txt", "-o", "up"];
    for args in [get, send] {
        let out = sft(&args, cwd.path());
        expect_code(&out, 0);
        assert_eq!(counts(&out).0, 2, "{args:?}");
        let out = sft(&args, cwd.path());
        expect_code(&out, 0);
        assert_eq!(counts(&out), (0, 2, 0, 0), "{args:?}");
    }
}
