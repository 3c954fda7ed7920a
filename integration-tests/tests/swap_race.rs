//! LIST and STAT while a folder inside the root is swapped, again and again, for a symlink to a
//! folder outside it: no reply may ever show a name from outside.
//!
//! The swap is `renameat2(RENAME_EXCHANGE)` of the folder `d` and a prepared symlink `dl` that
//! points outside, so at every instant one of the two names is the real folder and the other the
//! symlink. A server that resolves the path safely but then re-opens it by its path string
//! follows the symlink in the window between the two steps.

use async_std::task;
use rustix::fs::{renameat_with, RenameFlags, CWD};
use serde_json::{json, Value};
use sft_integration_tests::{Raw, TestServer};
use std::fs;
use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long the requests race the swapper, all kinds together (each kind gets its share).
const RACE_FOR: Duration = Duration::from_secs(20);
/// Requests of each kind, at most (the race also stops after [`RACE_FOR`]).
const MAX_REQUESTS: u64 = 200_000;

/// Names that exist inside the root; anything else in a reply came from elsewhere.
const INSIDE: &[&str] = &["d", "dl", "inner.txt", "sub", "deep.txt", "keep.txt"];

/// Swaps `d` and `dl` in a loop until dropped.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Swapper {
    fn start(server: &TestServer) -> Swapper {
        let (d, dl) = (server.path("d"), server.path("dl"));
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let (s, n) = (Arc::clone(&stop), Arc::clone(&swaps));
        let thread = thread::spawn(move || {
            // Bounded by itself too, should the test never stop it.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                renameat_with(CWD, &d, CWD, &dl, RenameFlags::EXCHANGE).expect("exchange");
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a LIST reply to its end; returns the entries' names (empty for an error reply).
async fn list(raw: &mut Raw, request: &Value) -> Vec<String> {
    raw.write(format!("{request}\n").as_bytes()).await;
    let header = raw.reply().await;
    let mut names = Vec::new();
    if header["ok"] != true {
        return names;
    }
    loop {
        let line = raw.reply().await;
        if line.get("end").is_some() || line.get("ok").is_some() {
            return names;
        }
        names.push(line["name"].as_str().expect("a name").to_owned());
    }
}

fn assert_inside(names: &[String], sentinel: &str, what: &str) {
    for name in names {
        assert!(
            !name.contains(sentinel),
            "{what} showed the file outside the root: {name}"
        );
        for part in name.split('/') {
            assert!(
                INSIDE.contains(&part),
                "{what} showed a name from outside the root: {name}"
            );
        }
    }
}

#[test]
fn list_and_stat_never_show_a_name_from_outside_during_a_swap_race() {
    let server = TestServer::start();
    let outside = tempfile::tempdir().unwrap();
    let sentinel = format!("sentinel-{}-outside", std::process::id());
    fs::write(outside.path().join(&sentinel), "outside").unwrap();
    fs::create_dir(outside.path().join("outside-folder")).unwrap();
    fs::write(outside.path().join("outside-folder/outside-file"), "x").unwrap();
    // A namesake of a file inside, of another size: STAT must never describe this one.
    fs::write(outside.path().join("inner.txt"), "outside bytes").unwrap();
    fs::create_dir_all(server.path("d/sub")).unwrap();
    fs::write(server.path("d/inner.txt"), "in").unwrap();
    fs::write(server.path("d/sub/deep.txt"), "deep").unwrap();
    fs::write(server.path("keep.txt"), "keep").unwrap();
    symlink(outside.path(), server.path("dl")).unwrap();

    let swapper = Swapper::start(&server);
    let kinds = [
        ("LIST d", json!({"verb": "LIST", "path": "d"})),
        (
            "LIST -r",
            json!({"verb": "LIST", "path": "", "recursive": true}),
        ),
        (
            "LIST -r d",
            json!({"verb": "LIST", "path": "d", "recursive": true}),
        ),
        (
            "STAT d/sentinel",
            json!({"verb": "STAT", "path": format!("d/{sentinel}"), "hash": false}),
        ),
        (
            "STAT d/inner.txt",
            json!({"verb": "STAT", "path": "d/inner.txt", "hash": false}),
        ),
    ];
    let mut answered = Vec::new();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (what, request) in &kinds {
            let deadline = Instant::now() + RACE_FOR / kinds.len() as u32;
            let mut n = 0;
            while n < MAX_REQUESTS && Instant::now() < deadline {
                n += 1;
                if request["verb"] == "STAT" {
                    raw.write(format!("{request}\n").as_bytes()).await;
                    let reply = raw.reply().await;
                    // Inside, only d/inner.txt exists, and it holds 2 bytes.
                    if reply["ok"] == true {
                        assert_eq!(
                            reply["entry"]["size"], 2,
                            "{what} described a file outside the root (try {n}): {reply}"
                        );
                    }
                } else {
                    let names = list(&mut raw, request).await;
                    assert_inside(&names, &sentinel, &format!("{what} (try {n})"));
                }
            }
            answered.push((*what, n));
        }
    });
    let swaps = swapper.swaps.load(Ordering::Relaxed);
    drop(swapper);
    assert!(swaps > 1000, "the race ran ({swaps} swaps)");
    for (what, n) in answered {
        eprintln!("{what}: {n} requests answered while {swaps} swaps ran");
        assert!(n > 100, "{what}: only {n} requests answered");
    }
}
