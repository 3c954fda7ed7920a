//! The client gives up on a server that stops answering (`--timeout`), instead of hanging.

use sft_integration_tests::sft;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// A server on 127.0.0.1 that reads the request line, sends `reply`, then holds the connection
/// open without a word until told to stop.
fn silent_server(reply: Vec<u8>) -> (String, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut byte = [0u8; 1];
        while conn
            .read(&mut byte)
            .map(|n| n == 1 && byte[0] != b'\n')
            .unwrap_or(false)
        {}
        let _ = conn.write_all(&reply);
        let _ = stopped.recv_timeout(Duration::from_secs(60));
    });
    (addr, stop, thread)
}

#[test]
fn a_server_that_never_answers_times_out() {
    let (addr, stop, thread) = silent_server(Vec::new());
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", "--timeout", "1", &addr, "f.bin"], cwd.path());
    let _ = stop.send(());
    thread.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing moved for 1 s"));
}

#[test]
fn a_download_that_stalls_times_out_and_keeps_what_arrived() {
    let mut reply = b"{\"ok\":true,\"size\":100000}\n".to_vec();
    reply.extend_from_slice(&[7u8; 500]);
    let (addr, stop, thread) = silent_server(reply);
    let cwd = tempfile::tempdir().unwrap();
    let out = sft(&["get", "--timeout", "1", &addr, "f.bin"], cwd.path());
    let _ = stop.send(());
    thread.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!cwd.path().join("f.bin").exists());
    assert_eq!(
        std::fs::read(cwd.path().join(".f.bin.sft-part")).unwrap(),
        vec![7u8; 500]
    );
}
