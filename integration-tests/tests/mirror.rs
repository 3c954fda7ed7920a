//! `sft get -r --delete`, `sft send -r --delete` and `-n/--dry-run`, run as real processes
//! against a real server: the destination ends up holding what the source holds (symlinks on
//! it removed as links, their targets untouched; the reserved `.sft` never touched), nothing is
//! deleted after a failed transfer or on a read-only server, a dry run changes nothing on
//! either side and lists exactly what would happen — and all of it agrees with `rsync -r
//! --delete` run on copies of the same trees, where rsync is installed.

use serde_json::Value;
use sft_integration_tests::{expect_code, json_lines, sft, stderr, TestServer};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

/// One entry of a tree: its path below the root, what it is (a file's contents, a symlink's
/// target, or a folder), and its modification time (whole seconds; not followed).
type Snapshot = Vec<(String, String, i64)>;

/// Everything below `root` (symlinks not followed). With `folder_times`, the folders' times
/// too (they change with every entry made or removed in them): what "nothing changed" means.
fn snapshot(root: &Path, folder_times: bool) -> Snapshot {
    let mut all = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let (what, mtime) = if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                (format!("symlink to {}", target.display()), meta.mtime())
            } else if meta.is_dir() {
                todo.push(path);
                (
                    "folder".to_owned(),
                    if folder_times { meta.mtime() } else { 0 },
                )
            } else {
                let data = fs::read(&path).unwrap();
                (
                    format!("file {}", String::from_utf8_lossy(&data)),
                    meta.mtime(),
                )
            };
            all.push((rel, what, mtime));
        }
    }
    all.sort();
    all
}

/// A fixed day long ago, for the times both copies of an identical file share.
const DAY: u64 = 1_000_000_000;

fn write(path: &Path, data: &str, age: Option<u64>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    if let Some(secs) = age {
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

/// The source: nested folders, an empty one, and files whose times are fixed.
fn source(dir: &Path) {
    write(&dir.join("a.txt"), "alpha", Some(DAY));
    write(&dir.join("same.txt"), "the same", Some(DAY));
    write(&dir.join("sub/b.txt"), "bravo", Some(DAY + 60));
    write(&dir.join("sub/deeper/c.txt"), "charlie", Some(DAY + 120));
    fs::create_dir_all(dir.join("empty")).unwrap();
}

/// The destination before the sync: a file that changed (other size), one identical (same
/// size and time), what the source does not hold (files, nested folders, a file in a folder the
/// source holds), and symlinks out of it (to a folder and to a file in `outside`).
fn destination(dir: &Path, outside: &Path) {
    write(&dir.join("a.txt"), "an older alpha", Some(DAY + 5));
    write(&dir.join("same.txt"), "the same", Some(DAY));
    write(&dir.join("gone/deep/x.txt"), "x", None);
    write(&dir.join("gone/y.txt"), "y", None);
    write(&dir.join("sub/stale.txt"), "stale", None);
    symlink(outside, dir.join("link-out")).unwrap();
    symlink(outside.join("target.txt"), dir.join("sub/file-link")).unwrap();
}

/// What the source holds that the destination must not keep, and what moves.
const DELETED: [&str; 7] = [
    "gone",
    "gone/deep",
    "gone/deep/x.txt",
    "gone/y.txt",
    "link-out",
    "sub/file-link",
    "sub/stale.txt",
];
const TRANSFERRED: [&str; 3] = ["a.txt", "sub/b.txt", "sub/deeper/c.txt"];

fn outside() -> tempfile::TempDir {
    let outside = tempfile::tempdir().unwrap();
    write(
        &outside.path().join("target.txt"),
        "not to be touched",
        None,
    );
    outside
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The paths of `--json` lines with `action`, below `dest` (a `get`'s local folder or a
/// `send`'s remote one).
fn actions(out: &Output, actions: &[&str], dest: &str) -> BTreeSet<String> {
    json_lines(out)
        .iter()
        .filter(|l| actions.iter().any(|a| l["action"] == *a))
        .map(|l| {
            let side = if l["verb"] == "get" {
                "local"
            } else {
                "remote"
            };
            let path = l[side].as_str().unwrap();
            let below = match dest {
                "" => Some(path),
                _ => path.strip_prefix(dest).and_then(|p| p.strip_prefix('/')),
            };
            below
                .unwrap_or_else(|| panic!("{path} is not below {dest}"))
                .to_owned()
        })
        .collect()
}

fn summary(out: &Output) -> Value {
    let lines = json_lines(out);
    lines
        .iter()
        .find(|l| l["summary"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("no summary; stderr: {}", stderr(out)))
}

/// `rsync`, or why the comparison with it is skipped.
fn rsync(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("rsync"))
        .find(|p| p.is_file());
    if found.is_none() {
        // Straight to standard error: the test harness would hide what `eprintln!` prints.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: comparison with rsync skipped: rsync is not installed (a Debian package: \
             apt-get install rsync)"
        );
    }
    found
}

/// A copy of `from` at `to`, symlinks and times kept (`cp -a`).
fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a: {}", stderr(&out));
}

/// `rsync -rt --delete` of `from`'s contents into `to` (`-n`: only itemized), protecting a
/// `.sft` at the top as sft does. Returns the paths it transferred and deleted.
fn run_rsync(
    rsync: &Path,
    from: &Path,
    to: &Path,
    dry_run: bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut command = Command::new(rsync);
    command.args(["-rt", "--delete", "--exclude=/.sft", "--out-format=%i %n"]);
    if dry_run {
        command.arg("-n");
    }
    let out = command
        .arg(format!("{}/", from.display()))
        .arg(format!("{}/", to.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "rsync: {}", stderr(&out));
    let (mut moved, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (item, name) = line.split_once(' ').unwrap();
        let name = name.trim().trim_end_matches('/').to_owned();
        if item == "*deleting" {
            deleted.insert(name);
        } else if item.starts_with(">f") {
            moved.insert(name);
        }
    }
    (moved, deleted)
}

/// `VERB -r --delete --overwrite --json SERVER FROM TO`.
fn mirror_args<'a>(verb: &'a str, addr: &'a str, from: &'a str, to: &'a str) -> [&'a str; 8] {
    [
        verb,
        "-r",
        "--delete",
        "--overwrite",
        "--json",
        addr,
        from,
        to,
    ]
}

/// Runs `args` with `dry` (`-n` or `--dry-run`) in `cwd`, and checks it lists exactly what
/// moves and what goes below `dest`.
fn planned(args: &[&str], dry: &str, cwd: &Path, dest: &str) -> Output {
    let mut dry_args = args.to_vec();
    dry_args.insert(1, dry);
    let planned = sft(&dry_args, cwd);
    expect_code(&planned, 0);
    assert_eq!(actions(&planned, &["delete"], dest), set(&DELETED));
    assert_eq!(
        actions(&planned, &["new", "replace"], dest),
        set(&TRANSFERRED)
    );
    planned
}

/// Where rsync is installed: `rsync -rtn --delete` of `source` into `copy` (the destination
/// as it was before sft ran) lists the same transfers and deletions as sft did, and the real
/// run leaves `copy` as sft left the destination (`mirrored`).
fn agrees_with_rsync(test: &str, source: &Path, copy: &Path, mirrored: &Path) {
    let Some(rsync) = rsync(test) else {
        return;
    };
    let (moved, deleted) = run_rsync(&rsync, source, copy, true);
    assert_eq!(moved, set(&TRANSFERRED));
    assert_eq!(deleted, set(&DELETED));
    run_rsync(&rsync, source, copy, false);
    assert_eq!(snapshot(copy, false), snapshot(mirrored, false));
}

#[test]
fn get_delete_mirrors_the_folder_removes_links_not_targets_and_agrees_with_rsync() {
    let server = TestServer::start();
    let data = server.path("data");
    source(&data);
    let outside = outside();
    let cwd = tempfile::tempdir().unwrap();
    let out_dir = cwd.path().join("out");
    destination(&out_dir, outside.path());
    write(&out_dir.join(".sft/kept"), "a served root's own", None);
    let before = snapshot(&out_dir, false);
    let rsync_copy = cwd.path().join("rsync-copy");
    copy_tree(&out_dir, &rsync_copy);
    let outside_before = snapshot(outside.path(), true);
    let addr = server.server_arg();
    let args = mirror_args("get", &addr, "data", "out");

    // A dry run first: the exact list, and nothing changed.
    let planned = planned(&args, "-n", cwd.path(), "out");
    assert_eq!(actions(&planned, &["replace"], "out"), set(&["a.txt"]));
    assert_eq!(actions(&planned, &["skip"], "out"), set(&["same.txt"]));
    let s = summary(&planned);
    assert_eq!(
        (&s["new"], &s["replaced"], &s["deleted"], &s["dry_run"]),
        (&2.into(), &1.into(), &7.into(), &true.into())
    );
    assert_eq!(snapshot(&out_dir, false), before);

    let done = sft(&args, cwd.path());
    expect_code(&done, 0);
    assert_eq!(actions(&done, &["delete"], "out"), set(&DELETED));
    assert_eq!(actions(&done, &["replace"], "out"), set(&["a.txt"]));
    assert_eq!(
        actions(&done, &["new"], "out"),
        set(&["sub/b.txt", "sub/deeper/c.txt"])
    );
    let mut mirrored = snapshot(&data, false);
    mirrored.push((".sft".into(), "folder".into(), 0));
    mirrored.push((".sft/kept".into(), "file a served root's own".into(), 0));
    let mut got = snapshot(&out_dir, false);
    for entry in got.iter_mut().filter(|e| e.0.starts_with(".sft")) {
        entry.2 = 0;
    }
    mirrored.sort();
    assert_eq!(got, mirrored);
    assert_eq!(snapshot(outside.path(), true), outside_before);

    // Again: nothing moves, nothing is deleted.
    let again = sft(&args, cwd.path());
    expect_code(&again, 0);
    let s = summary(&again);
    assert_eq!((&s["transferred"], &s["deleted"]), (&0.into(), &0.into()));

    agrees_with_rsync("get_delete", &data, &rsync_copy, &out_dir);
}

#[test]
fn send_delete_mirrors_the_folder_never_touches_sft_and_agrees_with_rsync() {
    let server = TestServer::start();
    let outside = outside();
    let cwd = tempfile::tempdir().unwrap();
    let site = cwd.path().join("site");
    source(&site);
    let www = server.path("www");
    destination(&www, outside.path());
    let rsync_copy = cwd.path().join("rsync-copy");
    copy_tree(&www, &rsync_copy);
    let outside_before = snapshot(outside.path(), true);
    let addr = server.server_arg();
    let args = mirror_args("send", &addr, "site", "www");

    let before = snapshot(server.root.path(), true);
    planned(&args, "--dry-run", cwd.path(), "www");
    assert_eq!(snapshot(server.root.path(), true), before);

    let done = sft(&args, cwd.path());
    expect_code(&done, 0);
    // Files and symlinks first, then folders, the deepest first.
    let order: Vec<String> = json_lines(&done)
        .iter()
        .filter(|l| l["action"] == "delete")
        .map(|l| {
            format!(
                "{} {}",
                l["kind"].as_str().unwrap(),
                l["remote"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(order.len(), DELETED.len());
    let folders: Vec<&String> = order.iter().filter(|o| o.starts_with("folder ")).collect();
    assert_eq!(folders, ["folder www/gone/deep", "folder www/gone"]);
    assert!(
        order[..order.len() - 2]
            .iter()
            .all(|o| !o.starts_with("folder ")),
        "{order:?}"
    );
    assert_eq!(snapshot(&www, false), snapshot(&site, false));
    assert_eq!(snapshot(outside.path(), true), outside_before);

    // Into the served root itself: its reserved `.sft` is never listed, nor removed.
    write(&server.path(".sft/marker"), "the server's own", None);
    let into_root = sft(
        &["send", "-r", "--delete", "--json", &addr, "site", "."],
        cwd.path(),
    );
    expect_code(&into_root, 0);
    let deleted = actions(&into_root, &["delete"], "");
    assert!(
        deleted.contains("www") && deleted.contains("www/a.txt"),
        "{deleted:?}"
    );
    assert!(
        deleted.iter().all(|d| !d.starts_with(".sft")),
        "{deleted:?}"
    );
    assert_eq!(
        fs::read_to_string(server.path(".sft/marker")).unwrap(),
        "the server's own"
    );
    let mut names = sft_integration_tests::names(server.root.path());
    names.retain(|n| n != ".sft");
    assert_eq!(names, ["a.txt", "empty", "same.txt", "sub"]);

    agrees_with_rsync("send_delete", &site, &rsync_copy, &site);
}

#[test]
fn a_dry_run_changes_nothing_on_either_side_and_lists_each_action_in_text() {
    let server = TestServer::start();
    let outside = outside();
    let cwd = tempfile::tempdir().unwrap();
    source(&server.path("data"));
    destination(&cwd.path().join("out"), outside.path());
    source(&cwd.path().join("site"));
    destination(&server.path("www"), outside.path());
    // Identical, but with another time: a real run would give it the source's time.
    write(&cwd.path().join("out/sub/b.txt"), "bravo", Some(DAY + 7));
    write(&server.path("www/sub/b.txt"), "bravo", Some(DAY + 7));
    let addr = server.server_arg();
    let sides = || {
        (
            snapshot(server.root.path(), true),
            snapshot(cwd.path(), true),
        )
    };
    let before = sides();
    let get = sft(
        &[
            "get",
            "-rn",
            "--delete",
            "--overwrite",
            &addr,
            "data",
            "out",
        ],
        cwd.path(),
    );
    expect_code(&get, 0);
    let send = sft(
        &[
            "send",
            "-rn",
            "--delete",
            "--overwrite",
            &addr,
            "site",
            "www",
        ],
        cwd.path(),
    );
    expect_code(&send, 0);
    assert_eq!(sides(), before);

    let lines = |out: &Output| -> BTreeSet<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let mut want: BTreeSet<String> = [
        "get data/a.txt → out/a.txt: replace",
        "get data/sub/deeper/c.txt → out/sub/deeper/c.txt: new",
        "deleting out/gone/",
        "deleting out/gone/deep/",
        "deleting out/gone/deep/x.txt",
        "deleting out/gone/y.txt",
        "deleting out/link-out",
        "deleting out/sub/file-link",
        "deleting out/sub/stale.txt",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(lines(&get), want);
    want = want
        .into_iter()
        .map(|l| {
            l.replace("get data/", "send site/")
                .replace("→ out/", "→ www/")
                .replace("deleting out/", "deleting www/")
        })
        .collect();
    assert_eq!(lines(&send), want);

    // Without --overwrite a changed file is left alone: said, and the exit code says so too.
    let get = sft(&["get", "-rn", &addr, "data", "out"], cwd.path());
    expect_code(&get, 4);
    assert!(stderr(&get).contains("changed: out/a.txt (use --overwrite to replace)"));
    assert_eq!(sides(), before);
}

#[test]
fn nothing_is_deleted_after_a_failed_transfer() {
    let server = TestServer::start();
    let cwd = tempfile::tempdir().unwrap();
    source(&server.path("data"));
    // Where the server has the file a.txt, the local side has a folder: it cannot be replaced.
    write(&cwd.path().join("out/a.txt/inside"), "in the way", None);
    write(&cwd.path().join("out/extra.txt"), "extra", None);
    let addr = server.server_arg();
    let get = sft(
        &["get", "-r", "--delete", "--overwrite", &addr, "data", "out"],
        cwd.path(),
    );
    assert_ne!(get.status.code(), Some(0));
    let err = stderr(&get);
    assert!(
        err.contains("error: nothing deleted: a transfer of this run failed"),
        "{err}"
    );
    assert!(cwd.path().join("out/extra.txt").exists());
    assert!(
        cwd.path().join("out/sub/deeper/c.txt").exists(),
        "the others moved"
    );

    // Uploading: the server holds a folder where the file goes.
    source(&cwd.path().join("site"));
    write(&server.path("www/a.txt/inside"), "in the way", None);
    write(&server.path("www/extra.txt"), "extra", None);
    let send = sft(
        &[
            "send",
            "-r",
            "--delete",
            "--overwrite",
            "--json",
            &addr,
            "site",
            "www",
        ],
        cwd.path(),
    );
    assert_ne!(send.status.code(), Some(0));
    assert!(
        stderr(&send).contains("error: nothing deleted"),
        "{}",
        stderr(&send)
    );
    assert_eq!(summary(&send)["deleted"], 0);
    let last = json_lines(&send).pop().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing deleted"),
        "{last}"
    );
    assert!(server.path("www/extra.txt").exists());
}

#[test]
fn a_read_only_server_refuses_the_deletions_once_and_clearly() {
    let server = TestServer::start_with(&["--read-only"], sft_commands::builtins());
    let cwd = tempfile::tempdir().unwrap();
    source(&cwd.path().join("site"));
    // The server already holds the same files (same sizes and times): nothing to upload. (An
    // empty folder would be made again with MKDIR, which a read-only server refuses.)
    source(&server.path("www"));
    fs::remove_dir(cwd.path().join("site/empty")).unwrap();
    fs::remove_dir(server.path("www/empty")).unwrap();
    write(&server.path("www/old.txt"), "old", None);
    write(&server.path("www/gone/x.txt"), "x", None);
    let before = snapshot(server.root.path(), true);
    let send = sft(
        &[
            "send",
            "-r",
            "--delete",
            &server.server_arg(),
            "site",
            "www",
        ],
        cwd.path(),
    );
    expect_code(&send, 4);
    let err = stderr(&send);
    assert_eq!(err.matches("error: deleting ").count(), 1, "{err}");
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(snapshot(server.root.path(), true), before);
}

#[test]
fn delete_needs_a_folder_to_mirror() {
    let server = TestServer::start();
    write(&server.path("f.txt"), "f", None);
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.server_arg();
    for args in [
        &["get", "--delete", &addr, "f.txt", "out"][..],
        &["send", "--delete", &addr, "site", "www"],
        &["get", "-r", "--delete", "-o", "out", &addr, "f.txt"],
        &["get", "-r", "--delete", &addr, "f.txt", "out"],
    ] {
        let out = sft(args, cwd.path());
        expect_code(&out, 2);
        assert!(
            stderr(&out).contains("--delete"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        sft_integration_tests::names(cwd.path()),
        Vec::<String>::new()
    );
}
