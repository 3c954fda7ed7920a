//! One upload through two servers that share a root at once: the same resumable `SEND` (same
//! path, size and `upload_id`, a client's quick retry that a balancer sent elsewhere), and
//! concurrent delta `SEND`s of one path. DEPLOY.md promises that two servers never write one
//! partial, and that an upload of it arriving meanwhile is received separately, from the
//! start: every upload here succeeds, the file is one of the inputs whole, and nothing is left
//! behind in `.sft/tmp` or `.sft/partial`. Each test runs over a local folder, then over a
//! GlusterFS volume with the two servers on two mounts of it (where GlusterFS can run here).

use async_std::task;
use sft_integration_tests::cluster::{Shared, Storage};
use sft_integration_tests::{list_files, random_bytes, wait_until, Raw, ServerProcess};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

/// Two servers over one shared root.
struct Pair {
    /// Dropped first: the servers are gone before their storage.
    servers: [ServerProcess; 2],
    shared: Shared,
}

impl Pair {
    /// Starts two servers logging at debug level, or says why not where the storage cannot
    /// run here.
    fn start(test: &str, storage: Storage) -> Option<Pair> {
        let shared = Shared::new(test, storage)?;
        let debug = ["--log-level", "debug"];
        let servers = [
            shared.start_server(0, &debug),
            shared.start_server(1, &debug),
        ];
        Some(Pair { servers, shared })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.shared.path(rel)
    }

    /// Every log line of both servers, for a failure's message.
    fn logs(&self) -> String {
        self.servers
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let lines = s.logs.lock().unwrap().clone();
                lines.into_iter().map(move |l| format!("server {i}: {l}"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `test` on a local folder, then on a GlusterFS volume (each server on a mount of its
/// own), where GlusterFS can run here.
fn on_both_storages(test: fn(Storage)) {
    for storage in [Storage::Local, Storage::Gluster] {
        test(storage);
    }
}

/// A resumable upload's header: with a trailer and an `upload_id`, replacing `path`.
fn header(path: &str, size: usize, id: &str, resume: bool) -> String {
    let h = serde_json::json!({"verb": "SEND", "path": path, "size": size, "trailer": true,
        "upload_id": id, "resume": resume, "overwrite": true});
    h.to_string() + "\n"
}

/// The trailer line of `data`.
fn trailer(data: &[u8]) -> String {
    format!("{{\"blake3\":\"{}\"}}\n", blake3::hash(data).to_hex())
}

/// A connection to `addr` that sent `header` and read the reply to it.
async fn begin(addr: SocketAddr, header: &str) -> (Raw, serde_json::Value) {
    let mut raw = Raw::connect(addr).await;
    raw.write(header.as_bytes()).await;
    let reply = raw.reply().await;
    (raw, reply)
}

/// Sends the rest of an upload: `data` from `offset` on, and its trailer. Returns the final
/// reply.
async fn finish(raw: &mut Raw, offset: usize, data: &[u8]) -> serde_json::Value {
    raw.write(&data[offset..]).await;
    raw.write(trailer(data).as_bytes()).await;
    raw.reply().await
}

/// Files in `dir` (or below), with their sizes.
fn sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    list_files(dir)
        .into_iter()
        .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
        .collect()
}

/// Waits until a file in `dir` (or below) holds at least `len` bytes.
fn wait_for_file(dir: &Path, len: u64) {
    wait_until(LIMIT, || sizes(dir).iter().any(|(_, held)| *held >= len));
}

#[test]
fn the_same_upload_begun_through_two_servers_before_either_wrote_is_received_twice() {
    on_both_storages(
        the_same_upload_begun_through_two_servers_before_either_wrote_is_received_twice_on,
    );
}

fn the_same_upload_begun_through_two_servers_before_either_wrote_is_received_twice_on(
    storage: Storage,
) {
    let Some(pair) = Pair::start("begun_before_either_wrote", storage) else {
        return;
    };
    let partials = pair.path(".sft/partial");
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        // One upload (path, size, id), its bytes different on each connection so that the
        // stored file shows whose it is.
        let id = format!("{round:02}").repeat(16);
        let first = random_bytes(2 * MIB, 2 * round as u64);
        let second = random_bytes(2 * MIB, 2 * round as u64 + 1);
        let head = header("up.bin", first.len(), &id, round % 2 == 1);
        task::block_on(async {
            // Both get their go-ahead before either sent a byte: both plan to write the
            // partial.
            let (mut one, ready) = begin(pair.servers[0].addr, &head).await;
            assert_eq!(ready, serde_json::json!({"ok": true}), "round {round}");
            let (mut two, ready) = begin(pair.servers[1].addr, &head).await;
            assert_eq!(ready, serde_json::json!({"ok": true}), "round {round}");
            // The first writes part of its body: the partial exists, locked.
            one.write(&first[..MIB]).await;
            wait_for_file(&partials, 256 * 1024);
            let writing = list_files(&partials);
            assert_eq!(writing.len(), 1, "round {round}");
            let apart = "upload staged apart, not resumable";
            let logged = pair.servers[1].logs_with(apart).len();

            // The second is received apart, from the start, without touching the partial…
            let reply = finish(&mut two, 0, &second).await;
            assert_eq!(reply["ok"], true, "round {round}: {reply}\n{}", pair.logs());
            assert_eq!(reply["size"], second.len(), "round {round}");
            assert!(std::fs::read(pair.path("up.bin")).unwrap() == second);
            let now = pair.servers[1].logs_with(apart);
            assert_eq!(now.len(), logged + 1, "round {round}: {now:?}");
            assert_eq!(list_files(&partials), writing, "round {round}");

            // …and the first completes too: the last to finish is the file, whole.
            let reply = finish(&mut one, MIB, &first).await;
            assert_eq!(reply["ok"], true, "round {round}: {reply}");
            assert!(std::fs::read(pair.path("up.bin")).unwrap() == first);
        });
        assert_eq!(
            pair.shared.leftovers(),
            Vec::<PathBuf>::new(),
            "round {round}"
        );
    }
}

#[test]
fn the_same_upload_started_through_two_servers_at_once_is_stored_whole_every_time() {
    on_both_storages(
        the_same_upload_started_through_two_servers_at_once_is_stored_whole_every_time_on,
    );
}

fn the_same_upload_started_through_two_servers_at_once_is_stored_whole_every_time_on(
    storage: Storage,
) {
    let Some(pair) = Pair::start("started_at_once", storage) else {
        return;
    };
    const ROUNDS: usize = 24;
    for round in 0..ROUNDS {
        let id = format!("{:02x}", round + 100).repeat(16);
        let inputs: Vec<Vec<u8>> = (0..2)
            .map(|i| random_bytes(MIB, 1000 + 2 * round as u64 + i))
            .collect();
        let head = header("up.bin", MIB, &id, round % 2 == 0);
        let upload = |i: usize| {
            let (addr, data, head) = (pair.servers[i].addr, &inputs[i], &head);
            async move {
                let (mut raw, ready) = begin(addr, head).await;
                assert_eq!(ready, serde_json::json!({"ok": true}), "round {round}");
                finish(&mut raw, 0, data).await
            }
        };
        let replies = task::block_on(async { futures::join!(upload(0), upload(1)) });
        for reply in [replies.0, replies.1] {
            assert_eq!(reply["ok"], true, "round {round}: {reply}\n{}", pair.logs());
            assert_eq!(reply["size"], MIB, "round {round}");
        }
        let stored = std::fs::read(pair.path("up.bin")).unwrap();
        assert!(inputs.contains(&stored), "round {round}: one input, whole");
        assert_eq!(
            pair.shared.leftovers(),
            Vec::<PathBuf>::new(),
            "round {round}"
        );
    }
}

#[test]
fn concurrent_delta_sends_of_one_path_through_two_servers_are_all_stored() {
    on_both_storages(concurrent_delta_sends_of_one_path_through_two_servers_are_all_stored_on);
}

fn concurrent_delta_sends_of_one_path_through_two_servers_are_all_stored_on(storage: Storage) {
    let Some(pair) = Pair::start("concurrent_deltas", storage) else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    const ROUNDS: u64 = 20;
    for round in 0..ROUNDS {
        // A basis on the server, and two edits of it: each sender finds most of its file
        // there and goes by delta.
        let basis = random_bytes(2 * MIB, 100 + round);
        std::fs::write(pair.path("same.bin"), &basis).unwrap();
        let inputs: Vec<Vec<u8>> = (0..2)
            .map(|i| {
                // Bytes inserted (sizes that differ from the basis', so that neither is
                // skipped as unchanged), in a different place for each.
                let at = (i as usize + 1) * 600 * 1024;
                let extra = random_bytes(4096 * (i as usize + 1), 1000 + round * 2 + i);
                [&basis[..at], &extra, &basis[at..]].concat()
            })
            .collect();
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(local.path().join(format!("in{i}")), input).unwrap();
        }
        // Both at once, each through its server (the sends start together, from two threads).
        let sends: Vec<_> = (0..2)
            .map(|i| {
                let (server, cwd) = (pair.servers[i].addr.to_string(), local.path().to_owned());
                std::thread::spawn(move || {
                    let input = format!("in{i}");
                    let args = ["send", "-q", "--overwrite", &server, &input, "same.bin"];
                    sft_integration_tests::sft(&args, &cwd)
                })
            })
            .collect();
        for send in sends {
            let out = send.join().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "round {round}: {err}\n{}",
                pair.logs()
            );
        }
        let stored = std::fs::read(pair.path("same.bin")).unwrap();
        assert!(inputs.contains(&stored), "round {round}: one input, whole");
        assert_eq!(
            pair.shared.leftovers(),
            Vec::<PathBuf>::new(),
            "round {round}"
        );
    }
}
