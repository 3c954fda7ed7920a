//! DELETE, RENAME and HELLO: through the real `sft rm`, `sft mv` and `sft info`, and over the
//! client library against an in-process server — including hostile names, the reserved `.sft/`
//! by every spelling, a read-only server, and a folder swapped for a symlink mid-rename.

use async_std::task;
use serde_json::Value;
use sft_client::{Client, Error, ErrorCode, Kind};
use sft_integration_tests::{sft, Raw, TestServer};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON lines `sft … --json` printed.
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Every name below `dir` with its contents (files) — for "nothing changed" checks.
fn snapshot(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ty = e.file_type().unwrap();
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            if ty.is_dir() {
                todo.push(p);
                all.push((name, None));
            } else if ty.is_file() {
                all.push((name, Some(fs::read(&p).unwrap())));
            } else {
                all.push((name, None));
            }
        }
    }
    all.sort();
    all
}

#[test]
fn rm_removes_files_links_and_only_empty_folders() {
    let server = TestServer::start();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "s").unwrap();
    fs::create_dir_all(server.path("full/inner")).unwrap();
    fs::create_dir(server.path("empty")).unwrap();
    fs::write(server.path("a.txt"), "a").unwrap();
    fs::write(server.path("b.txt"), "b").unwrap();
    fs::write(server.path("full/f"), "f").unwrap();
    symlink(outside.path().join("secret"), server.path("link_out")).unwrap();
    symlink("full", server.path("link_full")).unwrap();
    let (addr, cwd) = (server.server_arg(), tempfile::tempdir().unwrap());
    let run = |args: &[&str]| sft(args, cwd.path());

    let out = run(&["rm", &addr, "a.txt"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "silent on success");
    assert!(!server.path("a.txt").exists());

    // A symlink is removed itself, even one pointing outside; its target stays.
    let out = run(&["rm", &addr, "link_out", "link_full", "--json"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(
        lines[0],
        serde_json::json!({"path": "link_out", "kind": "symlink"})
    );
    assert_eq!(lines[1]["kind"], "symlink");
    assert!(outside.path().join("secret").exists());
    assert!(server.path("full/f").exists());

    // A folder: refused without --folder; a non-empty one refused with it (never recursive).
    let out = run(&["rm", &addr, "empty"]);
    assert_eq!(code(&out), Some(4), "{out:?}");
    assert!(stderr(&out).contains("is a folder"), "{}", stderr(&out));
    let out = run(&["rm", &addr, "--folder", "full", "--json"]);
    assert_eq!(code(&out), Some(4));
    assert_eq!(json_lines(&out)[0]["error"]["code"], "bad_request");
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert!(server.path("full/inner").is_dir() && server.path("full/f").exists());
    let out = run(&["rm", &addr, "--folder", "b.txt"]);
    assert_eq!(code(&out), Some(4));
    assert!(server.path("b.txt").exists());
    let out = run(&["rm", &addr, "--folder", "empty", "full/inner", "-v"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert!(stderr(&out).contains("removed full/inner (folder)"));
    assert!(!server.path("empty").exists() && !server.path("full/inner").exists());

    // A batch goes on past a failure and exits with its code.
    let out = run(&["rm", &addr, "missing", "b.txt", "--json"]);
    assert_eq!(code(&out), Some(4), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines[0]["error"]["code"], "not_found");
    assert_eq!(lines[1]["kind"], "file");
    assert_eq!(lines.last().unwrap()["error"]["code"], "not_found");
    assert!(!server.path("b.txt").exists());
    assert_eq!(code(&run(&["rm", &addr])), Some(2), "a path is required");
}

#[test]
fn mv_moves_atomically_and_replaces_only_when_asked() {
    let server = TestServer::start();
    fs::create_dir_all(server.path("dir/sub")).unwrap();
    fs::create_dir(server.path("other")).unwrap();
    fs::write(server.path("a.txt"), "a").unwrap();
    fs::write(server.path("b.txt"), "b").unwrap();
    fs::write(server.path("dir/f"), "f").unwrap();
    let (addr, cwd) = (server.server_arg(), tempfile::tempdir().unwrap());
    let run = |args: &[&str]| sft(args, cwd.path());

    let out = run(&["mv", &addr, "a.txt", "other/a.txt"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(fs::read(server.path("other/a.txt")).unwrap(), b"a");
    assert!(!server.path("a.txt").exists());

    // An existing target: refused without --overwrite, both files unchanged.
    let out = run(&["mv", &addr, "other/a.txt", "b.txt", "--json"]);
    assert_eq!(code(&out), Some(4), "{out:?}");
    assert_eq!(json_lines(&out)[0]["error"]["code"], "exists");
    assert!(stderr(&out).contains("--overwrite"));
    assert_eq!(fs::read(server.path("b.txt")).unwrap(), b"b");
    let out = run(&["mv", &addr, "other/a.txt", "b.txt", "--overwrite", "--json"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(
        json_lines(&out)[0],
        serde_json::json!({"from": "other/a.txt", "to": "b.txt", "kind": "file"})
    );
    assert_eq!(fs::read(server.path("b.txt")).unwrap(), b"a");

    // Folders: moved whole; never replaced; never into themselves.
    let out = run(&["mv", &addr, "dir", "other/dir"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(fs::read(server.path("other/dir/f")).unwrap(), b"f");
    for (from, to) in [
        ("other/dir", "other/dir/sub/x"),
        ("other", "other/dir/x"),
        ("other/dir/sub", "b.txt"),
    ] {
        let out = run(&["mv", &addr, from, to, "--overwrite", "--json"]);
        assert_eq!(code(&out), Some(4), "{from} -> {to}: {out:?}");
        assert_eq!(
            json_lines(&out)[0]["error"]["code"],
            "bad_request",
            "{from} -> {to}"
        );
    }
    let out = run(&["mv", &addr, "b.txt", "nowhere/b.txt", "--json"]);
    assert_eq!(json_lines(&out)[0]["error"]["code"], "not_found");
    assert!(server.path("other/dir/sub").is_dir() && server.path("b.txt").exists());
}

#[test]
fn names_with_terminal_controls_are_handled_and_shown_escaped() {
    let server = TestServer::start();
    let evil = "red\u{1b}[31m\u{202e}txt.exe";
    fs::write(server.path(evil), "x").unwrap();
    fs::write(server.path("quote\"back\\slash"), "q").unwrap();
    let (addr, cwd) = (server.server_arg(), tempfile::tempdir().unwrap());

    let moved = "moved \u{9b}2J";
    let out = sft(&["mv", &addr, evil, moved, "-v", "--json"], cwd.path());
    assert_eq!(code(&out), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\u{1b}') && !text.contains('\u{9b}') && !text.contains('\u{202e}'));
    assert!(
        text.contains("\\u001b") && text.contains("\\u009b"),
        "{text}"
    );
    assert_eq!(
        json_lines(&out)[0]["from"],
        evil,
        "the JSON still carries the real name"
    );
    let err = stderr(&out);
    assert!(err.contains("\\u{1b}") && !err.contains('\u{1b}'), "{err}");
    assert!(server.path(moved).exists());

    let out = sft(
        &["rm", &addr, moved, "quote\"back\\slash", "-v"],
        cwd.path(),
    );
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert!(!stderr(&out).contains('\u{9b}'));
    assert!(!server.path(moved).exists() && !server.path("quote\"back\\slash").exists());

    // An error message quoting the name is escaped too.
    let out = sft(&["rm", &addr, evil], cwd.path());
    assert_eq!(code(&out), Some(4));
    assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
}

#[test]
fn the_reserved_folder_is_refused_by_every_spelling() {
    let server = TestServer::start();
    let (addr, cwd) = (server.server_arg(), tempfile::tempdir().unwrap());
    fs::write(cwd.path().join("up.txt"), "up").unwrap();
    // An upload makes the server create its reserved folder (and learn its identity).
    let out = sft(&["send", &addr, "up.txt", "-q"], cwd.path());
    assert_eq!(code(&out), Some(0), "{out:?}");
    fs::write(server.path(".sft/tmp/keep"), "k").unwrap();
    fs::create_dir(server.path("a")).unwrap();
    symlink(".sft", server.path("to_reserved")).unwrap();
    symlink(".", server.path("to_root")).unwrap();
    symlink(server.path(".sft"), server.path("abs_reserved")).unwrap();
    let before = snapshot(&server.path(".sft"));

    let spellings = [
        ".sft",
        "./.sft",
        ".sft/",
        "./.sft/x",
        ".sft/tmp",
        ".sft/tmp/keep",
        "a/../.sft",
        "a/../.sft/tmp/keep",
        "to_reserved/tmp/keep",
        "to_reserved/tmp",
        "abs_reserved/tmp/keep",
        "to_root/.sft",
        "to_root/.sft/tmp/keep",
        "to_root/to_reserved/tmp",
    ];
    for p in spellings {
        for folder in [&[][..], &["--folder"][..]] {
            let mut args = vec!["rm", &addr, p, "--json"];
            args.extend_from_slice(folder);
            let out = sft(&args, cwd.path());
            assert_eq!(code(&out), Some(4), "rm {p}: {out:?}");
            assert_eq!(json_lines(&out)[0]["error"]["code"], "forbidden", "rm {p}");
        }
        for (from, to) in [(p, "stolen"), ("up.txt", p)] {
            let out = sft(
                &["mv", &addr, from, to, "--overwrite", "--json"],
                cwd.path(),
            );
            assert_eq!(code(&out), Some(4), "mv {from} {to}: {out:?}");
            assert_eq!(
                json_lines(&out)[0]["error"]["code"],
                "forbidden",
                "mv {from} {to}"
            );
        }
    }
    // Into it, by a path below a link to it.
    let out = sft(
        &["mv", &addr, "up.txt", "to_reserved/tmp/up", "--json"],
        cwd.path(),
    );
    assert_eq!(json_lines(&out)[0]["error"]["code"], "forbidden");
    // The root itself is neither removed nor moved, nor replaced.
    for p in ["", ".", "a/.."] {
        for args in [
            vec!["rm", &addr, p, "--json"],
            vec!["rm", &addr, "--folder", p, "--json"],
            vec!["mv", &addr, p, "a/root", "--json"],
        ] {
            let out = sft(&args, cwd.path());
            assert_eq!(
                json_lines(&out)[0]["error"]["code"],
                "forbidden",
                "{args:?}"
            );
        }
        // The root as TO is a folder to move into, where `a` already is: it stays.
        let out = sft(&["mv", &addr, "a", p, "--overwrite"], cwd.path());
        assert_eq!(code(&out), Some(0), "{out:?}");
        assert!(server.path("a").is_dir());
    }
    assert_eq!(snapshot(&server.path(".sft")), before, ".sft untouched");
    assert!(server.path("up.txt").exists());
    // A link to the reserved folder is not the folder: it can be removed itself.
    let out = sft(&["rm", &addr, "to_reserved"], cwd.path());
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(snapshot(&server.path(".sft")), before);
}

#[test]
fn a_read_only_server_refuses_rm_and_mv_and_says_so() {
    let server = TestServer::start_with(&["--read-only"], sft_commands::builtins());
    fs::write(server.path("a.txt"), "a").unwrap();
    fs::create_dir(server.path("empty")).unwrap();
    let (addr, cwd) = (server.server_arg(), tempfile::tempdir().unwrap());
    for args in [
        vec!["rm", &addr, "a.txt", "--json"],
        vec!["rm", &addr, "--folder", "empty", "--json"],
        vec!["mv", &addr, "a.txt", "b.txt", "--json"],
    ] {
        let out = sft(&args, cwd.path());
        assert_eq!(code(&out), Some(4), "{args:?}: {out:?}");
        assert_eq!(
            json_lines(&out)[0]["error"]["code"],
            "read_only",
            "{args:?}"
        );
    }
    assert!(server.path("a.txt").exists() && server.path("empty").is_dir());
    assert!(!server.path("b.txt").exists() && !server.path(".sft").exists());
    let out = sft(&["info", &addr], cwd.path());
    assert_eq!(code(&out), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("read-only        yes"), "{text}");
}

#[test]
fn info_names_the_server_its_verbs_and_limits() {
    let args = ["--max-connections", "7", "--max-upload-bytes", "1000"];
    let server = TestServer::start_with(&args, sft_commands::builtins());
    let (addr, cwd) = (server.server_arg(), tempfile::tempdir().unwrap());
    let out = sft(&["info", &addr, "--json"], cwd.path());
    assert_eq!(code(&out), Some(0), "{out:?}");
    let hello = &json_lines(&out)[0];
    assert_eq!(hello["server"], "sft-server");
    assert_eq!(hello["protocol"], 3);
    assert!(!hello["version"].as_str().unwrap().is_empty());
    assert_eq!(
        hello["limits"],
        serde_json::json!({"read_only": false, "max_upload_bytes": 1000, "max_connections": 7, "zstd_max_level": 9})
    );
    let verbs = hello["verbs"].as_array().unwrap();
    let names: Vec<&str> = verbs.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "AUTH", "DELETE", "GET", "HELLO", "LIST", "MKDIR", "RENAME", "SEND", "SETTIME", "SIGN",
            "STAT"
        ]
    );
    for v in verbs {
        let writes = matches!(
            v["name"].as_str(),
            Some("DELETE" | "MKDIR" | "RENAME" | "SEND" | "SETTIME")
        );
        assert_eq!(v["writes"], writes, "{v}");
        assert!(!v["summary"].as_str().unwrap().is_empty(), "{v}");
    }
    let out = sft(&["info", &addr], cwd.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("server           sft-server "), "{text}");
    assert!(text.contains("max upload       1000 bytes"), "{text}");
    assert!(text.contains("RENAME   writes  move"), "{text}");
    assert!(text.contains("SETTIME  writes  set"), "{text}");

    // A health check: over one raw connection, again and again, no file-system work.
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for _ in 0..3 {
            raw.write(b"{\"verb\":\"HELLO\"}\n").await;
            let reply = raw.reply().await;
            assert_eq!(reply["ok"], true);
            assert_eq!(reply["server"], "sft-server");
        }
    });
}

#[test]
fn a_parent_swapped_for_a_symlink_mid_rename_changes_nothing_outside() {
    let server = TestServer::start();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("a"), "outside a").unwrap();
    fs::write(outside.path().join("b"), "outside b").unwrap();
    fs::create_dir(server.path("dir")).unwrap();
    fs::write(server.path("dir/a"), "inside").unwrap();
    let outside_before = snapshot(outside.path());

    // Swaps dir/ for a symlink to the outside folder and back, a bounded number of times,
    // until the renames are done.
    let done = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (done, root, outside) = (
            Arc::clone(&done),
            server.root.path().to_owned(),
            outside.path().to_owned(),
        );
        std::thread::spawn(move || {
            let (dir, real) = (root.join("dir"), root.join("dir.real"));
            let mut swaps = 0u32;
            while !done.load(Ordering::Relaxed) && swaps < 20_000 {
                fs::rename(&dir, &real).unwrap();
                symlink(&outside, &dir).unwrap();
                std::thread::yield_now();
                fs::remove_file(&dir).unwrap();
                fs::rename(&real, &dir).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let (moved, refused) = task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        let (mut moved, mut refused) = (0, 0);
        for i in 0..800 {
            let (from, to) = if i % 2 == 0 {
                ("dir/a", "dir/b")
            } else {
                ("dir/b", "dir/a")
            };
            match client.rename(from, to, true).await {
                Ok(Kind::File) => moved += 1,
                Ok(other) => panic!("moved a {other:?}"),
                Err(Error::Remote(e)) => {
                    // The folder was a link out (forbidden) or not there at that instant.
                    assert!(
                        matches!(e.code, ErrorCode::Forbidden | ErrorCode::NotFound),
                        "{e:?}"
                    );
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        (moved, refused)
    });
    done.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("{moved} renames done, {refused} refused, {swaps} swaps");
    assert_eq!(
        snapshot(outside.path()),
        outside_before,
        "nothing outside the root changed ({moved} moved, {refused} refused, {swaps} swaps)"
    );
    let inside = ["dir/a", "dir/b"]
        .iter()
        .filter(|p| fs::read(server.path(p)).ok().as_deref() == Some(&b"inside"[..]))
        .count();
    assert_eq!(inside, 1, "the file is still inside the root, once");
}
