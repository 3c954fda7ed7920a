//! The client library's pipelined uploads (`send_files`), times and modes, and its rate limit,
//! against real servers (or a scripted one, for what the server does not send yet).

use async_std::task;
use sft_client::{Client, Error, GetOptions, SendOptions, Upload};
use sft_integration_tests::{random_bytes, sft, TestServer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, UNIX_EPOCH};

#[test]
fn send_files_pipelines_small_files_and_reports_every_outcome_in_order() {
    let server = TestServer::start();
    std::fs::write(server.path("exists.txt"), "old").unwrap();
    let src = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    let mut want = Vec::new();
    for i in 0..150 {
        let name = format!("f{i:03}.bin");
        // Every 40th file is larger than 1 MiB: it goes the normal way, between eager ones.
        let data = random_bytes(if i % 40 == 7 { (1 << 20) + 5 } else { 100 + i }, i as u64);
        std::fs::write(src.path().join(&name), &data).unwrap();
        jobs.push(Upload::named(&src.path().join(&name), format!("up/{name}")).unwrap());
        want.push((format!("up/{name}"), data));
    }
    // A refusal in the middle; its body must not be stored.
    std::fs::write(src.path().join("exists.txt"), "new!").unwrap();
    jobs.insert(
        75,
        Upload::named(&src.path().join("exists.txt"), "exists.txt".into()).unwrap(),
    );
    task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 0).await.unwrap();
        let mut seen = Vec::new();
        let left = client
            .send_files(&jobs, SendOptions::default(), |i, result| {
                seen.push(i);
                match (i, result) {
                    (75, Err(Error::Remote(e))) => assert_eq!(e.code.as_str(), "exists"),
                    (75, other) => panic!("exists.txt: {other:?}"),
                    (i, Ok(t)) => {
                        assert_eq!(t.size, jobs[i].size);
                        assert!(t.blake3.is_some());
                    }
                    (i, Err(e)) => panic!("{}: {e}", jobs[i].remote),
                }
            })
            .await;
        assert!(left.is_empty());
        assert_eq!(
            seen,
            (0..jobs.len()).collect::<Vec<_>>(),
            "in order, once each"
        );
        assert!(!client.is_broken());
        assert_eq!(client.stat("exists.txt").await.unwrap().size, 3);
    });
    for (remote, data) in want {
        assert_eq!(
            std::fs::read(server.path(&remote)).unwrap(),
            data,
            "{remote}"
        );
    }
    assert_eq!(std::fs::read(server.path("exists.txt")).unwrap(), b"old");
}

/// A scripted server: answers the first request line with `reply` (and gives the line back).
fn scripted(
    reply: &'static [u8],
    then: &'static [u8],
) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let thread = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (&conn).write_all(reply).unwrap();
        if !then.is_empty() {
            // An upload: its body (5 bytes) and trailer line, then the final reply.
            let mut body = [0u8; 5];
            reader.read_exact(&mut body).unwrap();
            let mut trailer = String::new();
            reader.read_line(&mut trailer).unwrap();
            (&conn).write_all(then).unwrap();
        }
        line
    });
    (addr, thread)
}

#[test]
fn a_download_takes_the_remote_files_time_and_asked_for_its_mode() {
    let reply = b"{\"ok\":true,\"size\":5,\"mtime\":1000000000,\"mode\":416}\nhello";
    for mode in [false, true] {
        let (addr, thread) = scripted(reply, b"");
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("f.txt");
        task::block_on(async {
            let mut client = Client::connect(&addr, 0).await.unwrap();
            let opts = GetOptions {
                verify: false,
                mode,
                ..GetOptions::default()
            };
            client.get_file("f.txt", &local, opts).await.unwrap();
        });
        thread.join().unwrap();
        let meta = std::fs::metadata(&local).unwrap();
        let mtime = meta.modified().unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(mtime.as_secs(), 1_000_000_000);
        let bits = meta.permissions().mode() & 0o777;
        if mode {
            assert_eq!(bits, 0o640);
        } else {
            assert_ne!(bits, 0o640, "the umask decides");
        }
    }
}

#[test]
fn an_upload_declares_the_local_files_time_and_asked_for_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f.txt");
    std::fs::write(&local, "hello").unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o604)).unwrap();
    let file = std::fs::File::options().write(true).open(&local).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(1_200_000_000))
        .unwrap();
    drop(file);
    for mode in [false, true] {
        let (addr, thread) = scripted(b"{\"ok\":true}\n", b"{\"ok\":true,\"size\":5}\n");
        task::block_on(async {
            let mut client = Client::connect(&addr, 0).await.unwrap();
            let opts = SendOptions {
                mode,
                ..SendOptions::default()
            };
            client.send_file(&local, "f.txt", opts).await.unwrap();
        });
        let line = thread.join().unwrap();
        let request: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(request["mtime"], 1_200_000_000, "{line}");
        match mode {
            true => assert_eq!(request["mode"], 0o604, "{line}"),
            false => assert!(request.get("mode").is_none(), "{line}"),
        }
    }
}

#[test]
fn limit_rate_slows_downloads_and_uploads_and_they_arrive_intact() {
    let server = TestServer::start();
    let data = random_bytes(2 << 20, 12);
    std::fs::write(server.path("two.bin"), &data).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let arg = server.server_arg();
    let started = Instant::now();
    let out = sft(&["get", "--limit-rate", "1M", &arg, "two.bin"], cwd.path());
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(cwd.path().join("two.bin")).unwrap(), data);
    assert!(
        took >= Duration::from_millis(1500),
        "a 2 MiB download at 1M took {took:?}"
    );
    let started = Instant::now();
    let out = sft(
        &["send", "--limit-rate", "1M", &arg, "two.bin", "back.bin"],
        cwd.path(),
    );
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(server.path("back.bin")).unwrap(), data);
    assert!(
        took >= Duration::from_millis(1500),
        "a 2 MiB upload at 1M took {took:?}"
    );
    let out = sft(
        &["get", "--limit-rate", "fast", &arg, "two.bin"],
        cwd.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed rate is a usage error"
    );
}
