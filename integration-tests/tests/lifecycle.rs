//! The server's life cycle seen from an embedding program: when `Server::run` returns, nothing
//! of it is left running.

use async_std::task;
use futures::AsyncReadExt;
use sft_integration_tests::{wait_until, Raw, ServerProcess, TestServer};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

/// Reads until the peer closes (EOF or reset); `Some(bytes read)` if that happened within
/// `limit` and before `max` bytes, `None` if the connection was still delivering or silent.
async fn sees_close(raw: &mut Raw, limit: Duration, max: u64) -> Option<u64> {
    let read = async {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            match raw.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Some(got),
                Ok(n) => got += n as u64,
            }
            if got > max {
                return None;
            }
        }
    };
    async_std::future::timeout(limit, read).await.ok().flatten()
}

#[test]
fn grace_expiry_ends_every_session_before_run_returns() {
    let mut server = TestServer::start_with(
        // The stall timeout is far away: only the end of the grace period can end these.
        &["--shutdown-grace", "1", "--stall-timeout", "120"],
        sft_commands::builtins(),
    );
    let big: u64 = 1 << 30;
    std::fs::File::create(server.path("big.bin"))
        .unwrap()
        .set_len(big)
        .unwrap();
    let handle = server.handle.clone();
    task::block_on(async {
        // A slow upload: the go-ahead, more than a block (so that its staging file exists),
        // then nothing.
        let mut upload = Raw::connect(server.addr).await;
        upload
            .write(b"{\"verb\":\"SEND\",\"path\":\"slow.bin\",\"size\":1048576}\n")
            .await;
        assert_eq!(upload.reply().await["ok"], true);
        upload.write(&[7u8; 300_000]).await;
        // A download nobody reads: the socket buffers fill and the server's writes wait.
        let mut download = Raw::connect(server.addr).await;
        download
            .write(b"{\"verb\":\"GET\",\"path\":\"big.bin\"}\n")
            .await;
        assert_eq!(download.reply().await["size"], big);
        wait_until(LONG, || {
            handle.session_count() == 2 && !server.staging_files().is_empty()
        });

        let started = Instant::now();
        server.stop_within(LONG).expect("run returns Ok");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "run returned after {took:?}"
        );
        assert_eq!(
            handle.session_count(),
            0,
            "sessions still live after run returned: {:?}",
            handle.sessions()
        );
        assert!(
            server.staging_files().is_empty(),
            "staging debris: {:?}",
            server.staging_files()
        );
        // Both sockets are closed: the upload sees EOF or a reset, the download ends after
        // what was already in the socket buffers, far short of the file.
        assert!(
            sees_close(&mut upload, Duration::from_secs(5), 0)
                .await
                .is_some(),
            "the slow upload's connection is still open"
        );
        assert!(
            sees_close(&mut download, Duration::from_secs(5), 256 << 20)
                .await
                .is_some(),
            "the unread download's connection is still open"
        );
    });
    assert!(!server.path("slow.bin").exists());
}

/// The server's soft and hard open-file limits, from `/proc/PID/limits`.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .expect("a finite hard limit");
    assert!(
        hard > 256,
        "this test needs a hard open-file limit above 256"
    );
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in_shell(
        root.path(),
        &["--host", "127.0.0.1"],
        Some("ulimit -S -n 256"),
    );
    assert_eq!(open_file_limits(server.child.id()), (hard, hard));
    let logged = server.logs_with("file descriptor limit");
    assert_eq!(logged.len(), 1, "{:?}", server.logs.lock().unwrap());
    assert_eq!(logged[0]["limit"], hard);
}

#[test]
fn max_connections_is_lowered_to_fit_the_descriptors_and_the_rest_get_busy() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), "x").unwrap();
    // `ulimit -n` sets both limits: nothing to raise.
    let server = ServerProcess::start_in_shell(
        root.path(),
        &["--host", "127.0.0.1", "--max-connections", "1000"],
        Some("ulimit -n 256"),
    );
    let fit = sft_server::fdlimit::connections_within(Some(256));
    assert!(fit < 1000);
    let warned = server.logs_with("max connections lowered to fit the file descriptor limit");
    assert_eq!(warned.len(), 1, "{:?}", server.logs.lock().unwrap());
    assert_eq!(warned[0]["configured"], 1000);
    assert_eq!(warned[0]["max_connections"], fit as u64);
    task::block_on(async {
        // `fit` connections are served, each one working…
        let mut admitted = Vec::new();
        for _ in 0..fit {
            let mut raw = Raw::connect(server.addr).await;
            raw.write(b"{\"verb\":\"GET\",\"path\":\"f\"}\n").await;
            let reply = raw.reply().await;
            assert_eq!(reply["size"], 1, "{reply}");
            assert_eq!(raw.body(1).await, b"x");
            admitted.push(raw);
        }
        // …and the ones past it are told `busy`, not left to a failed accept.
        for _ in 0..5 {
            let mut extra = Raw::connect(server.addr).await;
            let reply = extra.reply().await;
            assert_eq!(reply["code"], "busy", "{reply}");
        }
        drop(admitted);
    });
    assert!(server.logs_with("accept failed").is_empty());
}

#[test]
fn sighup_without_tokens_is_logged_and_the_server_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), "hello\n").unwrap();
    let mut server = ServerProcess::start(root.path(), &["--host", "127.0.0.1"]);
    let nothing = "signal received: nothing to reload (no --tokens)";
    for n in 1..=2 {
        server.signal("HUP");
        wait_until(LONG, || server.logs_with(nothing).len() == n);
    }
    assert!(server.is_running(), "SIGHUP stopped the server");
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"a.txt\"}\n").await;
        assert_eq!(raw.reply().await["size"], 6);
        assert_eq!(raw.body(6).await, b"hello\n");
    });
}

#[test]
fn sessions_the_end_of_the_grace_cuts_still_log_their_request_and_their_close() {
    let root = tempfile::tempdir().unwrap();
    std::fs::File::create(root.path().join("big.bin"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let mut server = ServerProcess::start(
        root.path(),
        &[
            "--host",
            "127.0.0.1",
            "--shutdown-grace",
            "1",
            "--stall-timeout",
            "120",
        ],
    );
    task::block_on(async {
        // A download nobody reads: the server's writes wait until the grace runs out.
        let mut download = Raw::connect(server.addr).await;
        download
            .write(b"{\"verb\":\"GET\",\"path\":\"big.bin\"}\n")
            .await;
        // The reply came: the GET is running.
        assert_eq!(download.reply().await["size"], 1u64 << 30);
        server.signal("TERM");
        assert_eq!(server.wait_exit(LONG), Some(0));
    });
    let requests = server.logs_with("request");
    let get: Vec<_> = requests.iter().filter(|l| l["verb"] == "GET").collect();
    assert_eq!(get.len(), 1, "{requests:?}");
    assert_eq!(get[0]["outcome"], "aborted", "{:?}", get[0]);
    assert_eq!(get[0]["path"], "big.bin");
    let closed = server.logs_with("connection closed by server shutdown: the grace period ran out");
    assert_eq!(closed.len(), 1, "{:?}", server.logs.lock().unwrap());
    assert_eq!(closed[0]["session"], get[0]["session"]);
}
