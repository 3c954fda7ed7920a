//! Delta transfers and compression through the real `sft` binary against the real server
//! (PROTOCOL.md §8): random edits of every kind rebuild the source byte for byte in both
//! directions, single files and folders; `--whole-file`, an older server, a basis that changes
//! under the rebuild and a cut connection never leave a wrong or torn file; `-z` round trips.

use async_std::task;
use sft_client::{Client, GetOptions, Progress};
use sft_commands::{BoxFuture, Command, CommandError, Context};
use sft_integration_tests::{json_lines, random_bytes, sft, stderr, Raw, Relay, TestServer};
use sft_protocol::verbs::{HelloReply, HelloRequest, Verb};
use sft_protocol::Request;
use std::fs;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const MIB: usize = 1024 * 1024;

/// A tiny deterministic generator (xorshift), so that every case reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `base` with a random kind of change: scattered rewrites, insertions, deletions, rewrites at
/// every 256 KiB (where segment cuts gather), a cut tail, a grown tail, or a changed head.
fn edited(base: &[u8], case: u64) -> Vec<u8> {
    let mut rng = Rng(case.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = base.to_vec();
    match case % 7 {
        0 => {
            for i in 0..1 + rng.below(12) {
                let len = 1 + rng.below(4096);
                let at = rng.below(out.len() - len);
                out[at..at + len].copy_from_slice(&random_bytes(len, case * 100 + i as u64));
            }
        }
        1 => {
            for i in 0..1 + rng.below(6) {
                let at = rng.below(out.len());
                let len = 1 + rng.below(3000);
                out.splice(at..at, random_bytes(len, case * 100 + i as u64));
            }
        }
        2 => {
            for _ in 0..1 + rng.below(6) {
                let len = 1 + rng.below(3000);
                let at = rng.below(out.len() - len);
                out.drain(at..at + len);
            }
        }
        3 => {
            for at in (256 * 1024..out.len()).step_by(256 * 1024) {
                out[at - 1] ^= 0x5a;
            }
        }
        4 => out.truncate(out.len() - 1 - rng.below(out.len() / 3)),
        5 => out.extend_from_slice(&random_bytes(1 + rng.below(MIB), case)),
        _ => out[..100].copy_from_slice(&random_bytes(100, case)),
    }
    out
}

/// Sets a file's modification time long ago, so that the quick check never takes two
/// versions written within one second for the same file.
fn age(path: &Path) {
    let day = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(day).unwrap();
}

/// The one `--json` line of a single transfer.
#[track_caller]
fn result(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    let lines = json_lines(out);
    lines
        .into_iter()
        .find(|l| l.get("method").is_some())
        .unwrap_or_else(|| panic!("no transfer line; stderr: {}", stderr(out)))
}

/// Runs `sft VERB [extra…] --overwrite --json SERVER f.bin f.bin` in `here`: its transfer line.
#[track_caller]
fn run(verb: &str, extra: &[&str], server: &TestServer, here: &Path) -> serde_json::Value {
    let addr = server.server_arg();
    let mut args = vec![verb];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--overwrite", "--json", &addr, "f.bin", "f.bin"]);
    result(&sft(&args, here))
}

fn no_partials(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(!name.ends_with(".sft-part"), "{name} left behind");
    }
}

/// Puts an edited version of a random file on the server and the original here, both as
/// `f.bin` (the local one aged, so that it differs for the quick check): returns both.
fn stage(server: &TestServer, here: &Path, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let base = random_bytes(2 * MIB, seed);
    let source = edited(&base, 0);
    fs::write(server.path("f.bin"), &source).unwrap();
    fs::write(here.join("f.bin"), &base).unwrap();
    age(&here.join("f.bin"));
    (base, source)
}

#[test]
fn get_rebuilds_every_kind_of_edit() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let base = random_bytes(3 * MIB + 12345, 7);
    for case in 0..7 {
        let source = edited(&base, case);
        fs::write(server.path("f.bin"), &source).unwrap();
        let local = here.path().join("f.bin");
        fs::write(&local, &base).unwrap();
        age(&local);
        let line = run("get", &[], &server, here.path());
        assert!(
            fs::read(&local).unwrap() == source,
            "case {case}: not the source"
        );
        assert_eq!(line["method"], "delta", "case {case}: {line}");
        let moved = line["bytes_transferred"].as_u64().unwrap();
        assert!(moved < source.len() as u64 / 4, "case {case}: {line}");
        assert_eq!(line["size"], source.len() as u64);
        no_partials(here.path());
    }
}

#[test]
fn send_rebuilds_every_kind_of_edit() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let base = random_bytes(3 * MIB + 777, 8);
    for case in 0..7 {
        let source = edited(&base, case + 100);
        fs::write(server.path("f.bin"), &base).unwrap();
        age(&server.path("f.bin"));
        fs::write(here.path().join("f.bin"), &source).unwrap();
        let line = run("send", &[], &server, here.path());
        assert!(
            fs::read(server.path("f.bin")).unwrap() == source,
            "case {case}"
        );
        let moved = line["bytes_transferred"].as_u64().unwrap();
        assert_eq!(line["method"], "delta", "case {case}: {line}");
        assert!(moved < source.len() as u64 / 4, "case {case}: {line}");
        assert!(line["bytes_reused"].as_u64().unwrap() > 0, "{line}");
    }
}

#[test]
fn small_empty_and_unrelated_files_go_whole() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let local = here.path().join("f.bin");
    let cases: [(Vec<u8>, Vec<u8>); 4] = [
        // A basis under 1 MiB.
        (random_bytes(MIB - 1, 1), random_bytes(MIB - 1, 2)),
        // Nothing in common.
        (random_bytes(2 * MIB, 3), random_bytes(2 * MIB, 4)),
        // An empty source over a large basis, and a large source over an empty basis.
        (random_bytes(2 * MIB, 5), Vec::new()),
        (Vec::new(), random_bytes(2 * MIB, 6)),
    ];
    for (i, (basis, source)) in cases.iter().enumerate() {
        fs::write(server.path("f.bin"), source).unwrap();
        fs::write(&local, basis).unwrap();
        age(&local);
        let line = run("get", &[], &server, here.path());
        assert!(fs::read(&local).unwrap() == *source, "case {i}");
        assert_eq!(line["method"], "whole", "case {i}: {line}");
        no_partials(here.path());
    }
}

/// A same-size file with another time that a delta would replace is not hashed on both sides
/// first: the delta finds it identical by its hash and only gives it the server's time. With
/// `-W` the hashes are compared as before and the file is skipped.
#[test]
fn an_identical_file_with_another_time_costs_a_signature_and_keeps_its_bytes() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let data = random_bytes(2 * MIB, 12);
    fs::write(server.path("f.bin"), &data).unwrap();
    fs::write(here.path().join("f.bin"), &data).unwrap();
    age(&here.path().join("f.bin"));
    let line = run("get", &[], &server, here.path());
    assert_eq!(line["method"], "delta", "{line}");
    assert_eq!(line["bytes_reused"], data.len() as u64, "{line}");
    assert!(line["bytes_transferred"].as_u64().unwrap() < data.len() as u64 / 100);
    assert!(fs::read(here.path().join("f.bin")).unwrap() == data);
    let ours = fs::metadata(here.path().join("f.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let theirs = fs::metadata(server.path("f.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs(ours), secs(theirs));
    no_partials(here.path());
    // With -W: compared by hash, skipped, and given the server's time too.
    age(&here.path().join("f.bin"));
    let out = sft(
        &[
            "get",
            "-W",
            "--overwrite",
            "--json",
            &server.server_arg(),
            "f.bin",
            "f.bin",
        ],
        here.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert!(lines.iter().any(|l| l["skipped"] == true), "{lines:?}");
    let ours = fs::metadata(here.path().join("f.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(secs(ours), secs(theirs));
}

#[test]
fn whole_file_turns_deltas_off() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let (_, source) = stage(&server, here.path(), 9);
    let line = run("get", &["-W"], &server, here.path());
    assert_eq!(line["method"], "whole", "{line}");
    assert_eq!(line["bytes_transferred"], source.len() as u64);
    assert!(fs::read(here.path().join("f.bin")).unwrap() == source);
}

#[test]
fn folder_syncs_replace_changed_files_by_delta_both_ways() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let (mine, theirs) = (here.path().join("tree"), server.path("tree"));
    fs::create_dir_all(mine.join("sub")).unwrap();
    fs::create_dir_all(theirs.join("sub")).unwrap();
    let names = ["a.bin", "sub/b.bin", "sub/c.bin"];
    for (i, name) in names.iter().enumerate() {
        let base = random_bytes(2 * MIB + i * 999, 20 + i as u64);
        fs::write(mine.join(name), &base).unwrap();
        fs::write(theirs.join(name), edited(&base, i as u64)).unwrap();
        age(&mine.join(name));
    }
    fs::write(theirs.join("small.txt"), b"small and new\n").unwrap();
    // `sft VERB -r --overwrite --json SERVER tree tree`: every changed file the same on both
    // sides afterwards, and moved by delta (its line found by `side`, `remote` or `local`).
    let sync_tree = |verb: &str, side: &str| {
        let addr = server.server_arg();
        let args = [verb, "-r", "--overwrite", "--json", &addr, "tree", "tree"];
        let out = sft(&args, here.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let lines = json_lines(&out);
        for name in names {
            assert!(fs::read(mine.join(name)).unwrap() == fs::read(theirs.join(name)).unwrap());
            let line = lines.iter().find(|l| l[side] == format!("tree/{name}"));
            let line = line.unwrap_or_else(|| panic!("no line for {name}: {lines:?}"));
            assert_eq!(line["method"], "delta", "{line}");
        }
    };
    sync_tree("get", "remote");
    assert_eq!(
        fs::read(mine.join("small.txt")).unwrap(),
        b"small and new\n"
    );

    // And back: the local copies change, the server's are the bases.
    for (i, name) in names.iter().enumerate() {
        let base = fs::read(mine.join(name)).unwrap();
        fs::write(mine.join(name), edited(&base, 3 + i as u64)).unwrap();
        age(&theirs.join(name));
    }
    sync_tree("send", "local");
}

/// `HELLO` as a version-2 server says it: no `SIGN`, no compression.
#[derive(Debug)]
struct OldHello;

impl Command for OldHello {
    fn verb(&self) -> &'static str {
        HelloRequest::NAME
    }

    fn public(&self) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        _request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let reply = HelloReply {
                server: "sft-server".into(),
                version: "0.1.0".into(),
                protocol: 2,
                ..HelloReply::default()
            };
            ctx.reply_ok(&reply).await.map_err(CommandError::Abort)
        })
    }
}

#[test]
fn an_older_server_gets_whole_uncompressed_transfers() {
    let mut registry = sft_commands::builtins();
    registry.register(OldHello);
    let server = TestServer::start_with(&[], registry);
    let here = tempfile::tempdir().unwrap();
    let (base, source) = stage(&server, here.path(), 30);
    let line = run("get", &["-z"], &server, here.path());
    assert_eq!(line["method"], "whole", "{line}");
    assert_eq!(line["compressed"], false, "{line}");
    assert!(fs::read(here.path().join("f.bin")).unwrap() == source);

    fs::write(here.path().join("f.bin"), &base).unwrap();
    age(&server.path("f.bin"));
    let line = run("send", &["-z"], &server, here.path());
    assert_eq!(line["method"], "whole", "{line}");
    assert!(fs::read(server.path("f.bin")).unwrap() == base);
}

#[test]
fn version_2_requests_still_move_whole_files() {
    let server = TestServer::start();
    let data = random_bytes(2 * MIB, 31);
    fs::write(server.path("f.bin"), &data).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"GET\",\"path\":\"f.bin\"}\n").await;
        let reply = raw.reply().await;
        assert_eq!(reply["size"], data.len() as u64, "{reply}");
        assert!(raw.body(data.len()).await == data);
        let request = serde_json::json!({"verb":"SEND","path":"f.bin","size":5,"overwrite":true});
        let reply = raw.send(request, b"hello").await;
        assert_eq!(reply["ok"], true, "{reply}");
    });
    assert_eq!(fs::read(server.path("f.bin")).unwrap(), b"hello");
}

#[test]
fn compression_round_trips_text_and_noise() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let text: Vec<u8> = (0..200_000)
        .flat_map(|i| format!("{{\"n\":{i},\"msg\":\"a line of a log\"}}\n").into_bytes())
        .collect();
    let noise = random_bytes(3 * MIB, 32);
    for (name, data) in [("text.json", &text), ("noise.bin", &noise)] {
        fs::write(server.path(name), data).unwrap();
        let line = result(&sft(
            &["get", "-z", "--json", &server.server_arg(), name, name],
            here.path(),
        ));
        assert!(fs::read(here.path().join(name)).unwrap() == *data, "{name}");
        let moved = line["bytes_transferred"].as_u64().unwrap();
        if name == "text.json" {
            assert_eq!(line["compressed"], true, "{line}");
            assert!(moved < data.len() as u64 / 4, "{line}");
        } else {
            assert!(moved >= data.len() as u64, "{line}");
        }
        fs::remove_file(server.path(name)).unwrap();
        let line = result(&sft(
            &["send", "-z", "--json", &server.server_arg(), name, name],
            here.path(),
        ));
        assert!(fs::read(server.path(name)).unwrap() == *data, "{name}");
        let moved = line["bytes_transferred"].as_u64().unwrap();
        if name == "text.json" {
            assert_eq!(line["compressed"], true, "{line}");
            assert!(moved < data.len() as u64 / 4, "{line}");
        } else {
            assert!(moved >= data.len() as u64, "{line}");
        }
    }
}

/// Rewrites one byte of the basis the first time the download reports progress: in the
/// middle of its rebuild.
#[derive(Debug)]
struct Meddle {
    basis: std::path::PathBuf,
    done: AtomicBool,
}

impl Progress for Meddle {
    fn start(&self, _remote: &str, _total: Option<u64>, _done: u64) {}

    fn advance(&self, _n: u64) {
        if !self.done.swap(true, Ordering::SeqCst) {
            use std::os::unix::fs::FileExt;
            let f = fs::File::options().write(true).open(&self.basis).unwrap();
            f.write_all_at(b"changed under the rebuild", 1_000_000)
                .unwrap();
        }
    }
}

#[test]
fn a_basis_changed_during_the_rebuild_never_makes_a_torn_file() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let base = random_bytes(4 * MIB, 40);
    let source = edited(&base, 3);
    fs::write(server.path("f.bin"), &source).unwrap();
    let local = here.path().join("f.bin");
    fs::write(&local, &base).unwrap();
    let meddle = Arc::new(Meddle {
        basis: local.clone(),
        done: AtomicBool::new(false),
    });
    let t = task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 0).await.unwrap();
        client.set_progress(Some(meddle.clone()));
        client
            .get_file("f.bin", &local, GetOptions::default())
            .await
            .unwrap()
    });
    assert!(
        meddle.done.load(Ordering::SeqCst),
        "the basis was never touched"
    );
    assert!(fs::read(&local).unwrap() == source);
    assert!(!t.delta, "a delta over a basis that changed: {t:?}");
    no_partials(here.path());
}

#[test]
fn a_cut_delta_leaves_the_old_file_and_no_partial() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let base = random_bytes(8 * MIB, 50);
    let mut source = base.clone();
    // Enough new bytes that the cut falls inside them.
    source[MIB..3 * MIB].copy_from_slice(&random_bytes(2 * MIB, 51));
    fs::write(server.path("f.bin"), &source).unwrap();
    let local = here.path().join("f.bin");
    fs::write(&local, &base).unwrap();
    age(&local);
    let relay = Relay::start(
        server.addr,
        sft_integration_tests::Tamper {
            cut_down_after: Some(MIB as u64),
            ..Default::default()
        },
    );
    let out = sft(
        &[
            "get",
            "--overwrite",
            &relay.addr.to_string(),
            "f.bin",
            "f.bin",
        ],
        here.path(),
    );
    assert!(!out.status.success());
    assert!(
        fs::read(&local).unwrap() == base,
        "the old version was touched"
    );
    no_partials(here.path());
    relay.join();
}

#[test]
fn a_compressed_delta_compresses_its_literals() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    let text: Vec<u8> = (0..120_000)
        .flat_map(|i| format!("{{\"n\":{i},\"msg\":\"a line of a log\"}}\n").into_bytes())
        .collect();
    let mut source = text.clone();
    // Rewritten lines, compressible like the rest.
    for at in [100_000, 1_500_000, 3_000_000] {
        source[at..at + 3000].copy_from_slice(&text[..3000]);
    }
    fs::write(server.path("f.bin"), &source).unwrap();
    fs::write(here.path().join("f.bin"), &text).unwrap();
    age(&here.path().join("f.bin"));
    let line = run("get", &["-z"], &server, here.path());
    assert_eq!(line["method"], "delta", "{line}");
    assert_eq!(line["compressed"], true, "{line}");
    assert!(fs::read(here.path().join("f.bin")).unwrap() == source);
    fs::write(here.path().join("f.bin"), &text).unwrap();
    age(&server.path("f.bin"));
    let line = run("send", &["-z"], &server, here.path());
    assert_eq!(line["method"], "delta", "{line}");
    assert_eq!(line["compressed"], true, "{line}");
    assert!(fs::read(server.path("f.bin")).unwrap() == text);
}

#[test]
fn a_folder_comes_compressed_with_z() {
    let server = TestServer::start();
    let here = tempfile::tempdir().unwrap();
    fs::create_dir_all(server.path("logs")).unwrap();
    for i in 0..20 {
        let text: Vec<u8> = (0..2000 * (i + 1))
            .flat_map(|n| format!("{{\"file\":{i},\"n\":{n}}}\n").into_bytes())
            .collect();
        fs::write(server.path(&format!("logs/{i}.json")), text).unwrap();
    }
    let addr = server.server_arg();
    let out = sft(
        &["get", "-r", "-z", "--json", &addr, "logs", "logs"],
        here.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let files: Vec<_> = lines.iter().filter(|l| l.get("method").is_some()).collect();
    assert_eq!(files.len(), 20, "{lines:?}");
    for line in files {
        assert_eq!(line["compressed"], true, "{line}");
        let name = line["remote"].as_str().unwrap();
        let local = here.path().join(name);
        assert!(fs::read(local).unwrap() == fs::read(server.path(name)).unwrap());
    }
}
