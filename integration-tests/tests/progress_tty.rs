//! `sft` on a real terminal (util-linux `script`, else python3's `pty`): the overall bar of a
//! many-file download counts bytes; a resumed download's rate counts only what moved in this
//! run; and a transfer interrupted with Ctrl-C says where its partial is kept.

use sft_integration_tests::{bin, random_bytes, wait_until, TestServer};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs `sft ARGS` on a pseudo-terminal and returns its exit code and everything it wrote
/// there. `None` if neither `script` nor python3 exists.
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
        let line: Vec<String> = std::iter::once(sft.to_str().unwrap())
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
    let out = command
        .current_dir(cwd)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("run sft on a terminal");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.code(), text))
}

/// Every drawing of the overall bar: the text after each `total`.
fn overall_bars(text: &str) -> Vec<String> {
    text.match_indices("total ")
        .map(|(i, _)| text[i..].chars().take(110).collect())
        .collect()
}

/// `12 MiB/s` → bytes per second.
fn parse_rate(text: &str) -> f64 {
    let (value, unit) = text.trim().split_once(' ').expect("VALUE UNIT/s");
    let scale = match unit.trim_end_matches("/s") {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other}"),
    };
    value.parse::<f64>().unwrap() * scale
}

/// Every rate the output shows (`12 MiB/s`), in bytes per second.
fn rates_shown(text: &str) -> Vec<f64> {
    let pieces: Vec<&str> = text.split("/s").collect();
    pieces[..pieces.len().saturating_sub(1)]
        .iter()
        .filter_map(|before| {
            let mut words = before.split_whitespace().rev();
            let unit = words.next()?;
            let value = words.next()?.trim_start_matches('(');
            value.parse::<f64>().ok()?;
            ["B", "KiB", "MiB", "GiB", "TiB"]
                .contains(&unit)
                .then(|| parse_rate(&format!("{value} {unit}/s")))
        })
        .collect()
}

#[test]
fn the_overall_bar_of_a_many_file_download_counts_bytes() {
    let server = TestServer::start();
    fs::create_dir(server.path("set")).unwrap();
    for (i, name) in ["a.bin", "b.bin", "c.bin"].iter().enumerate() {
        fs::write(
            server.path(&format!("set/{name}")),
            random_bytes(24 << 20, i as u64),
        )
        .unwrap();
    }
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.server_arg();
    let Some((code, text)) = sft_on_terminal(&["get", "-r", &addr, "set", "here"], cwd.path())
    else {
        return;
    };
    assert_eq!(code, Some(0), "{text}");
    let bars = overall_bars(&text);
    assert!(!bars.is_empty(), "no overall bar: {text}");
    // Bytes of bytes, a percent, a rate, and the files after them.
    assert!(
        bars.iter().any(|b| b.contains("MiB/72 MiB")
            && b.contains('%')
            && b.contains("/s")
            && b.contains("/3 files")),
        "{bars:#?}"
    );
    assert!(text.contains("get: 3 file(s), 72 MiB in "), "{text}");

    // Files named one by one (sizes not known in advance): files, and the bytes moved.
    let Some((code, text)) = sft_on_terminal(
        &[
            "get",
            "-o",
            "there",
            &addr,
            "set/a.bin",
            "set/b.bin",
            "set/c.bin",
        ],
        cwd.path(),
    ) else {
        return;
    };
    assert_eq!(code, Some(0), "{text}");
    let bars = overall_bars(&text);
    assert!(
        bars.iter()
            .any(|b| b.contains("/3 files, ") && b.contains("iB at ") && b.contains("/s")),
        "{bars:#?}"
    );
}

#[test]
fn a_resumed_download_is_timed_by_the_bytes_it_moved() {
    let server = TestServer::start();
    let size = 48usize << 20;
    let data = random_bytes(size, 9);
    fs::write(server.path("big.bin"), &data).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    // What an interrupted download left: the first 90 %.
    let kept = size / 10 * 9;
    fs::write(cwd.path().join(".big.bin.sft-part"), &data[..kept]).unwrap();
    let addr = server.server_arg();
    let Some((code, text)) = sft_on_terminal(&["get", "-c", &addr, "big.bin"], cwd.path()) else {
        return;
    };
    assert_eq!(code, Some(0), "{text}");
    assert!(fs::read(cwd.path().join("big.bin")).unwrap() == data);
    // `get big.bin → big.bin: 48 MiB, 4.8 MiB moved in 0.05 s (96 MiB/s, resumed at 43 MiB, …)`
    let summary = text
        .lines()
        .find(|l| l.contains(" moved in "))
        .unwrap_or_else(|| panic!("no summary of the moved part: {text}"));
    assert!(summary.contains("48 MiB, 4.8 MiB moved in "), "{summary}");
    assert!(summary.contains("resumed at 43 MiB"), "{summary}");
    let secs: f64 = summary
        .split(" moved in ")
        .nth(1)
        .and_then(|r| r.split(" s (").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    let rate = parse_rate(
        summary
            .split(" s (")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap(),
    );
    let moved = (size - kept) as f64;
    // The rate is the moved part over the time (the seconds are rounded to 0.01 in the
    // line); counting the whole file would make it ten times that.
    let expected = moved / secs.max(0.005);
    assert!(
        rate > expected / 3.0 && rate < expected * 3.0,
        "{summary}: {rate} B/s, expected about {expected}"
    );
    // The bar while it moved: never the bytes already on disk as if they had just arrived
    // (43 MiB in no time reads as tens of GiB/s). Bound: everything this run moved, in a
    // millisecond (a rate is never taken over less), with room for rounding.
    let shown = rates_shown(&text);
    assert!(shown.len() > 1, "{text}");
    for r in shown {
        assert!(r <= moved / 1e-3 * 1.1, "a rate of {r} B/s shown: {text}");
    }
}

/// A server stand-in on 127.0.0.1 that forwards to `target` but passes on only the first
/// `limit` bytes of the replies, then holds the connection open: a transfer that stalls.
fn stalling_relay(target: SocketAddr, limit: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else {
            return;
        };
        let mut server = TcpStream::connect(target).unwrap();
        let (mut up_from, mut up_to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut up_from, &mut up_to));
        let mut passed = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while passed < limit {
            let Ok(n) = server.read(&mut buf) else { return };
            if n == 0 {
                return;
            }
            let n = n.min(limit - passed);
            if client.write_all(&buf[..n]).is_err() {
                return;
            }
            passed += n;
        }
        // Held until the client goes away.
        let _ = client.read(&mut buf);
    });
    addr
}

#[test]
fn ctrl_c_keeps_the_partial_and_says_how_to_continue() {
    let server = TestServer::start();
    fs::write(server.path("big.bin"), random_bytes(8 << 20, 3)).unwrap();
    let relay = stalling_relay(server.addr, 2 << 20);
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("sft"))
        .args(["get", &relay.to_string(), "big.bin"])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let partial = cwd.path().join(".big.bin.sft-part");
    wait_until(Duration::from_secs(20), || {
        fs::metadata(&partial).is_ok_and(|m| m.len() >= 1 << 20)
    });
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    assert!(partial.exists(), "the partial stays");
    assert!(err.contains("interrupted; kept "), "{err}");
    assert!(err.contains(".big.bin.sft-part"), "{err}");
    assert!(
        err.contains("run the same command again (or add -c)"),
        "{err}"
    );
    assert!(!cwd.path().join("big.bin").exists());
}

#[test]
fn ls_on_a_terminal_has_a_header_and_sizes_for_people() {
    let server = TestServer::start();
    fs::write(server.path("b.bin"), vec![1u8; 3 << 20]).unwrap();
    fs::write(server.path("a.txt"), b"small").unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let addr = server.server_arg();
    let Some((code, text)) = sft_on_terminal(&["ls", &addr], cwd.path()) else {
        return;
    };
    assert_eq!(code, Some(0), "{text}");
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("KIND") && lines[0].ends_with("NAME"),
        "{text}"
    );
    assert!(
        lines[1].contains(" 5 B ") && lines[1].ends_with("a.txt"),
        "{text}"
    );
    assert!(
        lines[2].contains(" 3.0 MiB ") && lines[2].ends_with("b.bin"),
        "{text}"
    );
    // --bytes: raw sizes even here.
    let (code, text) = sft_on_terminal(&["ls", "--bytes", &addr], cwd.path()).unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(" 3145728 "), "{text}");
}
