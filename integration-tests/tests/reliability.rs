//! Limits, timeouts, concurrency, faults and shutdown: the server stays up and stored files stay
//! intact whatever clients do.

use async_std::task;
use futures::{AsyncReadExt, AsyncWriteExt};
use sft_client::{Client, SendOptions};
use sft_commands::{BoxFuture, Command, CommandError, Context};
use sft_integration_tests::{
    list_files, raise_fd_limit, random_bytes, wait_until, Raw, ServerProcess, TestServer,
};
use sft_protocol::Request;
use std::time::Duration;

const LOOPBACK: [&str; 2] = ["--host", "127.0.0.1"];
const LONG: Duration = Duration::from_secs(60);

fn builtins_with(args: &[&str]) -> TestServer {
    TestServer::start_with(args, sft_commands::builtins())
}

#[test]
fn connections_over_the_limit_get_busy_and_slots_free_up() {
    let server = builtins_with(&["--max-connections", "2"]);
    std::fs::write(server.path("f"), "x").unwrap();
    task::block_on(async {
        let first = Raw::connect(server.addr).await;
        let mut second = Raw::connect(server.addr).await;
        wait_until(LONG, || server.handle.session_count() == 2);
        let mut third = Raw::connect(server.addr).await;
        let reply = third.reply().await;
        assert_eq!(reply["code"], "busy", "{reply}");
        assert!(third.closed().await);
        // The two admitted sessions still work; closing one frees its slot.
        second.write(b"{\"verb\":\"GET\",\"path\":\"f\"}\n").await;
        assert_eq!(second.reply().await["size"], 1);
        drop(first);
        wait_until(LONG, || server.handle.session_count() == 1);
        let mut fourth = Raw::connect(server.addr).await;
        fourth.write(b"{\"verb\":\"GET\",\"path\":\"f\"}\n").await;
        assert_eq!(fourth.reply().await["size"], 1);
    });
}

#[test]
fn idle_connections_are_closed_and_slow_headers_cannot_hold_a_slot() {
    let server = builtins_with(&["--idle-timeout", "1", "--header-timeout", "1"]);
    task::block_on(async {
        let mut silent = Raw::connect(server.addr).await;
        let mut trickle = Raw::connect(server.addr).await;
        trickle.write(b"{\"verb\":\"GET\",").await;
        assert!(silent.closed().await, "an idle connection is closed");
        let reply = trickle.reply().await;
        assert_eq!(reply["code"], "bad_request");
        assert!(trickle.closed().await, "an unfinished header is cut off");
    });
    server.wait_idle();
}

#[test]
fn the_idle_timeout_counts_from_the_last_request_not_the_connection() {
    let server = builtins_with(&["--idle-timeout", "2"]);
    task::block_on(async {
        // Two connections, so that each waits among others (with the session's one idle timer;
        // a lone connection waits with a timer per wait).
        let mut raws = [
            Raw::connect(server.addr).await,
            Raw::connect(server.addr).await,
        ];
        // Requests every half second for twice the timeout: the connections stay open.
        for _ in 0..8 {
            task::sleep(Duration::from_millis(500)).await;
            for raw in &mut raws {
                raw.write(b"{\"verb\":\"HELLO\"}\n").await;
                assert_eq!(raw.reply().await["ok"], true, "open four seconds in");
            }
        }
        // Then silence: closed after the timeout, counted from the last request.
        let last = std::time::Instant::now();
        for raw in &mut raws {
            assert!(raw.closed().await, "an idle connection is closed");
        }
        let waited = last.elapsed();
        assert!(
            waited >= Duration::from_millis(1500),
            "closed {waited:?} after the last request, before the 2 s idle timeout"
        );
    });
    server.wait_idle();
}

#[test]
fn a_stalled_upload_is_aborted_and_cleaned_up() {
    let server = builtins_with(&["--stall-timeout", "1"]);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"SEND\",\"path\":\"stalled.bin\",\"size\":100000}\n")
            .await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(&[7u8; 1000]).await;
        // …and then nothing: the server gives up after the stall timeout.
        assert!(raw.closed().await);
    });
    server.wait_idle();
    assert!(!server.path("stalled.bin").exists());
    assert!(server.staging_files().is_empty());
}

#[test]
fn a_client_that_stops_reading_a_download_is_dropped() {
    let server = builtins_with(&["--stall-timeout", "1"]);
    std::fs::write(server.path("big.bin"), vec![0u8; 64 << 20]).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"big.bin\"}\n")
            .await;
        // Never read: socket buffers fill, the server's writes stall, it aborts the session.
        wait_until(LONG, || server.handle.session_count() == 0);
        drop(raw);
    });
}

#[test]
fn concurrent_sends_to_one_path_never_interleave() {
    let server = builtins_with(&[]);
    let inputs: Vec<Vec<u8>> = (0..8u64).map(|i| random_bytes(2 << 20, 100 + i)).collect();
    let addr = server.server_arg();
    // With overwrite: every upload succeeds and the file is exactly one of them.
    let results = task::block_on(futures::future::join_all(inputs.iter().cloned().map(
        |data| {
            let addr = addr.clone();
            task::spawn(async move {
                let mut c = Client::connect(&addr, 7005).await.unwrap();
                c.send(&mut &data[..], data.len() as u64, "same.bin", true)
                    .await
            })
        },
    )));
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let stored = std::fs::read(server.path("same.bin")).unwrap();
    assert!(
        inputs.contains(&stored),
        "the stored file is exactly one of the inputs"
    );

    // Without overwrite: exactly one wins, every other gets `exists`.
    let results = task::block_on(futures::future::join_all(inputs.iter().cloned().map(
        |data| {
            let addr = addr.clone();
            task::spawn(async move {
                let mut c = Client::connect(&addr, 7005).await.unwrap();
                c.send(&mut &data[..], data.len() as u64, "once.bin", false)
                    .await
            })
        },
    )));
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert_eq!(
            r.as_ref().unwrap_err().code(),
            Some(sft_protocol::ErrorCode::Exists)
        );
    }
    assert!(inputs.contains(&std::fs::read(server.path("once.bin")).unwrap()));
    server.wait_idle();
    assert!(server.staging_files().is_empty());
}

#[test]
fn a_get_during_an_upload_sees_the_old_file_whole() {
    let server = builtins_with(&[]);
    let old = random_bytes(1 << 20, 1);
    let new = random_bytes(1 << 20, 2);
    std::fs::write(server.path("doc.bin"), &old).unwrap();
    task::block_on(async {
        let mut up = Raw::connect(server.addr).await;
        let header = format!(
            "{{\"verb\":\"SEND\",\"path\":\"doc.bin\",\"size\":{},\"overwrite\":true}}\n",
            new.len()
        );
        up.write(header.as_bytes()).await;
        assert_eq!(up.reply().await["ok"], true);
        up.write(&new[..new.len() / 2]).await;
        wait_until(LONG, || server.staging_files().len() == 1);

        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        let mut during = Vec::new();
        client.get("doc.bin", &mut during).await.unwrap();
        assert!(during == old, "mid-upload, readers see the old file, whole");

        up.write(&new[new.len() / 2..]).await;
        assert_eq!(up.reply().await["size"], new.len());
        let mut after = Vec::new();
        client.get("doc.bin", &mut after).await.unwrap();
        assert!(after == new, "after the commit, readers see the new file");
    });
}

#[test]
fn a_parent_swapped_for_a_symlink_mid_upload_cannot_redirect_it() {
    let server = builtins_with(&[]);
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(server.path("box")).unwrap();
    task::block_on(async {
        let mut up = Raw::connect(server.addr).await;
        up.write(b"{\"verb\":\"SEND\",\"path\":\"box/file.txt\",\"size\":10}\n")
            .await;
        assert_eq!(up.reply().await["ok"], true);
        up.write(b"01234").await;
        // The go-ahead came once the target's folder was opened: the upload is under way (its
        // staging file is only created when the body's first block is written).
        std::fs::rename(server.path("box"), server.path("box.old")).unwrap();
        std::os::unix::fs::symlink(outside.path(), server.path("box")).unwrap();
        up.write(b"56789").await;
        assert_eq!(up.reply().await["size"], 10);
    });
    assert_eq!(
        std::fs::read(server.path("box.old/file.txt")).unwrap(),
        b"0123456789"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing escaped the root"
    );
}

#[test]
fn storage_write_failures_fail_the_upload_cleanly() {
    // Fault injection at the storage layer: the kernel refuses file writes past 1 MiB
    // (RLIMIT_FSIZE → EFBIG; SIGXFSZ ignored so the write fails instead of killing).
    let root = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_in_shell(root.path(), &LOOPBACK, Some("trap '' XFSZ; ulimit -f 1024"));
    let local = tempfile::tempdir().unwrap();
    let big = local.path().join("big.bin");
    std::fs::write(&big, random_bytes(4 << 20, 5)).unwrap();
    let small = local.path().join("small.txt");
    std::fs::write(&small, "fits").unwrap();
    let addr = server.addr.to_string();
    task::block_on(async {
        let mut client = Client::connect(&addr, 7005).await.unwrap();
        let err = client
            .send_file(&big, "big.bin", SendOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(sft_protocol::ErrorCode::Internal), "{err}");
        assert!(err.to_string().contains("big.bin"), "{err}");
        // Same connection, still in step: a small upload works.
        client
            .send_file(&small, "small.txt", SendOptions::default())
            .await
            .unwrap();
    });
    assert!(
        !root.path().join("big.bin").exists(),
        "no partial file under the final name"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("small.txt")).unwrap(),
        "fits"
    );
    let staging = list_files(&root.path().join(".sft/tmp"));
    assert!(staging.is_empty(), "staging file removed: {staging:?}");
}

/// A verb that panics, to prove a handler panic ends its session only.
struct Boom;

impl Command for Boom {
    fn verb(&self) -> &'static str {
        "BOOM"
    }
    fn run<'a>(
        &'a self,
        _: Request<'a>,
        _: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async { panic!("boom handler exploded") })
    }
}

#[test]
fn a_panicking_handler_ends_its_session_only() {
    let mut registry = sft_commands::builtins();
    registry.register(Boom);
    let server = TestServer::start_with(&[], registry);
    std::fs::write(server.path("f"), "ok").unwrap();
    task::block_on(async {
        let mut bystander = Raw::connect(server.addr).await;
        let mut victim = Raw::connect(server.addr).await;
        victim.write(b"{\"verb\":\"BOOM\"}\n").await;
        assert!(victim.closed().await);
        bystander
            .write(b"{\"verb\":\"GET\",\"path\":\"f\"}\n")
            .await;
        assert_eq!(bystander.reply().await["size"], 2);
        let mut fresh = Raw::connect(server.addr).await;
        fresh.write(b"{\"verb\":\"GET\",\"path\":\"f\"}\n").await;
        assert_eq!(fresh.reply().await["size"], 2);
    });
}

#[test]
fn sigterm_lets_a_1_gib_download_finish_then_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let size: u64 = 1 << 30;
    std::fs::File::create(root.path().join("huge.bin"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let mut server = ServerProcess::start(root.path(), &LOOPBACK);
    let addr = server.addr;
    task::block_on(async {
        let mut stream = async_std::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"{\"verb\":\"GET\",\"path\":\"huge.bin\"}\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got: u64 = 0;
        let mut header_len = None;
        let mut signalled = false;
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            if header_len.is_none() {
                let end = buf[..n].iter().position(|&b| b == b'\n');
                header_len = Some(got + end.expect("the reply line comes first, whole") as u64 + 1);
            }
            got += n as u64;
            if !signalled && got > 4 << 20 {
                server.signal("TERM");
                signalled = true;
                // The listener closes at once: new connections are refused.
                wait_until(LONG, || std::net::TcpStream::connect(addr).is_err());
            }
        }
        assert_eq!(got, header_len.unwrap() + size, "the whole file arrived");
    });
    assert_eq!(server.wait_exit(LONG), Some(0));
    assert!(!server
        .logs_with("signal received: shutting down gracefully")
        .is_empty());
}

#[test]
fn crash_debris_is_removed_at_start_up() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join(".sft/tmp")).unwrap();
    std::fs::write(root.path().join(".sft/tmp/123-0.part"), "half an upload").unwrap();
    let _server = ServerProcess::start(root.path(), &LOOPBACK);
    assert_eq!(
        list_files(&root.path().join(".sft/tmp")),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn names_are_escaped_in_pretty_logs() {
    let root = tempfile::tempdir().unwrap();
    let evil = "evil\u{1b}[31mred\u{7}.txt";
    std::fs::write(root.path().join(evil), "x").unwrap();
    let server = ServerProcess::start(
        root.path(),
        &["--host", "127.0.0.1", "--log-format", "pretty"],
    );
    let out =
        sft_integration_tests::sft(&["get", &server.addr.to_string(), evil, "-"], root.path());
    assert!(out.status.success());
    wait_until(LONG, || {
        server
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("verb=GET"))
    });
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(
        !logs.contains('\u{1b}') && !logs.contains('\u{7}'),
        "raw control characters in logs: {logs:?}"
    );
    assert!(logs.contains("evil\\u{1b}[31mred\\u{7}.txt"), "{logs}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\u{1b}'),
        "client output carries raw escapes: {stderr:?}"
    );
}

#[test]
fn four_hundred_idle_connections_do_not_block_a_new_client() {
    raise_fd_limit();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), "data").unwrap();
    let server = ServerProcess::start(root.path(), &LOOPBACK);
    let idle: Vec<_> = (0..400)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    let out = sft_integration_tests::sft(&["get", &server.addr.to_string(), "f", "-"], root.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"data");
    drop(idle);
}

#[test]
fn a_thousand_concurrent_clients_mixed_get_and_send_with_bounded_memory() {
    raise_fd_limit();
    let root = tempfile::tempdir().unwrap();
    let shared = random_bytes(64 * 1024, 42);
    std::fs::write(root.path().join("shared.bin"), &shared).unwrap();
    // All 500 uploads are to be received at once here: past the default bound of 128 the
    // server would rightly answer `busy` (that bound has its own test in `hostile.rs`).
    let server = ServerProcess::start(
        root.path(),
        &[LOOPBACK[0], LOOPBACK[1], "--max-uploads", "500"],
    );
    let addr = server.addr.to_string();
    let errors = task::block_on(async {
        let tasks: Vec<_> = (0..1000u64)
            .map(|i| {
                let addr = addr.clone();
                let shared = shared.clone();
                task::spawn(async move {
                    let mut c = Client::connect(&addr, 7005)
                        .await
                        .map_err(|e| e.to_string())?;
                    if i % 2 == 0 {
                        let mut got = Vec::new();
                        c.get("shared.bin", &mut got)
                            .await
                            .map_err(|e| e.to_string())?;
                        if got != shared {
                            return Err("wrong bytes".to_string());
                        }
                    } else {
                        let data = random_bytes(16 * 1024, i);
                        c.send(
                            &mut &data[..],
                            data.len() as u64,
                            &format!("up/{i}.bin"),
                            false,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(())
                })
            })
            .collect();
        let mut errors = Vec::new();
        for t in tasks {
            if let Err(e) = t.await {
                errors.push(e);
            }
        }
        errors
    });
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    for i in (1..1000u64).step_by(2) {
        assert_eq!(
            std::fs::read(root.path().join(format!("up/{i}.bin"))).unwrap(),
            random_bytes(16 * 1024, i)
        );
    }
    let peak = server.peak_rss_kib();
    assert!(
        peak < 256 * 1024,
        "server peak RSS {peak} KiB for 1000 clients"
    );
}
