//! File descriptors: listings that are never read hold a bounded number of folders whatever the
//! tree's depth, honest clients are served beside them, and a server out of descriptors still
//! tells a new connection `busy` at once.

use async_std::future::timeout;
use async_std::task;
use sft_integration_tests::{expect_code, sft, wait_until, Raw, ServerProcess};
use sft_server::fdlimit::FDS_PER_CONNECTION;
use std::path::Path;
use std::time::Duration;

/// How long a reply that should come at once may take before the test fails (a server that
/// cannot accept would answer only once a stall timeout frees descriptors, a minute later).
const AT_ONCE: Duration = Duration::from_secs(5);

/// Descriptors `pid` has open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `deep/`, 30 levels of folders with long names, and at the bottom enough files with long
/// names that a listing of it fills the socket buffers of a client that does not read
/// (its lines are over 3 KiB: the whole path).
fn deep_tree(root: &Path) {
    let mut dir = root.join("deep");
    for level in 0..30 {
        dir.push(format!("{level:02}{}", "d".repeat(98)));
    }
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..3000 {
        std::fs::write(dir.join(format!("{i:04}{}", "f".repeat(96))), b"").unwrap();
    }
}

#[test]
fn listings_never_read_hold_few_descriptors_and_honest_clients_are_served() {
    let root = tempfile::tempdir().unwrap();
    deep_tree(root.path());
    std::fs::write(root.path().join("small.txt"), "small\n").unwrap();
    let server = ServerProcess::start_in_shell(root.path(), &[], Some("ulimit -n 1024"));
    let pid = server.child.id();
    let before = open_fds(pid);
    let stalled = task::block_on(async {
        let mut stalled = Vec::new();
        for _ in 0..60 {
            let mut raw = Raw::connect(server.addr).await;
            raw.write(b"{\"verb\":\"LIST\",\"path\":\"deep\",\"recursive\":true}\n")
                .await;
            stalled.push(raw);
        }
        stalled
    });
    // Each walk reaches the bottom and stops there, its client not reading: a socket and the
    // walk's open folders each.
    wait_until(Duration::from_secs(20), || open_fds(pid) >= before + 60 * 5);
    let held = open_fds(pid) - before;
    assert!(
        held <= 60 * FDS_PER_CONNECTION as usize,
        "{held} descriptors for 60 listings"
    );

    let cwd = tempfile::tempdir().unwrap();
    let addr = server.addr.to_string();
    let out = sft(&["ls", "--timeout", "5", &addr], cwd.path());
    expect_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("small.txt"));
    let out = sft(&["get", "--timeout", "5", &addr, "small.txt"], cwd.path());
    expect_code(&out, 0);
    assert_eq!(
        std::fs::read(cwd.path().join("small.txt")).unwrap(),
        b"small\n"
    );
    // The listings were held all along (the honest clients did not wait for them to end).
    assert!(open_fds(pid) >= before + 60 * 5);
    drop(stalled);
}

#[test]
fn a_server_out_of_descriptors_tells_new_connections_busy_at_once() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in_shell(root.path(), &[], Some("ulimit -n 1024"));
    let pid = server.child.id();
    // Room for five more descriptors, while it thinks it may serve many more connections.
    let limit = rustix::process::Rlimit {
        current: Some((open_fds(pid) + 5) as u64),
        maximum: Some(1024),
    };
    let target = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::prlimit(Some(target), rustix::process::Resource::Nofile, limit)
        .expect("lower the server's descriptor limit");
    let hello = b"{\"verb\":\"HELLO\"}\n";
    let (served, busy) = task::block_on(async {
        let (mut served, mut busy) = (Vec::new(), 0);
        for _ in 0..12 {
            let mut raw = Raw::connect(server.addr).await;
            raw.write(hello).await;
            let reply = timeout(AT_ONCE, raw.reply())
                .await
                .expect("answered at once");
            if reply["ok"] == true {
                assert_eq!(busy, 0, "served after a busy one: {reply}");
                served.push(raw);
            } else {
                assert_eq!(reply["code"], "busy", "{reply}");
                let message = reply["message"].as_str().unwrap();
                assert!(message.contains("out of file descriptors"), "{message}");
                busy += 1;
            }
        }
        (served, busy)
    });
    assert!(
        !served.is_empty() && busy > 0,
        "{} served, {busy} busy",
        served.len()
    );
    // Once sessions end, new connections are served again.
    drop(served);
    let busy_after = task::block_on(async {
        let (mut again, mut busy_after) = (false, 0);
        // Polled, like `wait_until`: nothing tells when the sessions' tasks have closed.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let mut raw = Raw::connect(server.addr).await;
            raw.write(hello).await;
            let reply = timeout(AT_ONCE, raw.reply())
                .await
                .expect("answered at once");
            if reply["ok"] == true {
                again = true;
                break;
            }
            // Refused again until the sessions' tasks see the close and free their
            // descriptors: each such refusal is logged too.
            assert_eq!(reply["code"], "busy", "{reply}");
            busy_after += 1;
            task::sleep(Duration::from_millis(5)).await;
        }
        assert!(again, "served again");
        busy_after
    });
    // Each refusal is logged once: the log lines come through the server's standard error,
    // read by another thread, so they are awaited (and then no more may come).
    let logged = || {
        server
            .logs_with("connection refused: busy (out of file descriptors)")
            .len()
    };
    wait_until(Duration::from_secs(10), || logged() >= busy + busy_after);
    assert_eq!(logged(), busy + busy_after);
}
