//! The default listener answers over IPv4 and IPv6 alike.

use async_std::task;
use sft_integration_tests::{Raw, ServerProcess};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

async fn hello(addr: SocketAddr) -> serde_json::Value {
    let mut raw = Raw::connect(addr).await;
    raw.write(b"{\"verb\":\"HELLO\"}\n").await;
    raw.reply().await
}

#[test]
fn the_default_server_answers_over_127_0_0_1_and_over_ipv6_loopback() {
    if TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback (::1)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &[]);
    let listening = server.logs_with("listening");
    assert_eq!(
        listening[0]["addr"].as_str().unwrap(),
        format!("[::]:{}", server.addr.port())
    );
    let port = server.addr.port();
    task::block_on(async {
        let v4 = hello(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await;
        assert_eq!(v4["ok"], true, "{v4}");
        let v6 = hello(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await;
        assert_eq!(v6["ok"], true, "{v6}");
    });
}

#[test]
fn an_explicit_host_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(root.path(), &["--host", "127.0.0.1"]);
    assert_eq!(server.addr.ip(), Ipv4Addr::LOCALHOST);
    task::block_on(async {
        assert_eq!(hello(server.addr).await["ok"], true);
    });
}
