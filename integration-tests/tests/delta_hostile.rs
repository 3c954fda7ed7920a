//! Hostile peers against version 3's delta and compressed bodies, spoken by hand to the real
//! `sft-server` binary: whatever they send, the connection is refused or closed, nothing
//! appears under a final name, the old file stays as it was, and other clients are served.

use async_std::task;
use serde_json::{json, Value};
use sft_integration_tests::{random_bytes, Raw, ServerProcess};

const LOOPBACK: [&str; 2] = ["--host", "127.0.0.1"];

/// Chunk header lines and the bytes after each.
type Chunks = Vec<(Value, Vec<u8>)>;

struct Setup {
    _dir: tempfile::TempDir,
    server: ServerProcess,
    old: Vec<u8>,
    basis: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let old = random_bytes(2 * 1024 * 1024, 31);
    std::fs::write(dir.path().join("f.bin"), &old).unwrap();
    let server = ServerProcess::start(dir.path(), &LOOPBACK);
    let basis = blake3::hash(&old).to_hex().to_string();
    Setup {
        _dir: dir,
        server,
        old,
        basis,
    }
}

impl Setup {
    fn delta(&self, file_size: u64) -> Value {
        json!({"verb":"SEND","v":3,"path":"f.bin","body":"chunked","overwrite":true,
            "compress":"zstd","delta":{"basis":self.basis,"file_size":file_size}})
    }

    /// The old file is intact, no staging file is left, and a new client is served.
    fn unharmed(&self) {
        assert_eq!(
            std::fs::read(self.server.root.join("f.bin")).unwrap(),
            self.old
        );
        let names: Vec<_> = std::fs::read_dir(&self.server.root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| n == "f.bin" || n == ".sft"),
            "{names:?}"
        );
        task::block_on(async {
            let mut raw = Raw::connect(self.server.addr).await;
            raw.write(b"{\"verb\":\"GET\",\"path\":\"f.bin\",\"offset\":2097150}\n")
                .await;
            assert_eq!(raw.reply().await["size"], 2);
        });
    }
}

/// Sends `request`, then (after a go-ahead) `chunks`; returns the first error reply, and
/// whether the server then closed the connection.
async fn attack(
    addr: std::net::SocketAddr,
    request: Value,
    chunks: &[(Value, Vec<u8>)],
) -> (Value, bool) {
    let mut raw = Raw::connect(addr).await;
    raw.write(format!("{request}\n").as_bytes()).await;
    let ready = raw.reply().await;
    if ready["ok"] != true {
        return (ready, false);
    }
    for (header, bytes) in chunks {
        raw.write(format!("{header}\n").as_bytes()).await;
        raw.write(bytes).await;
    }
    let reply = raw.reply().await;
    (reply, raw.closed().await)
}

#[test]
fn malformed_delta_bodies_are_refused_and_the_connection_closed() {
    let s = setup();
    let len = s.old.len() as u64;
    let frame = zstd::bulk::compress(&[7u8; 1000], 3).unwrap();
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
    let cases: Vec<(&str, Value, Chunks)> = vec![
        (
            "copy outside the basis",
            s.delta(10),
            vec![(json!({"copy":len - 5,"len":10}), vec![])],
        ),
        (
            "copy past file_size",
            s.delta(10),
            vec![(json!({"copy":0,"len":11}), vec![])],
        ),
        (
            "absurd copy",
            s.delta(10),
            vec![(json!({"copy":u64::MAX,"len":u64::MAX}), vec![])],
        ),
        (
            "copy of 0",
            s.delta(10),
            vec![(json!({"copy":0,"len":0}), vec![])],
        ),
        (
            "endless copies",
            s.delta(3 * len),
            vec![
                (json!({"copy":0,"len":len}), vec![]),
                (json!({"copy":0,"len":len}), vec![]),
                (json!({"copy":0,"len":len}), vec![]),
                (json!({"copy":0,"len":1}), vec![]),
            ],
        ),
        (
            "data past file_size",
            s.delta(2),
            vec![(json!({"size":3}), b"abc".to_vec())],
        ),
        (
            "zstd larger than declared",
            s.delta(999),
            vec![(json!({"size":frame.len(),"zstd":999}), frame.clone())],
        ),
        (
            "zstd smaller than declared",
            s.delta(1001),
            vec![(json!({"size":frame.len(),"zstd":1001}), frame.clone())],
        ),
        (
            "zstd bomb",
            s.delta(1 << 20),
            vec![(json!({"size":bomb.len(),"zstd":1 << 20}), bomb.clone())],
        ),
        (
            "not zstd",
            s.delta(10),
            vec![(json!({"size":4,"zstd":10}), b"junk".to_vec())],
        ),
        (
            "absurd chunk",
            s.delta(10),
            vec![(json!({"size":u64::MAX}), vec![])],
        ),
    ];
    task::block_on(async {
        for (what, request, chunks) in cases {
            let (reply, closed) = attack(s.server.addr, request, &chunks).await;
            assert_eq!(reply["ok"], false, "{what}: {reply}");
            assert!(closed, "{what}: the connection stays open");
        }
        // Kinds a body did not ask for.
        let plain = json!({"verb":"SEND","v":3,"path":"new","body":"chunked"});
        let (reply, closed) = attack(
            s.server.addr,
            plain.clone(),
            &[(json!({"size":frame.len(),"zstd":1000}), frame.clone())],
        )
        .await;
        assert_eq!(reply["code"], "bad_request");
        assert!(closed);
        let compressed =
            json!({"verb":"SEND","v":3,"path":"new","body":"chunked","compress":"zstd"});
        let (reply, closed) = attack(
            s.server.addr,
            compressed,
            &[(json!({"copy":0,"len":1}), vec![])],
        )
        .await;
        assert_eq!(reply["code"], "bad_request");
        assert!(closed);
    });
    s.unharmed();
}

#[test]
fn a_delta_that_does_not_add_up_is_refused_and_nothing_stored() {
    let s = setup();
    task::block_on(async {
        // A wrong basis hash: `changed` before any body.
        let mut request = s.delta(10);
        request["delta"]["basis"] = json!(blake3::hash(b"other").to_hex().as_str());
        let (reply, closed) = attack(s.server.addr, request, &[]).await;
        assert_eq!(reply["code"], "changed");
        assert!(!closed);
        let mut raw = Raw::connect(s.server.addr).await;
        let run = |r: Value, chunks: Chunks| (r, chunks);
        for (request, chunks, want) in [
            // Short of file_size; no terminator hash; a hash that differs.
            {
                let (r, c) = run(
                    s.delta(10),
                    vec![
                        (json!({"copy":0,"len":5}), vec![]),
                        (
                            json!({"size":0,"blake3":blake3::hash(&s.old[..5]).to_hex().as_str()}),
                            vec![],
                        ),
                    ],
                );
                (r, c, "bad_request")
            },
            {
                let (r, c) = run(
                    s.delta(5),
                    vec![
                        (json!({"copy":0,"len":5}), vec![]),
                        (json!({"size":0}), vec![]),
                    ],
                );
                (r, c, "bad_request")
            },
            {
                let (r, c) = run(
                    s.delta(5),
                    vec![
                        (json!({"copy":0,"len":5}), vec![]),
                        (json!({"size":0,"blake3":s.basis}), vec![]),
                    ],
                );
                (r, c, "checksum_mismatch")
            },
            // No overwrite, no v:3, a sized body: refused before the go-ahead.
            {
                let mut r = s.delta(5);
                r["overwrite"] = json!(false);
                (r, vec![], "bad_request")
            },
            {
                let mut r = s.delta(5);
                r["v"] = json!(2);
                (r, vec![], "bad_request")
            },
            (
                json!({"verb":"SEND","v":3,"path":"x","size":3,"delta":{"basis":s.basis,"file_size":3}}),
                vec![],
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[[0,2000000]]}),
                vec![],
                "bad_request",
            ),
        ] {
            raw.write(format!("{request}\n").as_bytes()).await;
            let mut reply = raw.reply().await;
            if reply["ok"] == true {
                for (header, bytes) in &chunks {
                    raw.write(format!("{header}\n").as_bytes()).await;
                    raw.write(bytes).await;
                }
                reply = raw.reply().await;
            }
            assert_eq!(reply["code"], want, "{request}: {reply}");
        }
        // A version-2 upload on the same connection is what it always was.
        let reply = raw
            .send(json!({"verb":"SEND","path":"v2.txt"}), b"hello")
            .await;
        assert_eq!(reply["size"], 5);
    });
    std::fs::remove_file(s.server.root.join("v2.txt")).unwrap();
    s.unharmed();
}

/// A basis rewritten while a delta is built from it — here with the very bytes it held, so that
/// the file the delta builds hashes right whichever version each copy read — is refused with
/// `changed` at the end: only the version check stands between it and a file built from two
/// versions. Nothing is stored and the connection stays usable.
#[test]
fn a_basis_changed_while_a_delta_is_built_is_refused_with_changed() {
    let s = setup();
    let path = s.server.root.join("f.bin");
    let old_time =
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old_time)
        .unwrap();
    let len = s.old.len() as u64;
    let half = len / 2;
    task::block_on(async {
        let mut raw = Raw::connect(s.server.addr).await;
        raw.write(format!("{}\n", s.delta(len)).as_bytes()).await;
        assert_eq!(raw.reply().await["ok"], true);
        raw.write(format!("{}\n", json!({"copy":0,"len":half})).as_bytes())
            .await;
        // The basis changes under the delta: rewritten in place, same bytes, a new time.
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::options().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(100)).unwrap();
            f.write_all(&s.old[100..200]).unwrap();
        }
        let end = json!({"size":0,"blake3":s.basis});
        raw.write(format!("{}\n{end}\n", json!({"copy":half,"len":len - half})).as_bytes())
            .await;
        let reply = raw.reply().await;
        assert_eq!(reply["code"], "changed", "{reply}");
        // Still in step: the next request is answered.
        raw.write(b"{\"verb\":\"HELLO\"}\n").await;
        assert_eq!(raw.reply().await["ok"], true);
    });
    s.unharmed();
}
