//! The server's life cycle seen from an embedding program: when `Server::run` returns, nothing
//! of it is left running.

use async_std::task;
use futures::AsyncReadExt;
use sft_integration_tests::{wait_until, Raw, TestServer};
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
        // A slow upload: the go-ahead, a few bytes, then nothing.
        let mut upload = Raw::connect(server.addr).await;
        upload
            .write(b"{\"verb\":\"SEND\",\"path\":\"slow.bin\",\"size\":1048576}\n")
            .await;
        assert_eq!(upload.reply().await["ok"], true);
        upload.write(&[7u8; 1000]).await;
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
