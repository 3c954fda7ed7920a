//! Several sft-servers over one root, behind HAProxy configured as DEPLOY.md says: the very
//! `deploy/haproxy.cfg`, with only its addresses and ports replaced. Connections spread over the
//! servers, each sees what the others change, concurrent uploads of one path through different
//! servers leave one whole input, an upload cut on one server resumes on another, and a server
//! killed mid-upload is taken out by the health check, the upload going on elsewhere and no
//! client failing after it; on GlusterFS, a server whose mount hangs is taken out by the health
//! check too (its HELLO says `unavailable`) and put back once the mount answers, no client
//! failing meanwhile.
//!
//! Each runs twice: over one local folder (`BODY::local`), and over a GlusterFS replica-2
//! volume with the servers on its two FUSE mounts in turn (`BODY::gluster`; see
//! `sft_integration_tests::gluster`). HAProxy is a Debian package (`apt-get install haproxy`):
//! where it or GlusterFS is not installed, the tests that need it say so and pass without
//! running (`SFT_TEST_HAPROXY` names the program to use instead, or with an empty value none).
//! Those of what a server keeps on the shared root — staging files, partial uploads — while
//! another starts or works beside it need no balancer.

use async_std::task;
use sft_client::{Client, SendOptions};
use sft_integration_tests::cluster::{Cluster, Shared, Storage, HAPROXY_CFG, SERVERS};
use sft_integration_tests::{list_files, random_bytes, wait_until, Raw, ServerProcess};
use sft_protocol::verbs::ListHash;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The systemd unit DEPLOY.md shows.
const SERVICE_UNIT: &str = include_str!("../../deploy/sft-server.service");
const DEPLOY_MD: &str = include_str!("../../DEPLOY.md");
const LIMIT: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

/// Runs each test body on both storages, as `BODY::local` and `BODY::gluster`.
macro_rules! on_both_storages {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[test]
            fn local() {
                super::$body(super::Storage::Local)
            }
            #[test]
            fn gluster() {
                super::$body(super::Storage::Gluster)
            }
        }
    )*};
}

on_both_storages!(
    connections_spread_over_the_servers_and_each_sees_what_the_others_change,
    concurrent_sends_of_one_path_through_different_servers_leave_one_whole_input,
    an_upload_cut_on_one_server_resumes_on_another_from_what_it_holds,
    a_server_killed_mid_upload_is_taken_out_and_the_upload_resumes_on_another,
    a_server_starting_leaves_the_uploads_of_running_ones_alone,
    a_partial_one_server_is_writing_is_left_alone_by_the_others,
    concurrent_uploads_of_a_new_path_through_two_servers_publish_a_new_files_mode,
    a_server_killed_mid_upload_and_restarted_resumes_it_from_its_partial,
);

#[test]
fn deploy_md_shows_the_configuration_files_as_they_are() {
    for (name, text) in [
        ("deploy/haproxy.cfg", HAPROXY_CFG),
        ("deploy/sft-server.service", SERVICE_UNIT),
    ] {
        assert!(
            DEPLOY_MD.contains(&format!("\n```\n{text}```\n")),
            "DEPLOY.md must show {name} verbatim, in a code block of its own"
        );
    }
}

/// How many `verb` requests `server` answered.
fn served(server: &ServerProcess, verb: &str) -> usize {
    server
        .logs_with("request")
        .iter()
        .filter(|r| r["verb"] == verb)
        .count()
}

async fn connect(addr: &str) -> Client {
    Client::connect(addr, 7005).await.expect("connect")
}

/// The hash `server` has cached for `path` (a `LIST` of what is cached: it reads no file).
async fn cached_hash(server: &ServerProcess, path: &str) -> Option<String> {
    let mut client = connect(&server.addr.to_string()).await;
    let mut listing = client.list_with("", false, ListHash::Cached).await.unwrap();
    let mut found = None;
    while let Some(entry) = listing.next().await.unwrap() {
        if entry.name == path {
            found = entry.blake3;
        }
    }
    found
}

/// GETs `path` through the balancer `times` times, each on a connection of its own, and checks
/// every copy against `want`; a failed GET fails the test with `what`.
fn get_through_balancer(c: &Cluster, path: &str, times: usize, want: &[u8], what: &str) {
    task::block_on(async {
        for _ in 0..times {
            let mut got = Vec::new();
            connect(&c.addr())
                .await
                .get(path, &mut got)
                .await
                .expect(what);
            assert!(got == want, "{path} arrived changed");
        }
    });
}

fn connections_spread_over_the_servers_and_each_sees_what_the_others_change(storage: Storage) {
    let Some(c) = Cluster::start("connections_spread", storage) else {
        return;
    };
    let old = random_bytes(MIB, 1);
    std::fs::write(c.path("f.bin"), &old).unwrap();
    get_through_balancer(&c, "f.bin", 3 * SERVERS, &old, "a GET through HAProxy");
    for (n, server) in c.servers.iter().enumerate() {
        assert!(
            served(server, "GET") > 0,
            "server {} served no GET: {}",
            n + 1,
            c.balancer.output()
        );
    }

    // The first server caches the file's hash…
    let first = &c.servers[0];
    let old_hash = blake3::hash(&old).to_hex().to_string();
    task::block_on(async {
        let deadline = Instant::now() + LIMIT;
        loop {
            let entry = connect(&first.addr.to_string())
                .await
                .stat("f.bin")
                .await
                .unwrap();
            assert_eq!(entry.blake3.as_deref(), Some(old_hash.as_str()));
            // (A file written a moment ago is not cached yet: its times could hide a write.)
            if cached_hash(first, "f.bin").await.as_deref() == Some(old_hash.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "the hash was never cached");
            task::sleep(Duration::from_millis(20)).await;
        }
        // …another server replaces the file (same size, other bytes)…
        let new = random_bytes(MIB, 2);
        let mut second = connect(&c.servers[1].addr.to_string()).await;
        second
            .send(&mut &new[..], new.len() as u64, "f.bin", true)
            .await
            .unwrap();
        // …and the first one serves the new file and its hash, never the cached one.
        let new_hash = blake3::hash(&new).to_hex().to_string();
        let cached = cached_hash(first, "f.bin").await;
        assert!(cached.is_none() || cached.as_deref() == Some(new_hash.as_str()));
        let mut client = connect(&first.addr.to_string()).await;
        assert_eq!(
            client.stat("f.bin").await.unwrap().blake3.as_deref(),
            Some(new_hash.as_str())
        );
        let mut got = Vec::new();
        client.get("f.bin", &mut got).await.unwrap();
        assert!(got == new);
    });
}

fn concurrent_sends_of_one_path_through_different_servers_leave_one_whole_input(storage: Storage) {
    let Some(c) = Cluster::start("concurrent_sends", storage) else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let inputs: Vec<Vec<u8>> = (0..2 * SERVERS as u64)
        .map(|i| random_bytes(2 * MIB, 10 + i))
        .collect();
    for (i, input) in inputs.iter().enumerate() {
        std::fs::write(local.path().join(format!("in{i}")), input).unwrap();
    }

    // With overwrite, verified (each through a partial of its own): all succeed, two through
    // each server, and the file is exactly one of the inputs. A sender that finds another's
    // file already there goes by delta, and one whose basis is replaced meanwhile sends whole.
    let children: Vec<Child> = (0..inputs.len())
        .map(|i| {
            let server = c.servers[i % SERVERS].addr.to_string();
            Command::new(sft_integration_tests::bin("sft"))
                .args([
                    "send",
                    "-q",
                    "--overwrite",
                    &server,
                    &format!("in{i}"),
                    "same.bin",
                ])
                .current_dir(local.path())
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run sft send")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stored = std::fs::read(c.path("same.bin")).unwrap();
    assert!(inputs.contains(&stored), "the file is exactly one input");

    // Without overwrite: exactly one wins, every other gets `exists`.
    let results = task::block_on(futures::future::join_all((0..inputs.len()).map(|i| {
        let server = c.servers[i % SERVERS].addr.to_string();
        let local = local.path().join(format!("in{i}"));
        task::spawn(async move {
            let opts = SendOptions::default();
            connect(&server)
                .await
                .send_file(&local, "once.bin", opts)
                .await
        })
    })));
    let won: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.code(), Some(sft_protocol::ErrorCode::Exists), "{e}");
    }
    assert!(std::fs::read(c.path("once.bin")).unwrap() == inputs[won[0]]);

    // Nothing else under a final name, nothing left behind.
    let mut names = sft_integration_tests::names(c.shared.root(0));
    names.retain(|n| n != ".sft");
    assert_eq!(names, ["once.bin", "same.bin"]);
    assert_eq!(c.leftovers(), Vec::<PathBuf>::new());
}

fn an_upload_cut_on_one_server_resumes_on_another_from_what_it_holds(storage: Storage) {
    let Some(c) = Cluster::start("upload_cut", storage) else {
        return;
    };
    let data = random_bytes(4 * MIB, 3);
    let hash = blake3::hash(&data).to_hex().to_string();
    let header = |resume: bool| {
        let h = serde_json::json!({"verb": "SEND", "path": "up.bin", "size": data.len(),
            "trailer": true, "upload_id": "ab".repeat(16), "resume": resume});
        h.to_string() + "\n"
    };
    let (first, second) = (&c.servers[0], &c.servers[1]);
    task::block_on(async {
        let mut raw = Raw::connect(first.addr).await;
        raw.write(header(false).as_bytes()).await;
        assert_eq!(raw.reply().await, serde_json::json!({"ok": true}));
        raw.write(&data[..MIB]).await;
        // Cut off.
    });
    // The first server noticed, and kept what arrived.
    wait_until(LIMIT, || served(first, "SEND") == 1);
    task::block_on(async {
        let mut raw = Raw::connect(second.addr).await;
        raw.write(header(true).as_bytes()).await;
        assert_eq!(
            raw.reply().await,
            serde_json::json!({"ok": true, "offset": MIB}),
            "the second server continues from the first one's partial"
        );
        raw.write(&data[MIB..]).await;
        raw.write(format!("{{\"blake3\":\"{hash}\"}}\n").as_bytes())
            .await;
        assert_eq!(raw.reply().await["blake3"], hash.as_str());
    });
    assert!(std::fs::read(c.path("up.bin")).unwrap() == data);
    assert_eq!(c.leftovers(), Vec::<PathBuf>::new());
}

fn a_server_killed_mid_upload_is_taken_out_and_the_upload_resumes_on_another(storage: Storage) {
    let Some(mut c) = Cluster::start("server_killed", storage) else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(16 * MIB, 4);
    std::fs::write(local.path().join("big.bin"), &data).unwrap();
    // Slow enough to be cut in the middle.
    let upload = Command::new(sft_integration_tests::bin("sft"))
        .args(["send", "--json", "--retries", "5", "--limit-rate", "4M"])
        .args([&c.addr(), "big.bin", "big.bin"])
        .current_dir(local.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sft send");

    // Once the server receiving it holds a good part of it, it is killed.
    let partials = c.path(".sft/partial");
    wait_until(LIMIT, || {
        list_files(&partials)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= MIB as u64))
    });
    let mut receiving = Vec::new();
    wait_until(LIMIT, || {
        receiving = c
            .balancer
            .sessions()
            .into_iter()
            .filter(|s| s.1 > 0)
            .collect();
        receiving.len() == 1
    });
    let name = receiving[0].0.clone();
    let killed: usize = name["sft".len()..].parse::<usize>().unwrap() - 1;
    c.servers[killed].signal("KILL");
    c.servers[killed].wait_exit(LIMIT);

    // The upload reconnects through HAProxy, to another server, which continues it.
    let out = upload.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", c.balancer.output());
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON line");
    let resumed = line["resumed_from"].as_u64().unwrap();
    assert!(
        resumed >= MIB as u64 && resumed < data.len() as u64,
        "resumed from {resumed}: {line}"
    );
    assert!(line["attempts"].as_u64() >= Some(2), "{line}");
    assert!(std::fs::read(c.path("big.bin")).unwrap() == data);

    // The health check takes the killed server out; from then on no client fails.
    let deadline = Instant::now() + LIMIT;
    while c.balancer.try_states().get(&name).map(|s| s.op) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "{name} not marked down within {LIMIT:?}: {}",
            c.balancer.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before: usize = c.servers.iter().map(|s| served(s, "GET")).sum();
    get_through_balancer(
        &c,
        "big.bin",
        4 * SERVERS,
        &data,
        "no client error once the server is marked down",
    );
    let after: usize = c.servers.iter().map(|s| served(s, "GET")).sum();
    assert_eq!(
        after - before,
        4 * SERVERS,
        "every GET was served by a live server"
    );
    assert_eq!(list_files(&partials), Vec::<PathBuf>::new());
}

/// A blocking connection to `addr` that sent the header line `header` and got its go-ahead.
fn begin_upload(addr: SocketAddr, header: &str) -> (std::net::TcpStream, serde_json::Value) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(header.as_bytes()).unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply["ok"], true, "go-ahead: {reply}");
    (stream, reply)
}

/// Reads one reply line, byte by byte (nothing after it is consumed).
fn read_reply(stream: &mut std::net::TcpStream) -> serde_json::Value {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.last() != Some(&b'\n') {
        stream.read_exact(&mut byte).expect("a reply line");
        line.push(byte[0]);
    }
    serde_json::from_slice(&line).expect("a JSON reply")
}

/// Waits until a file in `dir` (or below) holds at least `len` bytes.
fn wait_for_file(dir: &Path, len: u64) {
    wait_until(LIMIT, || {
        list_files(dir)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= len))
    });
}

fn a_server_starting_leaves_the_uploads_of_running_ones_alone(storage: Storage) {
    let Some(shared) = Shared::new("server_starting", storage) else {
        return;
    };
    let root = shared.root(0);
    let first = shared.start_server(0, &[]);
    let data = random_bytes(2 * MIB, 5);
    let header = format!(
        "{{\"verb\":\"SEND\",\"path\":\"plain.bin\",\"size\":{}}}\n",
        data.len()
    );
    let (mut upload, _) = begin_upload(first.addr, &header);
    upload.write_all(&data[..MIB]).unwrap();
    wait_for_file(&root.join(".sft/tmp"), 256 * 1024);
    // What a server that crashed left: its folder (without a lock), a file of the old layout.
    std::fs::create_dir(root.join(".sft/tmp/gone")).unwrap();
    std::fs::write(root.join(".sft/tmp/gone/x"), b"debris").unwrap();
    std::fs::write(root.join(".sft/tmp/123-0.part"), b"debris").unwrap();

    // Another server starts over the same root (cleaning up at start-up)…
    let second = shared.start_server(1, &[]);
    assert!(!root.join(".sft/tmp/gone").exists());
    assert!(!root.join(".sft/tmp/123-0.part").exists());
    // …and the first one's upload still completes.
    upload.write_all(&data[MIB..]).unwrap();
    let reply = read_reply(&mut upload);
    assert_eq!(reply["size"], data.len(), "{reply}");
    assert!(std::fs::read(root.join("plain.bin")).unwrap() == data);
    drop((first, second));
}

fn a_partial_one_server_is_writing_is_left_alone_by_the_others(storage: Storage) {
    let Some(shared) = Shared::new("partial_left_alone", storage) else {
        return;
    };
    let root = shared.root(0);
    let first = shared.start_server(0, &[]);
    let data = random_bytes(4 * MIB, 6);
    let hash = blake3::hash(&data).to_hex().to_string();
    let header = |resume: bool| {
        let h = serde_json::json!({"verb": "SEND", "path": "up.bin", "size": data.len(),
            "trailer": true, "upload_id": "cd".repeat(16), "resume": resume, "overwrite": true});
        h.to_string() + "\n"
    };
    let (mut upload, _) = begin_upload(first.addr, &header(false));
    upload.write_all(&data[..MIB]).unwrap();
    let partials = root.join(".sft/partial");
    wait_for_file(&partials, 256 * 1024);
    let writing = list_files(&partials);

    // A server that starts with a cap of no partials at all leaves it alone…
    let second = shared.start_server(1, &["--max-partials", "0"]);
    assert_eq!(list_files(&partials), writing);
    // …and receives the same upload on its own, from the start, without touching it.
    let (mut again, ready) = begin_upload(second.addr, &header(true));
    assert_eq!(ready, serde_json::json!({"ok": true}), "not resumed");
    again.write_all(&data).unwrap();
    again
        .write_all(format!("{{\"blake3\":\"{hash}\"}}\n").as_bytes())
        .unwrap();
    let reply = read_reply(&mut again);
    assert_eq!(reply["blake3"], hash.as_str(), "{reply}");
    assert_eq!(list_files(&partials), writing);

    // The first upload completes too, intact.
    upload.write_all(&data[MIB..]).unwrap();
    upload
        .write_all(format!("{{\"blake3\":\"{hash}\"}}\n").as_bytes())
        .unwrap();
    let reply = read_reply(&mut upload);
    assert_eq!(reply["blake3"], hash.as_str(), "{reply}");
    assert!(std::fs::read(root.join("up.bin")).unwrap() == data);
    assert_eq!(list_files(&partials), Vec::<PathBuf>::new());
    drop((first, second));
}

/// Concurrent uploads of one new path through two servers, each on its own mount, round after
/// round: every round publishes one whole input, and the file has a new file's bits as both
/// mounts show them — never a partial's `0600`, whatever either server had cached. Rounds
/// alternate between uploads small enough to be stored in one step and larger ones received
/// into a partial.
fn concurrent_uploads_of_a_new_path_through_two_servers_publish_a_new_files_mode(storage: Storage) {
    use std::os::unix::fs::PermissionsExt;
    const ROUNDS: usize = 16;
    let Some(shared) = Shared::new("new_files_mode", storage) else {
        return;
    };
    let servers = [shared.start_server(0, &[]), shared.start_server(1, &[])];
    let local = tempfile::tempdir().unwrap();
    let want = sft_commands::attributes::new_file_mode();
    for round in 0..ROUNDS {
        let size = if round % 2 == 0 { 4096 } else { 3 * MIB / 2 };
        let name = format!("new{round}.bin");
        let inputs: Vec<Vec<u8>> = (0..2)
            .map(|i| random_bytes(size, (100 + 2 * round + i) as u64))
            .collect();
        let sends = servers
            .iter()
            .zip(&inputs)
            .enumerate()
            .map(|(i, (server, input))| {
                let file = local.path().join(format!("in{round}-{i}"));
                std::fs::write(&file, input).unwrap();
                let (addr, name) = (server.addr.to_string(), name.clone());
                task::spawn(async move {
                    let opts = SendOptions {
                        overwrite: true,
                        delta: false,
                        ..SendOptions::default()
                    };
                    connect(&addr).await.send_file(&file, &name, opts).await
                })
            });
        for result in task::block_on(futures::future::join_all(sends)) {
            result.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        for mount in 0..2 {
            let path = shared.root(mount).join(&name);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(
                mode, want,
                "round {round}: {name}'s bits (0{mode:o}) through mount {mount}"
            );
            let stored = std::fs::read(&path).unwrap();
            assert!(
                inputs.contains(&stored),
                "round {round}: {name} is one whole input"
            );
        }
    }
}

/// A brick of the replica-2 volume killed in the middle of an upload: the other brick carries
/// the volume on, the upload completes through the same server, and the file is whole — on
/// the volume and on the brick that lived. (The second brick: under an `auto` quorum, only the
/// first one alone keeps a volume of two bricks writable.)
#[test]
fn a_brick_killed_mid_upload_leaves_the_replica_to_carry_it_on() {
    use rustix::process::Signal;
    let Some(shared) = Shared::new("brick_killed", Storage::Gluster) else {
        return;
    };
    let volume = shared.volume().expect("a volume");
    let server = shared.start_server(0, &[]);
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(16 * MIB, 7);
    std::fs::write(local.path().join("big.bin"), &data).unwrap();
    let upload = Command::new(sft_integration_tests::bin("sft"))
        .args(["send", "-q", "--limit-rate", "8M"])
        .args([&server.addr.to_string(), "big.bin", "big.bin"])
        .current_dir(local.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sft send");
    wait_for_file(&shared.path(".sft/partial"), 2 * MIB as u64);
    let brick = volume.brick_pids().unwrap()[1].expect("the second brick runs");
    assert!(sft_integration_tests::gluster::signal(brick, Signal::KILL));
    let out = upload.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(volume.brick_pids().unwrap()[1], None, "the brick is down");
    for mount in 0..2 {
        let stored = std::fs::read(shared.root(mount).join("big.bin")).unwrap();
        assert!(stored == data, "big.bin is whole through mount {mount}");
    }
    let kept = std::fs::read(volume.brick_path(0).join("big.bin")).unwrap();
    assert!(kept == data, "the brick that lived holds it whole");
    assert_eq!(
        list_files(&shared.path(".sft/partial")),
        Vec::<PathBuf>::new()
    );
}

/// A server killed (`SIGKILL`) in the middle of an upload and started again over the same
/// root: the client's resume continues from what the killed one wrote, and the file is whole,
/// as the other server's mount shows it.
fn a_server_killed_mid_upload_and_restarted_resumes_it_from_its_partial(storage: Storage) {
    let Some(shared) = Shared::new("server_restarted", storage) else {
        return;
    };
    let data = random_bytes(4 * MIB, 8);
    let hash = blake3::hash(&data).to_hex().to_string();
    let header = |resume: bool| {
        let h = serde_json::json!({"verb": "SEND", "path": "up.bin", "size": data.len(),
            "trailer": true, "upload_id": "ef".repeat(16), "resume": resume});
        h.to_string() + "\n"
    };
    let mut server = shared.start_server(0, &[]);
    let (mut upload, _) = begin_upload(server.addr, &header(false));
    upload.write_all(&data[..2 * MIB]).unwrap();
    wait_for_file(&shared.path(".sft/partial"), MIB as u64);
    server.signal("KILL");
    server.wait_exit(LIMIT);
    drop(upload);

    let server = shared.start_server(0, &[]);
    let (mut again, ready) = begin_upload(server.addr, &header(true));
    let offset = ready["offset"].as_u64().expect("resumed") as usize;
    assert!((MIB..=2 * MIB).contains(&offset), "{ready}");
    again.write_all(&data[offset..]).unwrap();
    again
        .write_all(format!("{{\"blake3\":\"{hash}\"}}\n").as_bytes())
        .unwrap();
    let reply = read_reply(&mut again);
    assert_eq!(reply["blake3"], hash.as_str(), "{reply}");
    assert!(std::fs::read(shared.root(1).join("up.bin")).unwrap() == data);
    assert_eq!(
        list_files(&shared.path(".sft/partial")),
        Vec::<PathBuf>::new()
    );
}

/// The servers' deadline for a storage call in the hung-mount test.
const STORAGE_TIMEOUT: &str = "3";

#[test]
fn a_hung_mount_is_taken_out_by_the_health_check_and_no_client_fails() {
    use rustix::process::Signal;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let Some(c) = Cluster::start_with(
        "hung_mount",
        Storage::Gluster,
        &["--storage-timeout", STORAGE_TIMEOUT],
    ) else {
        return;
    };
    const FILES: usize = 8;
    let files: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..FILES)
            .map(|i| random_bytes(256 * 1024, 40 + i as u64))
            .collect(),
    );
    for (i, data) in files.iter().enumerate() {
        std::fs::write(c.path(&format!("f{i}.bin")), data).unwrap();
    }
    let addr = c.addr();
    // Clients fetching and sending through HAProxy all along, each `sft get` or `sft send` with
    // --retries as a user of a fleet runs it: a transfer cut on the hung server goes on
    // elsewhere.
    let (stop, done, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::<String>::new())),
    );
    let clients: Vec<_> = (0..2)
        .map(|k| {
            let (stop, done, failed, files, addr) = (
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&failed),
                Arc::clone(&files),
                addr.clone(),
            );
            let root = c.shared.root(0).to_owned();
            std::thread::spawn(move || {
                let out = tempfile::tempdir().unwrap();
                let src = tempfile::tempdir().unwrap();
                for (i, data) in files.iter().enumerate() {
                    std::fs::write(src.path().join(format!("f{i}.bin")), data).unwrap();
                }
                // Bounded: stops when told, or after 3,000 transfers whatever happens.
                for n in 0..3000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = (n + k) % FILES;
                    let name = format!("f{i}.bin");
                    // Every fourth transfer an upload, under a name of its own, read back
                    // through the mount no server hangs on.
                    let up = format!("up-{k}-{n}.bin");
                    let (verb, local, check) = match n % 4 {
                        3 => ("send", src.path().join(&name), root.join(&up)),
                        _ => ("get", out.path().join(&name), out.path().join(&name)),
                    };
                    let (first, second) = match verb {
                        "send" => (local.display().to_string(), up.clone()),
                        _ => (name.clone(), local.display().to_string()),
                    };
                    let result = Command::new(sft_integration_tests::bin("sft"))
                        .args([
                            verb,
                            "--overwrite",
                            "--retries",
                            "8",
                            &addr,
                            &first,
                            &second,
                        ])
                        .current_dir(out.path())
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    let got = std::fs::read(&check).unwrap_or_default();
                    if !result.status.success() || got != files[i] {
                        failed.lock().unwrap().push(format!(
                            "{name}: {}",
                            String::from_utf8_lossy(&result.stderr)
                        ));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let waited = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + LIMIT;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {LIMIT:?}; {} transfers, failed: {:?}\n{}",
                done.load(Ordering::Relaxed),
                failed.lock().unwrap(),
                c.balancer.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let progress = |more: usize| {
        let target = done.load(Ordering::Relaxed) + more;
        waited("transfers", &|| done.load(Ordering::Relaxed) >= target);
    };
    // GETs a server answered whole (one cut off by the hang logs its own outcome).
    let served_ok = |i: usize| {
        c.servers[i]
            .logs_with("request")
            .iter()
            .filter(|r| r["verb"] == "GET" && r["outcome"] == "ok")
            .count()
    };
    progress(10);

    // Server sft2 is on mount 1: its FUSE daemon stops, as a hung network mount behaves.
    let volume = c.shared.volume().unwrap();
    let hung = volume.mount_pid(1);
    assert!(sft_integration_tests::gluster::signal(hung, Signal::STOP));
    let _resume = sft_integration_tests::gluster::Resume(hung);
    let state = |name: &str| c.balancer.try_states().get(name).map(|s| s.op);
    waited("sft2 marked down", &|| state("sft2") == Some(0));
    let down_at = served_ok(1);
    progress(20);
    assert_eq!(served_ok(1), down_at, "a server marked down served GETs");

    // The mount answers again: the health check puts the server back, and it serves.
    assert!(sft_integration_tests::gluster::signal(hung, Signal::CONT));
    waited("sft2 back up", &|| state("sft2") == Some(2));
    // Back in: a client of its own is served there (HAProxy's least-connections choice may
    // well keep the two clients on the other servers).
    task::block_on(async {
        let mut got = Vec::new();
        connect(&c.servers[1].addr.to_string())
            .await
            .get("f0.bin", &mut got)
            .await
            .expect("a GET from sft2 once its mount answers");
        assert!(got == files[0]);
    });
    progress(4);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} transfers failed: {:?}\n{}",
        failed.len(),
        done.load(Ordering::Relaxed),
        *failed,
        c.balancer.output()
    );
    let warned = c.servers[1]
        .logs_with("the served folder's storage does not answer: HELLO answers unavailable");
    assert!(!warned.is_empty(), "sft2 never said its storage hung");
}
