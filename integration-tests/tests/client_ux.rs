//! The `sft` command line as a person uses it: progress on a terminal (and none in pipes), many
//! files in one call, whole folders both ways, standard input, retries through a line that
//! drops, completions, help, and errors (JSON ones too) — run as real processes.

use sft_integration_tests::{
    bin, list_files, random_bytes, sft, sft_stdin, Relay, ServerProcess, Tamper, TestServer,
};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

const LOOPBACK: [&str; 2] = ["--host", "127.0.0.1"];

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn expect_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}, wanted {code}; stderr: {}",
        out.status,
        stderr(out)
    );
}

/// Every JSON line on standard output, but a batch's summary line.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .filter(|l: &serde_json::Value| l["summary"] != true)
        .collect()
}

/// Files (recursively) below `dir`, relative to it, with their contents.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    list_files(dir)
        .into_iter()
        .map(|p| {
            let data = fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_owned(), data)
        })
        .collect()
}

/// Folders (recursively) below `dir`, relative to it.
fn folders(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() && !p.ends_with(".sft") {
                out.push(p.strip_prefix(dir).unwrap().to_owned());
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs `sft ARGS` on a pseudo-terminal — util-linux `script`, else python3's `pty` module —
/// and returns its exit code and everything it wrote there. `None` if neither tool exists.
fn sft_on_terminal(args: &[&str], cwd: &Path) -> Option<(Option<i32>, String)> {
    let sft = bin("sft");
    let has = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut command = if has("script") {
        let line: Vec<String> = std::iter::once(s(&sft))
            .chain(args.iter().copied())
            .map(quote)
            .collect();
        let mut c = Command::new("script");
        c.args(["-qfec", &line.join(" "), "/dev/null"]);
        c
    } else if has("python3") {
        let mut c = Command::new("python3");
        c.args([
            "-c",
            "import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))",
        ])
        .arg(&sft)
        .args(args);
        c
    } else {
        eprintln!("skipping the terminal check: neither `script` nor python3 is installed");
        return None;
    };
    // A terminal that can move its cursor (CI may have no TERM at all, which means "dumb").
    let out = command
        .current_dir(cwd)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("run sft on a terminal");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    Some((out.status.code(), text))
}

#[test]
fn progress_is_drawn_on_a_terminal_and_never_into_a_pipe() {
    let server = TestServer::start();
    fs::write(server.path("big.bin"), random_bytes(8 << 20, 71)).unwrap();
    for name in ["a.bin", "b.bin"] {
        fs::write(server.path(name), random_bytes(1 << 20, 72)).unwrap();
    }
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.server_arg();

    let Some((code, screen)) = sft_on_terminal(&["get", &addr, "big.bin", "tty.bin"], cwd.path())
    else {
        return;
    };
    assert_eq!(code, Some(0), "{screen}");
    // The bar: bytes, percent, rate and time left.
    for part in ["%", "MiB", "B/s", "ETA"] {
        assert!(screen.contains(part), "no {part:?} in {screen:?}");
    }
    assert!(
        fs::read(cwd.path().join("tty.bin")).unwrap() == fs::read(server.path("big.bin")).unwrap()
    );

    // Many files: an overall bar joins the per-file one.
    let (code, screen) =
        sft_on_terminal(&["get", &addr, "-o", "many", "a.bin", "b.bin"], cwd.path()).unwrap();
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("total") && screen.contains("files"),
        "{screen:?}"
    );

    // -q: nothing at all, even on a terminal.
    let (code, screen) =
        sft_on_terminal(&["get", "-q", &addr, "big.bin", "quiet.bin"], cwd.path()).unwrap();
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(screen.trim(), "", "-q printed something");

    // Piped: nothing on success (a log or a cron mail); with -v the one-line summary, no
    // bar, no terminal control.
    let out = sft(&["get", &addr, "big.bin", "piped.bin"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(stderr(&out), "", "a success is silent in a pipe");
    let out = sft(&["get", "-v", &addr, "big.bin", "piped2.bin"], cwd.path());
    expect_code(&out, 0);
    let err = stderr(&out);
    let err = err
        .lines()
        .filter(|l| !l.starts_with("connected to ") && !l.starts_with("blake3 "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        err.starts_with("get big.bin → piped2.bin: 8.0 MiB in "),
        "{err:?}"
    );
    for part in ["%", "ETA", "\r", "\u{1b}["] {
        assert!(!err.contains(part), "{part:?} in a pipe: {err:?}");
    }
    assert_eq!(err.lines().count(), 1, "{err:?}");
}

#[test]
fn many_files_each_way_in_one_call_over_one_connection() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let addr = server.addr.to_string();
    let cwd = tempfile::tempdir().unwrap();
    let names = ["one.txt", "two words.bin", "ünï.dat", "-dash.txt"];
    for (i, name) in names.iter().enumerate() {
        fs::write(
            cwd.path().join(name),
            random_bytes(10_000 * (i + 1), 80 + i as u64),
        )
        .unwrap();
    }

    let mut args = vec!["send", "--json", &addr, "-o", "inbox/new"];
    args.push("--");
    args.extend(names);
    let out = sft(&args, cwd.path());
    expect_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(
        lines.len(),
        names.len(),
        "one JSON line per file: {lines:?}"
    );
    for (i, name) in names.iter().enumerate() {
        let stored = fs::read(root.path().join("inbox/new").join(name)).unwrap();
        assert!(
            stored == random_bytes(10_000 * (i + 1), 80 + i as u64),
            "{name}"
        );
        assert_eq!(lines[i]["remote"], format!("inbox/new/{name}"));
        assert!(lines[i]["blake3"].is_string());
    }

    // And back, pipelined: into a folder that does not exist yet.
    let remotes: Vec<String> = names.iter().map(|n| format!("inbox/new/{n}")).collect();
    let mut args = vec!["get", "-v", &addr, "-o", "back"];
    args.extend(remotes.iter().map(String::as_str));
    let out = sft(&args, cwd.path());
    expect_code(&out, 0);
    assert!(stderr(&out).contains("get: 4 file(s)"), "{}", stderr(&out));
    for name in names {
        assert!(
            fs::read(cwd.path().join("back").join(name)).unwrap()
                == fs::read(cwd.path().join(name)).unwrap(),
            "{name}"
        );
    }
    // Two calls, two connections: one each.
    sft_integration_tests::wait_until(Duration::from_secs(20), || {
        server.logs_with("connection closed").len() == 2
    });
    assert_eq!(server.logs_with("connection opened").len(), 2);

    // One missing file does not stop the others; the exit code is the refusal's.
    let out = sft(
        &[
            "get",
            &addr,
            "-o",
            "partly",
            "inbox/new/one.txt",
            "missing.txt",
        ],
        cwd.path(),
    );
    expect_code(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("not found"), "{err}");
    assert!(err.contains("1 of 2 transfers failed"), "{err}");
    assert!(cwd.path().join("partly/one.txt").exists());

    // Without -o, more than REMOTE [LOCAL] is a usage error.
    let out = sft(&["get", &addr, "a", "b", "c"], cwd.path());
    expect_code(&out, 2);
    assert!(stderr(&out).contains("-o DIR"), "{}", stderr(&out));
}

/// A tree with every awkward thing: nesting, empty folders (one inside another), spaces,
/// unicode, leading dashes, quotes, an empty file.
fn awkward_tree(dir: &Path) {
    let files: &[(&str, usize)] = &[
        ("top.txt", 1000),
        ("with space/ünïcødé ✓.bin", 300_000),
        ("with space/-leading-dash", 10),
        ("deep/er/still/it's.txt", 4096),
        ("deep/empty file", 0),
        ("日本語/ファイル.txt", 77),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, random_bytes(*len, 90 + i as u64)).unwrap();
    }
    fs::create_dir_all(dir.join("empty")).unwrap();
    fs::create_dir_all(dir.join("deep/er/hollow/hollower")).unwrap();
    fs::create_dir_all(dir.join("-dash folder")).unwrap();
}

#[test]
fn a_nested_folder_round_trips_with_empty_folders_and_awkward_names() {
    let server = TestServer::start();
    let addr = server.server_arg();
    let cwd = tempfile::tempdir().unwrap();
    let src = cwd.path().join("-my folder");
    awkward_tree(&src);

    let out = sft(
        &["send", "-r", &addr, "--", "-my folder", "backup/2024"],
        cwd.path(),
    );
    expect_code(&out, 0);
    let stored = server.path("backup/2024");
    assert_eq!(tree(&stored), tree(&src));
    assert_eq!(folders(&stored), folders(&src));

    // Again into the same place: every file is there already, identical, and skipped.
    let out = sft(
        &["send", "-r", "-v", &addr, "./-my folder", "backup/2024"],
        cwd.path(),
    );
    expect_code(&out, 0);
    assert!(stderr(&out).contains(" skipped"), "{}", stderr(&out));
    let out = sft(
        &[
            "send",
            "-r",
            "-q",
            "--overwrite",
            &addr,
            "./-my folder",
            "backup/2024",
        ],
        cwd.path(),
    );
    expect_code(&out, 0);
    assert_eq!(stderr(&out), "", "-q prints nothing on success");

    // Down again, LOCAL_DIR defaulting to the folder's name.
    let out = sft(&["get", "-r", &addr, "backup/2024"], cwd.path());
    expect_code(&out, 0);
    let back = cwd.path().join("2024");
    assert_eq!(tree(&back), tree(&src));
    assert_eq!(folders(&back), folders(&src));
    assert!(back.join("deep/er/hollow/hollower").is_dir());

    // -r -o: a folder and a file side by side in one call.
    let out = sft(
        &[
            "get",
            "-r",
            &addr,
            "-o",
            "mixed",
            "backup/2024/deep",
            "backup/2024/top.txt",
        ],
        cwd.path(),
    );
    expect_code(&out, 0);
    assert_eq!(
        tree(&cwd.path().join("mixed/deep")),
        tree(&src.join("deep"))
    );
    assert!(cwd.path().join("mixed/top.txt").is_file());
    assert!(cwd.path().join("mixed/deep/er/hollow/hollower").is_dir());
}

#[test]
fn send_r_does_not_follow_symlinks_out_of_the_folder() {
    let server = TestServer::start();
    let cwd = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"SECRET").unwrap();
    let src = cwd.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/real.txt"), b"real").unwrap();
    symlink(outside.path().join("secret"), src.join("leak")).unwrap();
    symlink(outside.path(), src.join("leak-dir")).unwrap();
    symlink("sub/real.txt", src.join("alias.txt")).unwrap();

    let out = sft(&["send", "-r", &server.server_arg(), "src"], cwd.path());
    expect_code(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("skipped") && err.contains("leak"), "{err}");
    assert!(err.contains("leak-dir"), "{err}");
    let stored = tree(&server.path("src"));
    let names: Vec<&Path> = stored.iter().map(|(p, _)| p.as_path()).collect();
    assert_eq!(names, [Path::new("alias.txt"), Path::new("sub/real.txt")]);
    assert!(stored.iter().all(|(_, data)| data != b"SECRET"));
}

#[test]
fn standard_input_is_streamed_stored_and_verified() {
    let server = TestServer::start();
    let cwd = tempfile::tempdir().unwrap();
    let data = random_bytes(3 << 20, 73);
    let out = sft_stdin(
        &["send", "--json", &server.server_arg(), "-", "piped/in.bin"],
        cwd.path(),
        &data,
    );
    expect_code(&out, 0);
    let report = &json_lines(&out)[0];
    assert_eq!(report["size"], data.len());
    assert_eq!(report["local"], "-");
    assert_eq!(report["blake3"], blake3::hash(&data).to_hex().as_str());
    assert!(fs::read(server.path("piped/in.bin")).unwrap() == data);

    // Empty input is an empty file; an existing name needs --overwrite.
    let out = sft_stdin(
        &["send", &server.server_arg(), "-", "piped/in.bin"],
        cwd.path(),
        b"",
    );
    expect_code(&out, 4);
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    let out = sft_stdin(
        &[
            "send",
            "--overwrite",
            &server.server_arg(),
            "-",
            "piped/in.bin",
        ],
        cwd.path(),
        b"",
    );
    expect_code(&out, 0);
    assert_eq!(fs::read(server.path("piped/in.bin")).unwrap(), b"");

    // Standard input needs a name.
    let out = sft_stdin(&["send", &server.server_arg(), "-"], cwd.path(), b"x");
    expect_code(&out, 2);
    server.wait_idle();
    assert!(server.staging_files().is_empty());
}

#[test]
fn standard_input_over_the_upload_limit_is_refused_before_it_ends() {
    let server =
        TestServer::start_with(&["--max-upload-bytes", "100000"], sft_commands::builtins());
    let cwd = tempfile::tempdir().unwrap();
    let out = sft_stdin(
        &["send", &server.server_arg(), "-", "big.bin"],
        cwd.path(),
        &random_bytes(4 << 20, 74),
    );
    expect_code(&out, 4);
    assert!(stderr(&out).contains("too large"), "{}", stderr(&out));
    assert!(!server.path("big.bin").exists());
    server.wait_idle();
    assert!(server.staging_files().is_empty());
}

/// A fake server for one connection that answers STAT with a folder and LIST with `names` (as
/// files), and records every request line it gets.
fn hostile_lister(names: Vec<&'static str>) -> (SocketAddr, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        let mut seen = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let request: serde_json::Value = serde_json::from_str(&line).unwrap();
            seen.push(line.trim().to_owned());
            let reply = match request["verb"].as_str().unwrap() {
                "STAT" => "{\"ok\":true,\"entry\":{\"name\":\"evil\",\"kind\":\"folder\",\"size\":0,\"mtime\":0}}\n".to_owned(),
                "LIST" => {
                    let mut r = String::from("{\"ok\":true,\"stream\":\"lines\",\"path\":\"evil\"}\n");
                    for name in &names {
                        let entry = serde_json::json!({"name": name, "kind": "file", "size": 5, "mtime": 0});
                        r += &format!("{entry}\n");
                    }
                    r + &format!("{{\"end\":true,\"count\":{},\"skipped\":0}}\n", names.len())
                }
                _ => "{\"ok\":true,\"size\":5}\nPWNED".to_owned(),
            };
            let _ = out.write_all(reply.as_bytes());
            line.clear();
        }
        seen
    });
    (addr, thread)
}

#[test]
fn a_hostile_listing_cannot_make_get_r_write_outside_the_target() {
    for evil in [
        "../escape.txt",
        "/tmp/sft-absolute-escape.txt",
        "a/../../escape.txt",
        "./x",
        "",
    ] {
        let base = tempfile::tempdir().unwrap();
        let cwd = base.path().join("cwd");
        fs::create_dir(&cwd).unwrap();
        // A good name first: the whole listing is checked before anything is written.
        let (addr, fake) = hostile_lister(vec!["fine.txt", evil]);
        let out = sft(&["get", "-r", &addr.to_string(), "evil", "target"], &cwd);
        expect_code(&out, 6);
        let err = stderr(&out);
        assert!(
            err.contains("outside") && err.contains("nothing was downloaded"),
            "{err}"
        );
        let requests = fake.join().unwrap();
        assert!(
            requests.iter().all(|r| !r.contains("\"GET\"")),
            "{evil:?}: files were requested: {requests:?}"
        );
        assert!(
            list_files(base.path()).is_empty(),
            "{evil:?}: {:?}",
            list_files(base.path())
        );
        assert!(!cwd.join("target").exists(), "{evil:?}");
        assert!(!Path::new("/tmp/sft-absolute-escape.txt").exists());
    }
}

#[test]
fn retries_resume_a_download_cut_off_midway() {
    let root = tempfile::tempdir().unwrap();
    let data = random_bytes(4 << 20, 75);
    fs::write(root.path().join("big.bin"), &data).unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let relay = Relay::cut_once_after(server.addr, 1 << 20);
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(
        &[
            "get",
            "--retries",
            "2",
            "--json",
            &relay.addr.to_string(),
            "big.bin",
        ],
        cwd.path(),
    );
    expect_code(&out, 0);
    let report = &json_lines(&out)[0];
    let resumed = report["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0 && resumed <= 1 << 20, "{report}");
    assert_eq!(report["attempts"], 2, "{report}");
    assert_eq!(report["bytes_transferred"], data.len() as u64 - resumed);
    assert!(stderr(&out).contains("retry 1/2"), "{}", stderr(&out));
    assert!(fs::read(cwd.path().join("big.bin")).unwrap() == data);
    relay.join();
}

#[test]
fn retries_resume_an_upload_cut_off_midway() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let relay = Relay::start_series(
        server.addr,
        vec![
            Tamper {
                cut_up_after: Some(1 << 20),
                ..Default::default()
            },
            Tamper::default(),
        ],
    );
    let cwd = tempfile::tempdir().unwrap();
    let data = random_bytes(6 << 20, 76);
    fs::write(cwd.path().join("up.bin"), &data).unwrap();
    let out = sft(
        &[
            "send",
            "--retries",
            "3",
            "--json",
            &relay.addr.to_string(),
            "up.bin",
            "in/up.bin",
        ],
        cwd.path(),
    );
    expect_code(&out, 0);
    let report = &json_lines(&out)[0];
    assert_eq!(report["attempts"], 2, "{report}");
    assert!(report["resumed_from"].as_u64().unwrap() > 0, "{report}");
    assert!(stderr(&out).contains("retry 1/3"), "{}", stderr(&out));
    assert!(fs::read(root.path().join("in/up.bin")).unwrap() == data);
    relay.join();
}

#[test]
fn retries_carry_a_batch_over_to_a_new_connection() {
    let root = tempfile::tempdir().unwrap();
    let files: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(1 << 20, 77 + i)).collect();
    for (i, data) in files.iter().enumerate() {
        fs::write(root.path().join(format!("f{i}.bin")), data).unwrap();
    }
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    // Cut in the middle of the second file.
    let relay = Relay::cut_once_after(server.addr, 3 << 19);
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(
        &[
            "get",
            "--json",
            "--retries",
            "1",
            &relay.addr.to_string(),
            "-o",
            "got",
            "f0.bin",
            "f1.bin",
            "f2.bin",
            "f3.bin",
        ],
        cwd.path(),
    );
    expect_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines.iter().any(|l| l["resumed_from"].as_u64() > Some(0)),
        "the cut file resumed: {lines:?}"
    );
    for (i, data) in files.iter().enumerate() {
        assert!(fs::read(cwd.path().join(format!("got/f{i}.bin"))).unwrap() == *data);
    }
    assert!(
        list_files(&cwd.path().join("got")).len() == 4,
        "no partial left"
    );

    // Without retries the batch stops at the cut, and says so.
    let relay = Relay::start(
        server.addr,
        Tamper {
            cut_down_after: Some(3 << 19),
            ..Default::default()
        },
    );
    let out = sft(
        &[
            "get",
            &relay.addr.to_string(),
            "-o",
            "again",
            "f0.bin",
            "f1.bin",
            "f2.bin",
        ],
        cwd.path(),
    );
    expect_code(&out, 5);
    assert!(stderr(&out).contains("cut off"), "{}", stderr(&out));
}

#[test]
fn completions_for_every_shell() {
    let cwd = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _sft"),
        ("zsh", "#compdef sft"),
        ("fish", "complete -c sft"),
    ] {
        let out = sft(&["completions", shell], cwd.path());
        expect_code(&out, 0);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("retries"), "{shell}: options are completed");
    }
    expect_code(&sft(&["completions", "tcsh"], cwd.path()), 2);
}

#[test]
fn every_subcommand_reports_failures_as_json_with_json() {
    let server = TestServer::start();
    let addr = server.server_arg();
    let cwd = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["get", "--json", &addr, "missing.txt"], 4, "not_found"),
        (&["get", "--json", &addr, "-r", "missing"], 4, "not_found"),
        (
            &["send", "--json", &addr, "no-such-local-file"],
            1,
            "local_io",
        ),
        (&["ls", "--json", &addr, "missing"], 4, "not_found"),
        (&["stat", "--json", &addr, "missing"], 4, "not_found"),
        (
            &["call", "--json", &addr, "STAT", "{\"path\":\"missing\"}"],
            4,
            "not_found",
        ),
        (&["get", "--json", "127.0.0.1:1", "x"], 3, "connect_failed"),
        (&["get", "--json", &addr], 2, "usage"),
        (&["send", "--json", &addr, "-"], 2, "usage"),
    ];
    for (args, code, name) in cases {
        let out = sft(args, cwd.path());
        expect_code(&out, *code);
        let last = json_lines(&out)
            .pop()
            .unwrap_or_else(|| panic!("{args:?}: no JSON"));
        assert_eq!(last["error"]["code"], *name, "{args:?}: {last}");
        assert_eq!(last["exit_code"], *code, "{args:?}: {last}");
        assert!(last["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(stderr(&out).contains("error"), "{args:?}");
    }
    // Without --json the same failures are one readable line a person can act on.
    let out = sft(&["get", &addr, "missing.txt"], cwd.path());
    assert_eq!(
        stderr(&out),
        "error: not found: no such file or folder: missing.txt\n"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn help_and_version_on_both_binaries() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["get", "--help"], &["send", "--help"]] {
        let out = sft(args, cwd.path());
        expect_code(&out, 0);
        let text = String::from_utf8_lossy(&out.stdout);
        for part in ["EXAMPLES", "-o", "-r", "--retries", "completions"] {
            assert!(text.contains(part), "{args:?}: no {part:?}");
        }
    }
    let out = sft(&["--version"], cwd.path());
    expect_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));

    for (arg, part) in [
        ("--help", "EXAMPLES"),
        ("--version", env!("CARGO_PKG_VERSION")),
    ] {
        let out = Command::new(bin("sft-server")).arg(arg).output().unwrap();
        assert!(out.status.success(), "sft-server {arg}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(part), "sft-server {arg}: {text}");
    }
}

#[test]
fn continue_in_a_batch_resumes_what_fits_and_restarts_what_does_not() {
    let server = TestServer::start();
    let a = random_bytes(1000, 78);
    let b = random_bytes(200_000, 79);
    fs::write(server.path("a.bin"), &a).unwrap();
    fs::write(server.path("b.bin"), &b).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let got = cwd.path().join("got");
    fs::create_dir(&got).unwrap();
    // a's partial is longer than a: another version. b's holds b's first bytes.
    fs::write(got.join(".a.bin.sft-part"), random_bytes(5000, 1)).unwrap();
    fs::write(got.join(".b.bin.sft-part"), &b[..50_000]).unwrap();
    let out = sft(
        &[
            "get",
            "-c",
            "--json",
            &server.server_arg(),
            "-o",
            "got",
            "a.bin",
            "b.bin",
        ],
        cwd.path(),
    );
    expect_code(&out, 0);
    let lines = json_lines(&out);
    let resumed: Vec<(String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["remote"].as_str().unwrap().to_owned(),
                l["resumed_from"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(resumed.contains(&("a.bin".into(), 0)), "{resumed:?}");
    assert!(resumed.contains(&("b.bin".into(), 50_000)), "{resumed:?}");
    assert!(fs::read(got.join("a.bin")).unwrap() == a);
    assert!(fs::read(got.join("b.bin")).unwrap() == b);
    assert_eq!(list_files(&got).len(), 2, "no partial left");
}

#[test]
fn a_server_without_streams_is_explained() {
    // What a server that predates chunked bodies answers: it misses the `size`.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut out = stream;
        out.write_all(
            b"{\"ok\":false,\"code\":\"bad_request\",\"message\":\"invalid arguments for SEND: missing field `size`\"}\n",
        )
        .unwrap();
        line
    });
    let cwd = tempfile::tempdir().unwrap();
    let out = sft_stdin(
        &["send", &addr.to_string(), "-", "x.txt"],
        cwd.path(),
        b"data",
    );
    expect_code(&out, 4);
    assert!(
        stderr(&out).contains("does not take streamed uploads"),
        "{}",
        stderr(&out)
    );
    let request: serde_json::Value = serde_json::from_str(&fake.join().unwrap()).unwrap();
    assert_eq!(
        request,
        serde_json::json!({"verb": "SEND", "path": "x.txt", "body": "chunked", "overwrite": false})
    );
}
