//! The window of pipelined downloads of `sft get -r`, seen from the server's side of the wire:
//! a scripted server that sends nothing until the client has sent what the window promises, so
//! a client that waited (for the whole listing, or for half its window to be answered) never
//! gets its next reply and fails on the read timeout, never on a race.

use sft_integration_tests::bin;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Files listed.
const FILES: usize = 6;
/// Each file's size: four of them fill the client's window of 8 MiB of listed bytes.
const SIZE: usize = 2 << 20;
/// Downloads the window holds.
const WINDOW: usize = 4;

/// Reads the next request line and returns its JSON.
fn request(r: &mut BufReader<TcpStream>) -> serde_json::Value {
    let mut line = String::new();
    r.read_line(&mut line)
        .expect("a request line (none came: the client is waiting too)");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Reads the next request, which must be the GET of file `n`.
fn get(r: &mut BufReader<TcpStream>, n: usize) {
    let req = request(r);
    assert_eq!(req["verb"], "GET", "{req}");
    assert_eq!(req["path"], format!("dir/f{n}"), "{req}");
}

#[test]
fn downloads_start_during_the_listing_and_one_goes_out_per_reply() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let out = tempfile::tempdir().unwrap();
    let client = Command::new(bin("sft"))
        .args(["get", "-q", "-r", "--no-verify", &addr, "dir", "copy"])
        .current_dir(out.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);

    // The first request is the LIST itself: no STAT before it.
    let list = request(&mut r);
    assert_eq!(list["verb"], "LIST", "{list}");
    assert_eq!(list["path"], "dir", "{list}");
    w.write_all(b"{\"ok\":true,\"stream\":\"lines\",\"path\":\"dir\"}\n")
        .unwrap();
    for n in 0..FILES {
        let entry = format!(
            "{{\"name\":\"f{n}\",\"kind\":\"file\",\"size\":{SIZE},\"mtime\":1700000000}}\n"
        );
        w.write_all(entry.as_bytes()).unwrap();
    }
    w.flush().unwrap();
    // The listing has not ended, and the window's downloads are requested already.
    for n in 0..WINDOW {
        get(&mut r, n);
    }
    w.write_all(b"{\"end\":true,\"count\":6}\n").unwrap();

    let body = vec![b'x'; SIZE];
    for n in 0..FILES {
        let reply = format!("{{\"ok\":true,\"size\":{SIZE},\"mtime\":1700000000}}\n");
        w.write_all(reply.as_bytes()).unwrap();
        w.write_all(&body).unwrap();
        w.flush().unwrap();
        // Each reply read makes room for one more request, sent before the next reply is
        // needed: nothing more is sent until it is here.
        if n + WINDOW < FILES {
            get(&mut r, n + WINDOW);
        }
    }
    let done = client.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    for n in 0..FILES {
        let got = std::fs::read(out.path().join(format!("copy/f{n}"))).unwrap();
        assert!(got == body, "copy/f{n} differs");
    }
}
