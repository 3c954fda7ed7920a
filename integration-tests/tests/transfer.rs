//! Round trips through the client library against an in-process server, over real sockets.

use async_std::task;
use sft_client::{partial_path, Client, GetOptions, SendOptions};
use sft_integration_tests::{list_files, random_bytes, TestServer};

fn round_trip(server: &TestServer, name: &str, data: &[u8]) {
    let local_dir = tempfile::tempdir().unwrap();
    let src = local_dir.path().join("src.bin");
    std::fs::write(&src, data).unwrap();
    task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        let sent = client
            .send_file(&src, name, SendOptions::default())
            .await
            .unwrap();
        assert_eq!(sent.size, data.len() as u64);
        assert_eq!(sent.blake3, Some(blake3::hash(data).to_hex().to_string()));
        assert_eq!(
            std::fs::read(server.path(name)).unwrap(),
            data,
            "stored bytes of {name}"
        );

        let dst = local_dir.path().join("dst.bin");
        let got = client
            .get_file(name, &dst, GetOptions::default())
            .await
            .unwrap();
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(got.blake3, sent.blake3);
        assert_eq!(
            std::fs::read(&dst).unwrap(),
            data,
            "downloaded bytes of {name}"
        );
        assert!(!partial_path(&dst).exists());

        let mut mem = Vec::new();
        client.get(name, &mut mem).await.unwrap();
        assert_eq!(mem, data);
    });
}

#[test]
fn empty_text_binary_and_large_files_round_trip() {
    let server = TestServer::start();
    round_trip(&server, "empty", b"");
    round_trip(&server, "text.txt", b"hello, sft\nsecond line\n");
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    round_trip(&server, "binary.bin", &all_bytes);
    round_trip(&server, "big/50mib.bin", &random_bytes(50 << 20, 7));
    assert!(server.staging_files().is_empty());
}

#[test]
fn awkward_names_round_trip() {
    let server = TestServer::start();
    let names = [
        "with space.txt",
        "ünïcødé ✓ 日本語.txt",
        "-leading-dash",
        "dir with space/sub dir/file name.txt",
        "emoji 🚀/x",
        "name\twith\ttabs",
        "'quotes\" and \\backslash",
        &"long".repeat(60),
    ];
    for (i, name) in names.iter().enumerate() {
        round_trip(&server, name, format!("content {i}").as_bytes());
    }
}

#[test]
fn one_connection_carries_many_requests() {
    let server = TestServer::start();
    for i in 0..5 {
        std::fs::write(server.path(&format!("f{i}")), format!("file {i}")).unwrap();
    }
    task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        for round in 0..3 {
            for i in 0..5 {
                let mut out = Vec::new();
                client.get(&format!("f{i}"), &mut out).await.unwrap();
                assert_eq!(out, format!("file {i}").as_bytes());
            }
            let data = random_bytes(10_000, round);
            client
                .send(
                    &mut &data[..],
                    data.len() as u64,
                    &format!("up{round}"),
                    false,
                )
                .await
                .unwrap();
        }
        // An error reply leaves the connection usable.
        let err = client.get("missing", &mut Vec::new()).await.unwrap_err();
        assert_eq!(err.code(), Some(sft_protocol::ErrorCode::NotFound));
        let mut out = Vec::new();
        client.get("f0", &mut out).await.unwrap();
        assert_eq!(out, b"file 0");
    });
    // The client hung up: its session ends.
    server.wait_idle();
}

#[test]
fn overwrite_only_when_asked() {
    let server = TestServer::start();
    std::fs::write(server.path("keep.txt"), "original").unwrap();
    task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        let err = client
            .send(&mut &b"new"[..], 3, "keep.txt", false)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(sft_protocol::ErrorCode::Exists));
        assert_eq!(
            std::fs::read_to_string(server.path("keep.txt")).unwrap(),
            "original"
        );
        // The refusal came before the body, so the connection is still in step.
        client
            .send(&mut &b"new"[..], 3, "keep.txt", true)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(server.path("keep.txt")).unwrap(),
            "new"
        );
    });
}

#[test]
fn download_failure_keeps_the_existing_local_file() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("mine.txt");
    std::fs::write(&local, "precious").unwrap();
    task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        assert!(client
            .get_file("missing.txt", &local, GetOptions::default())
            .await
            .is_err());
    });
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "precious");
    assert_eq!(list_files(dir.path()), vec![local]);
}

#[test]
fn thirty_two_clients_at_once() {
    let server = TestServer::start();
    let shared = random_bytes(1 << 20, 99);
    std::fs::write(server.path("shared.bin"), &shared).unwrap();
    let addr = server.server_arg();
    task::block_on(async {
        let tasks: Vec<_> = (0..32u64)
            .map(|i| {
                let addr = addr.clone();
                let shared = shared.clone();
                task::spawn(async move {
                    let mut client = Client::connect(&addr, 7005).await.unwrap();
                    let mine = random_bytes(256 * 1024 + i as usize, i);
                    client
                        .send(
                            &mut &mine[..],
                            mine.len() as u64,
                            &format!("c{i}/mine.bin"),
                            false,
                        )
                        .await
                        .unwrap();
                    let mut got = Vec::new();
                    client.get("shared.bin", &mut got).await.unwrap();
                    assert!(got == shared, "client {i} got different shared bytes");
                    let mut back = Vec::new();
                    client
                        .get(&format!("c{i}/mine.bin"), &mut back)
                        .await
                        .unwrap();
                    assert!(back == mine, "client {i} got different own bytes");
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
    for i in 0..32u64 {
        let stored = std::fs::read(server.path(&format!("c{i}/mine.bin"))).unwrap();
        assert_eq!(stored, random_bytes(256 * 1024 + i as usize, i));
    }
    server.wait_idle();
    assert!(server.staging_files().is_empty());
}

#[test]
fn shutdown_stops_idle_sessions_and_returns() {
    let server = TestServer::start();
    let addr = server.server_arg();
    let client = task::block_on(Client::connect(&addr, 7005)).unwrap();
    sft_integration_tests::wait_until(std::time::Duration::from_secs(10), || {
        server.handle.session_count() == 1
    });
    server.stop().unwrap();
    drop(client);
    assert!(
        task::block_on(Client::connect(&addr, 7005)).is_err(),
        "no longer listening"
    );
}

#[test]
fn client_reports_refused_and_unresolvable_servers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = task::block_on(Client::connect(&format!("127.0.0.1:{port}"), 7005)).unwrap_err();
    assert_eq!(err.exit_code(), sft_client::ExitCode::Connect);
    assert!(err.to_string().contains("connection refused"), "{err}");
    let err = task::block_on(Client::connect("no-such-host.invalid", 7005)).unwrap_err();
    assert_eq!(err.exit_code(), sft_client::ExitCode::Connect);
}
