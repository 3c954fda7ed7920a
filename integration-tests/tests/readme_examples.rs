//! Every command example in README.md, run as written (in README order, against one real
//! server) — so an example that stops working, or a new one nobody ran, fails the suite.
//!
//! Only the place names change: the README's example servers (`files.example.org`, `host`,
//! `10.0.0.5`, `[::1]`…) become the test server's address, `/tmp/…` a temporary folder, `~` a
//! temporary home, and commands this machine may lack get stand-ins (`pg_dump`). A fixture
//! holds every remote and local file the examples name. `cargo` lines (the set-up commands) are
//! not run: the suite running is the second of them, and the first is a server on the defaults,
//! which the `sft-server` examples below cover.

use sft_integration_tests::{bin, ServerProcess};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The example servers README uses, each replaced by the test server's address.
const HOSTS: [&str; 4] = ["files.example.org", "host", "10.0.0.5", "10.0.0.5:9000"];

/// Commands README pipes from that a test machine may not have, and what stands in for them.
const STAND_INS: [(&str, &str); 1] = [("pg_dump db", "printf 'CREATE TABLE t ();\\n'")];

/// One example: a command line of a `sh` block, and for `$ ` lines the output README shows.
#[derive(Debug)]
struct Example {
    line: String,
    output: Option<Vec<String>>,
}

/// The examples of README's `sh` blocks, in order: comments removed, empty lines skipped.
fn examples(readme: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut prompt: Option<Example> = None;
    for raw in readme.lines() {
        if raw.starts_with("```") {
            if let Some(p) = prompt.take() {
                out.push(p);
            }
            in_sh = raw == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(cmd) = raw.strip_prefix("$ ") {
            if let Some(p) = prompt.take() {
                out.push(p);
            }
            prompt = Some(Example {
                line: cmd.trim().to_owned(),
                output: Some(Vec::new()),
            });
            continue;
        }
        if let Some(p) = prompt.as_mut() {
            p.output.as_mut().unwrap().push(raw.to_owned());
            continue;
        }
        let line = strip_comment(raw);
        if !line.is_empty() {
            out.push(Example { line, output: None });
        }
    }
    out
}

/// `cmd args   # what it does` → `cmd args`. A `#` starts a comment only after whitespace and
/// outside quotes, as in the shell.
fn strip_comment(line: &str) -> String {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return line[..i].trim().to_owned(),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line.trim().to_owned()
}

/// Where the examples run: a served root with every remote file they name, a working folder
/// with every local one, a home, and a scratch folder for `/tmp`.
struct Stage {
    _dir: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
}

fn put(base: &Path, rel: &str, data: &[u8]) {
    let path = base.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn stage() -> Stage {
    let dir = tempfile::tempdir().unwrap();
    let [root, work, home, tmp] = ["root", "work", "home", "tmp"].map(|d| {
        let p = dir.path().join(d);
        fs::create_dir(&p).unwrap();
        p
    });
    for (rel, data) in [
        ("hello.txt", &b"hello\n"[..]),
        ("reports/q3.pdf", b"%PDF q3"),
        ("logs/app.log", b"started\n"),
        ("logs/b.log", b"b\n"),
        ("logs/today.txt", b"today\n"),
        ("logs/yesterday.txt", b"yesterday\n"),
        ("logs/app-2024-01-15.log", b"january\n"),
        ("logs/app-2024-03-02.log", b"march\n"),
        ("logs/app-2024-05-01.log", b"may\n"),
        ("notes.txt", b"notes\n"),
        ("a.txt", b"a\n"),
        ("c.pdf", b"%PDF c"),
        ("readme.txt", b"read me\n"),
        ("docs/guide.txt", b"guide\n"),
        ("docs/old/notes.txt", b"old\n"),
        ("photos/2024/one.jpg", b"jpeg 1"),
        ("photos/2024/trip/two.jpg", b"jpeg 2"),
        ("inbox/old.txt", b"old\n"),
        ("inbox/b.txt", b"b\n"),
        ("inbox/q3.pdf", b"%PDF q3"),
        ("inbox/q4.pdf", b"%PDF q4"),
        ("big.iso", &vec![7u8; 300_000][..]),
    ] {
        put(&root, rel, data);
    }
    // The time and bits README's by-hand example shows (420 is 0o644).
    let hello = fs::File::options()
        .write(true)
        .open(root.join("hello.txt"))
        .unwrap();
    hello
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_732_440_000))
        .unwrap();
    hello
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .unwrap();
    fs::create_dir_all(root.join("inbox/empty")).unwrap();
    fs::create_dir_all(root.join("archive")).unwrap();
    for (rel, data) in [
        ("photo.jpg", &b"jpeg"[..]),
        ("deploy.sh", b"#!/bin/sh\necho deployed\n"),
        ("img.jpg", b"jpeg img"),
        ("data.csv", b"a,b\n1,2\n"),
        ("beach.jpg", b"jpeg beach"),
        ("dog.jpg", b"jpeg dog"),
        ("site/index.html", b"<h1>hi</h1>\n"),
        ("site/css/site.css", b"h1 {}\n"),
        ("project/main.rs", b"fn main() {}\n"),
        ("notes.txt", b"local notes\n"),
        ("big.iso", &vec![7u8; 300_000][..]),
    ] {
        put(&work, rel, data);
    }
    for f in [root.join("reports/q3.pdf"), work.join("site/index.html")] {
        fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000))
            .unwrap();
    }
    fs::set_permissions(
        work.join("deploy.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for d in [
        ".local/share/bash-completion/completions",
        ".zfunc",
        ".config/fish/completions",
    ] {
        fs::create_dir_all(home.join(d)).unwrap();
    }
    Stage {
        _dir: dir,
        root,
        work,
        home,
        tmp,
    }
}

/// `line` with the README's places replaced by the stage's.
fn localize(line: &str, addr: &str, v6: &str, stage: &Stage) -> String {
    let mut line = line.to_owned();
    for (cmd, stand_in) in STAND_INS {
        line = line.replace(cmd, stand_in);
    }
    line.split(' ')
        .map(|word| {
            if HOSTS.contains(&word) {
                addr.to_owned()
            } else if word == "[::1]" {
                v6.to_owned()
            } else if word == "localhost" {
                "127.0.0.1".to_owned()
            } else if word == "7005" {
                addr.rsplit(':').next().unwrap().to_owned()
            } else if let Some(rest) = word.strip_prefix("/tmp/") {
                stage.tmp.join(rest).display().to_string()
            } else if let Some(rest) = word.strip_prefix("~/") {
                stage.home.join(rest).display().to_string()
            } else if word == "/srv/files" {
                stage.root.display().to_string()
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell(line: &str, stage: &Stage) -> Command {
    let bin_dir = bin("sft").parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(format!("set -o pipefail; {line}"))
        .current_dir(&stage.work)
        .env("PATH", path)
        .env("HOME", &stage.home)
        .env_remove("SFT_LOG")
        .stdin(Stdio::null());
    c
}

/// Whether `program` is on this machine's `PATH`.
fn program_exists(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs an `sft-server` example on a free port in a scratch folder until it logs that it
/// listens, then stops it.
fn run_server_example(line: &str, stage: &Stage) {
    let mut line = line.replace("-p 9000", "-p 0");
    if !line.contains("--port") && !line.contains("-p 0") {
        line.push_str(" --port 0");
    }
    if line.contains("::1") && std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped (no IPv6 loopback here): {line}");
        return;
    }
    let serve = tempfile::tempdir().unwrap();
    let mut child = shell(&format!("exec env {line}"), stage)
        .current_dir(serve.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run the server example");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let up = l.contains("listening");
            let _ = tx.send(l);
            if up {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let up = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains("listening") => break true,
            Ok(l) => seen.push(l),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "README example `{line}` did not start: {seen:?}");
}

#[test]
fn every_readme_example_runs_as_written() {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md");
    let examples = examples(&readme);
    assert!(
        examples.len() > 30,
        "README examples not found: {examples:?}"
    );
    let stage = stage();
    // A dual-stack server when this machine has IPv6, so `[::1]` examples reach it too.
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let server = ServerProcess::start(
        &stage.root,
        &["--host", if v6 { "::" } else { "127.0.0.1" }],
    );
    let port = server.addr.port();
    let addr = format!("127.0.0.1:{port}");
    let v6_addr = if v6 {
        format!("[::1]:{port}")
    } else {
        addr.clone()
    };
    let mut ran = 0;
    for example in &examples {
        let line = &example.line;
        if line.starts_with("cargo ") {
            continue;
        }
        if line.contains("sft-server") {
            run_server_example(&localize(line, &addr, &v6_addr, &stage), &stage);
            ran += 1;
            continue;
        }
        let local = localize(line, &addr, &v6_addr, &stage);
        if line.contains("| nc ") && !program_exists("nc") {
            eprintln!("skipped (nc is not installed here): {line}");
            continue;
        }
        let out = shell(&local, &stage).output().expect("run bash");
        assert!(
            out.status.success(),
            "README example `{line}` (run as `{local}`) failed:\n{}",
            show(&out)
        );
        if let Some(expected) = &example.output {
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                got.lines().collect::<Vec<_>>(),
                *expected,
                "README example `{line}` printed something else"
            );
        }
        ran += 1;
    }
    assert!(ran > 30, "only {ran} examples ran");

    // What some examples promise beyond their exit status.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&stage.root.join("bin/deploy.sh")),
        0o755,
        "--preserve kept the bits"
    );
    let mtime = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(
        secs(mtime(&stage.work.join("q3.pdf"))),
        secs(mtime(&stage.root.join("reports/q3.pdf"))),
        "a download keeps the file's time"
    );
    assert_eq!(
        secs(mtime(&stage.root.join("www/index.html"))),
        secs(mtime(&stage.work.join("site/index.html"))),
        "an upload keeps the file's time"
    );
}

#[test]
fn comments_are_stripped_as_the_shell_does() {
    assert_eq!(strip_comment("sft get h a  # → ./a"), "sft get h a");
    assert_eq!(
        strip_comment("sft call h STAT '{\"path\":\"#a\"}'  # x"),
        "sft call h STAT '{\"path\":\"#a\"}'"
    );
    assert_eq!(strip_comment("sft get h a#b"), "sft get h a#b");
}
