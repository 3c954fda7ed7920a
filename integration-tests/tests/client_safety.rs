//! The client's own safety: it never writes through a planted symlink, never sends a file other
//! than the one it walked, gives up connecting within `--timeout`, never lets a server's names
//! drive the terminal, and keeps memory bounded whatever a listing holds.

use sft_integration_tests::bin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A listening socket on 127.0.0.1 whose accept queue is full and never drained: the kernel
/// drops further SYNs, so a connection attempt to it never gets an answer.
fn unanswering_port() -> (rustix::fd::OwnedFd, std::net::TcpStream, u16) {
    use rustix::net::{AddressFamily, SocketType};
    let listener = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    rustix::net::bind(&listener, &any).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    let port = std::net::SocketAddrV4::try_from(rustix::net::getsockname(&listener).unwrap())
        .unwrap()
        .port();
    // A backlog of 0 holds one connection: this one fills it.
    let filler = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(5),
    )
    .unwrap();
    (listener, filler, port)
}

#[test]
fn timeout_bounds_connecting() {
    let (_listener, _filler, port) = unanswering_port();
    let cwd = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(bin("sft"))
        .args(["ls", "--timeout", "2", &format!("127.0.0.1:{port}")])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");
}
