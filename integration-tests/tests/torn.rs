//! "Verified" means one version: a file rewritten in place while it is sent must never arrive
//! as old head + new tail with a hash that vouches for it, in either direction.

use async_std::task;
use futures::AsyncReadExt;
use sft_client::{Client, SendOptions};
use sft_integration_tests::{random_bytes, sft, Raw, TestServer};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Large enough that loopback socket buffers hold only a small part of it.
const BIG: usize = 48 << 20;

/// Overwrites `path` in place (same size, no truncation), as an editor or a database would.
fn rewrite_in_place(path: &Path, content: &[u8]) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(content, 0).unwrap();
}

/// Reads everything until the server closes the connection (bounded in time).
async fn read_to_end(raw: &mut Raw) -> Vec<u8> {
    let mut all = Vec::new();
    let read = raw.stream.read_to_end(&mut all);
    let _ = async_std::future::timeout(Duration::from_secs(30), read).await;
    all
}

#[test]
fn a_file_rewritten_mid_get_never_gets_a_trailer() {
    let server = TestServer::start();
    let path = server.path("big.bin");
    let old = random_bytes(BIG, 1);
    let new = random_bytes(BIG, 2);
    fs::write(&path, &old).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"big.bin\",\"hash\":true}\n")
            .await;
        let reply = raw.reply().await;
        assert_eq!(reply["trailer"], true, "{reply}");
        // The server is now blocked with most of the file unsent: change it underneath.
        let head = raw.body(1 << 20).await;
        assert_eq!(head, old[..1 << 20]);
        rewrite_in_place(&path, &new);
        let rest = read_to_end(&mut raw).await;
        let body_left = BIG - (1 << 20);
        assert!(
            rest.len() <= body_left,
            "the torn body ({} bytes after the head) was followed by a trailer: {:?}",
            rest.len(),
            String::from_utf8_lossy(&rest[body_left.min(rest.len())..])
        );
    });
}

#[test]
fn sft_get_of_a_file_being_rewritten_is_one_version_or_an_error() {
    let server = TestServer::start();
    let path = server.path("big.bin");
    let versions = [random_bytes(BIG, 3), random_bytes(BIG, 4)];
    fs::write(&path, &versions[0]).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rewriter = {
        let (stop, path, versions) = (stop.clone(), path.clone(), versions.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                rewrite_in_place(&path, &versions[i % 2]);
            }
        })
    };
    let mut failures = 0;
    for _ in 0..6 {
        let out = sft(&["get", &server.server_arg(), "big.bin"], cwd.path());
        let got = cwd.path().join("big.bin");
        if out.status.success() {
            let bytes = fs::read(&got).unwrap();
            assert!(
                bytes == versions[0] || bytes == versions[1],
                "sft get exited 0 with a file that is neither version"
            );
        } else {
            failures += 1;
            let _ = fs::remove_file(&got);
        }
    }
    stop.store(true, Ordering::Relaxed);
    rewriter.join().unwrap();
    // A file rewritten without pause is torn nearly every time: those must fail.
    assert!(
        failures > 0,
        "every transfer of a file being rewritten succeeded"
    );
}

/// A stand-in server that takes one upload: go-ahead, then a megabyte of body, then it tells
/// the test to rewrite the local file and reads on. Returns whether a trailer arrived after
/// the body (a claim that the body is one version of the file).
fn fake_server_for_one_send(
    listener: TcpListener,
    size: usize,
    rewrite: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
) -> bool {
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("\"SEND\""), "{line}");
    (&stream)
        .write_all(b"{\"ok\":true,\"offset\":0}\n")
        .unwrap();
    let mut body = vec![0u8; size];
    std::io::Read::read_exact(&mut reader, &mut body[..1 << 20]).unwrap();
    rewrite.send(()).unwrap();
    done.recv().unwrap();
    let mut at = 1 << 20;
    while at < size {
        match std::io::Read::read(&mut reader, &mut body[at..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => at += n,
        }
    }
    let mut trailer = String::new();
    match reader.read_line(&mut trailer) {
        Ok(n) if n > 0 && trailer.ends_with('\n') => {
            let _ =
                (&stream).write_all(b"{\"ok\":false,\"code\":\"internal\",\"message\":\"test\"}\n");
            true
        }
        _ => false,
    }
}

#[test]
fn a_file_rewritten_mid_send_is_never_vouched_for() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("up.bin");
    let old = random_bytes(BIG, 5);
    let new = random_bytes(BIG, 6);
    fs::write(&local, &old).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (rewrite_tx, rewrite_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let server =
        std::thread::spawn(move || fake_server_for_one_send(listener, BIG, rewrite_tx, done_rx));
    let rewriter = {
        let local = local.clone();
        std::thread::spawn(move || {
            if rewrite_rx.recv().is_ok() {
                rewrite_in_place(&local, &new);
                let _ = done_tx.send(());
            }
        })
    };
    let result = task::block_on(async {
        let mut client = Client::connect(&addr.to_string(), 7005).await.unwrap();
        client
            .send_file(&local, "up.bin", SendOptions::default())
            .await
    });
    let trailer = server.join().unwrap();
    rewriter.join().unwrap();
    assert!(
        !trailer,
        "the client vouched for a torn body with a trailer hash"
    );
    let err = result.expect_err("a file changed while it was sent cannot succeed");
    assert!(err.to_string().contains("changed"), "{err}");
}

#[test]
fn sft_send_of_a_file_being_rewritten_stores_one_version_or_nothing() {
    let server = TestServer::start();
    let cwd = tempfile::tempdir().unwrap();
    let local = cwd.path().join("up.bin");
    let versions = [random_bytes(BIG, 7), random_bytes(BIG, 8)];
    fs::write(&local, &versions[0]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rewriter = {
        let (stop, local, versions) = (stop.clone(), local.clone(), versions.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                rewrite_in_place(&local, &versions[i % 2]);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failures = 0;
    for _ in 0..6 {
        let out = sft(
            &["send", "--overwrite", &server.server_arg(), "up.bin"],
            cwd.path(),
        );
        if out.status.success() {
            let stored = fs::read(server.path("up.bin")).unwrap();
            assert!(
                stored == versions[0] || stored == versions[1],
                "sft send exited 0 and the server stored a file that is neither version"
            );
        } else {
            failures += 1;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    rewriter.join().unwrap();
    assert!(
        failures > 0,
        "every upload of a file being rewritten succeeded"
    );
}
