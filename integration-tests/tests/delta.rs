//! Version 3's delta pieces against a real server, spoken by hand: `SIGN` (both levels, from the
//! cache the second time) and `GET` with `ranges`, and what refuses them.

use async_std::task;
use serde_json::{json, Value};
use sft_integration_tests::{random_bytes, Raw, TestServer};
use sft_io::chunker;
use sft_protocol::delta::{decode_sig, Entry};

/// Sends `request` and reads a `SIGN` stream: its reply, its entries and its last line.
async fn sign(raw: &mut Raw, request: Value) -> (Value, Vec<Entry>, Value) {
    raw.write(format!("{request}\n").as_bytes()).await;
    let reply = raw.reply().await;
    let mut entries = Vec::new();
    if reply["ok"] != true {
        return (reply, entries, Value::Null);
    }
    loop {
        let line = raw.reply().await;
        match line["sig"].as_str() {
            Some(sig) => decode_sig(sig, &mut entries).unwrap(),
            None => return (reply, entries, line),
        }
    }
}

fn segments_of(data: &[u8]) -> (Vec<chunker::Segment>, blake3::Hash) {
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, data).unwrap();
    let mut segs = Vec::new();
    let hash = chunker::segments(&f, data.len() as u64, |s| {
        segs.push(s);
        Ok(())
    })
    .unwrap();
    (segs, hash)
}

#[test]
fn sign_describes_the_file_as_the_chunker_cuts_it_and_caches_it() {
    let server = TestServer::start();
    let data = random_bytes(20 * 1024 * 1024 + 4321, 11);
    std::fs::write(server.path("big.bin"), &data).unwrap();
    // Old enough to be cached (a racy version never is).
    std::thread::sleep(sft_io::RACY * 2);
    let (segs, hash) = segments_of(&data);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let request = json!({"verb":"SIGN","v":3,"path":"big.bin"});
        for _ in 0..2 {
            let (reply, entries, end) = sign(&mut raw, request.clone()).await;
            assert_eq!(reply["stream"], "lines");
            assert_eq!(reply["level"], 1);
            assert_eq!(reply["file_size"], data.len() as u64);
            assert!(reply["mtime"].is_i64() && reply["mode"].is_u64());
            let want: Vec<Entry> = segs.iter().map(|s| s.entry).collect();
            assert_eq!(entries, want);
            assert_eq!(end["end"], true);
            assert_eq!(end["count"], want.len() as u64);
            assert_eq!(end["blake3"], hash.to_hex().as_str());
        }
        // The hash went into the hash cache: STAT and GET find it.
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"big.bin\"}\n")
            .await;
        assert_eq!(raw.reply().await["entry"]["blake3"], hash.to_hex().as_str());

        // Level 0 of two segments: their chunks, in order.
        let ranges: Vec<[u64; 2]> = segs[1..3]
            .iter()
            .map(|s| [s.offset, s.entry.len as u64])
            .collect();
        let request = json!({"verb":"SIGN","v":3,"path":"big.bin","ranges":ranges,
            "blake3":hash.to_hex().as_str()});
        let (reply, entries, end) = sign(&mut raw, request).await;
        assert_eq!(reply["level"], 0);
        let mut want = Vec::new();
        for [offset, len] in &ranges {
            chunker::chunks(&data[*offset as usize..(offset + len) as usize], &mut want);
        }
        assert_eq!(entries, want);
        assert_eq!(end["count"], want.len() as u64);
        assert!(end.get("blake3").is_none());
        let sum: u64 = entries.iter().map(|e| e.len as u64).sum();
        assert_eq!(sum, ranges.iter().map(|r| r[1]).sum::<u64>());
    });
}

#[test]
fn sign_refuses_what_it_cannot_describe() {
    let server = TestServer::start();
    let data = random_bytes(3 * 1024 * 1024, 5);
    std::fs::write(server.path("f.bin"), &data).unwrap();
    std::fs::create_dir(server.path("dir")).unwrap();
    std::thread::sleep(sft_io::RACY * 2);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let code = |v: Value| v["code"].as_str().unwrap_or("ok").to_owned();
        for (request, want) in [
            (json!({"verb":"SIGN","v":3,"path":"nope"}), "not_found"),
            (json!({"verb":"SIGN","v":3,"path":"dir"}), "bad_request"),
            (json!({"verb":"SIGN","v":3,"path":"../x"}), "forbidden"),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[]}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[[0,0]]}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[[0,1048577]]}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[[10,5],[0,5]]}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[[0,10],[5,5]]}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[[3145727,2]]}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[[-1,2]]}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":"all"}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":vec![[0,1];257]}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","blake3":"XYZ"}),
                "bad_request",
            ),
            (
                json!({"verb":"SIGN","v":3,"path":"f.bin","size":3}),
                "bad_request",
            ),
        ] {
            let (reply, _, _) = sign(&mut raw, request.clone()).await;
            assert_eq!(code(reply), want, "{request}");
        }
        // Once the server knows the file's hash, a level 0 of another version is `changed`.
        let (_, _, end) = sign(&mut raw, json!({"verb":"SIGN","v":3,"path":"f.bin"})).await;
        assert!(end["blake3"].is_string());
        let other = blake3::hash(b"another version").to_hex().to_string();
        let request = json!({"verb":"SIGN","v":3,"path":"f.bin","ranges":[[0,100]],"blake3":other});
        let (reply, _, _) = sign(&mut raw, request).await;
        assert_eq!(code(reply), "changed");
        // The connection is still in step.
        raw.write(b"{\"verb\":\"HELLO\"}\n").await;
        let hello = raw.reply().await;
        assert_eq!(hello["protocol"], 3);
        let verbs = hello["verbs"].as_array().unwrap();
        assert!(verbs
            .iter()
            .any(|v| v["name"] == "SIGN" && v["writes"] == false));
    });
}

#[test]
fn get_ranges_sends_exactly_the_bytes_asked_for() {
    let server = TestServer::start();
    let data = random_bytes(4 * 1024 * 1024, 9);
    std::fs::write(server.path("f.bin"), &data).unwrap();
    // Old enough for its hash to be cached (a racy version's never is).
    std::thread::sleep(sft_io::RACY * 2);
    let hash = blake3::hash(&data).to_hex().to_string();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        // Small ones read together, a large one sent as a file body, the very last byte.
        let ranges = [
            [0u64, 1],
            [10, 4000],
            [5000, 100],
            [65536, 300_000],
            [400_000, 1],
            [4 * 1024 * 1024 - 1, 1],
        ];
        let request = json!({"verb":"GET","v":3,"path":"f.bin","ranges":ranges,"blake3":hash});
        raw.write(format!("{request}\n").as_bytes()).await;
        let reply = raw.reply().await;
        let total: u64 = ranges.iter().map(|r| r[1]).sum();
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["size"], total);
        assert_eq!(reply["file_size"], data.len() as u64);
        let body = raw.body(total as usize).await;
        let want: Vec<u8> = ranges
            .iter()
            .flat_map(|[o, l]| data[*o as usize..(o + l) as usize].iter().copied())
            .collect();
        assert_eq!(body, want);

        let code = |v: Value| v["code"].as_str().unwrap_or("ok").to_owned();
        let wrong = blake3::hash(b"x").to_hex().to_string();
        // Make the hash known, then a wrong one is `changed`.
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"f.bin\"}\n").await;
        raw.reply().await;
        for (request, want) in [
            (
                json!({"verb":"GET","v":3,"path":"f.bin","ranges":[[0,1]],"blake3":wrong}),
                "changed",
            ),
            (
                json!({"verb":"GET","v":3,"path":"f.bin","ranges":[[0,1]],"offset":0}),
                "bad_request",
            ),
            (
                json!({"verb":"GET","v":2,"path":"f.bin","ranges":[[0,1]]}),
                "bad_request",
            ),
            (
                json!({"verb":"GET","path":"f.bin","ranges":[[0,1]]}),
                "bad_request",
            ),
            (
                json!({"verb":"GET","v":3,"path":"f.bin","ranges":[[0,5],[2,5]]}),
                "bad_request",
            ),
            (
                json!({"verb":"GET","v":3,"path":"f.bin","ranges":[[4194300,5]]}),
                "bad_request",
            ),
            (
                json!({"verb":"GET","v":3,"path":"f.bin","ranges":[[0,1]],"blake3":"no"}),
                "bad_request",
            ),
            (json!({"verb":"GET","v":4,"path":"f.bin"}), "unsupported"),
        ] {
            raw.write(format!("{request}\n").as_bytes()).await;
            assert_eq!(code(raw.reply().await), want, "{request}");
        }
        // A version-2 GET is what it always was.
        raw.write(b"{\"verb\":\"GET\",\"v\":2,\"path\":\"f.bin\",\"offset\":4194300}\n")
            .await;
        let reply = raw.reply().await;
        assert_eq!(reply["size"], 4);
        assert_eq!(raw.body(4).await, &data[4_194_300..]);
    });
}

/// Reads a chunked body: its bytes, decompressed, and its terminator's hash.
async fn chunked_body(raw: &mut Raw) -> (Vec<u8>, Option<String>, u64) {
    let (mut out, mut wire) = (Vec::new(), 0u64);
    let mut d = sft_io::zblock::BlockDecompressor::new().unwrap();
    loop {
        let line = raw.reply().await;
        let size = line["size"].as_u64().unwrap();
        if size == 0 {
            return (out, line["blake3"].as_str().map(str::to_owned), wire);
        }
        wire += size;
        let bytes = raw.body(size as usize).await;
        match line["zstd"].as_u64() {
            Some(n) => {
                let mut plain = Vec::new();
                d.decompress(&bytes, n as usize, &mut plain).unwrap();
                out.extend_from_slice(&plain);
            }
            None => out.extend_from_slice(&bytes),
        }
    }
}

#[test]
fn get_compress_sends_a_chunked_body_that_shrinks_text_and_not_noise() {
    let server = TestServer::start();
    let text: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("line {i} of a log\n").into_bytes())
        .collect();
    let noise = random_bytes(3 * 1024 * 1024 + 7, 3);
    std::fs::write(server.path("t.log"), &text).unwrap();
    std::fs::write(server.path("n.bin"), &noise).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        for (name, data) in [("t.log", &text), ("n.bin", &noise)] {
            let request = json!({"verb":"GET","v":3,"path":name,"compress":"zstd","hash":true});
            raw.write(format!("{request}\n").as_bytes()).await;
            let reply = raw.reply().await;
            assert_eq!(reply["stream"], "chunked", "{reply}");
            assert_eq!(reply["file_size"], data.len() as u64);
            assert!(reply.get("size").is_none());
            let (body, hash, wire) = chunked_body(&mut raw).await;
            assert_eq!(&body, data);
            assert_eq!(hash.unwrap(), blake3::hash(data).to_hex().as_str());
            if name == "t.log" {
                assert!(wire < data.len() as u64 / 4, "{wire}");
            } else {
                assert_eq!(wire, data.len() as u64);
            }
        }
        // Once its hash is cached (the file left alone past the racy window), the terminator
        // carries the cached hash, and the bytes are still the file's.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(server.path("n.bin"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(120)); // past the 50 ms window
        for _ in 0..2 {
            let request = json!({"verb":"GET","v":3,"path":"n.bin","compress":"zstd","hash":true});
            raw.write(format!("{request}\n").as_bytes()).await;
            assert_eq!(raw.reply().await["stream"], "chunked");
            let (body, hash, _) = chunked_body(&mut raw).await;
            assert_eq!(body, noise);
            assert_eq!(hash.unwrap(), blake3::hash(&noise).to_hex().as_str());
        }
        // From an offset, and ranges compressed: the bytes asked for.
        let request = json!({"verb":"GET","v":3,"path":"t.log","compress":"zstd","offset":1000});
        raw.write(format!("{request}\n").as_bytes()).await;
        assert_eq!(raw.reply().await["offset"], 1000);
        let (body, hash, _) = chunked_body(&mut raw).await;
        assert_eq!(body, &text[1000..]);
        assert!(hash.is_none());
        let request = json!({"verb":"GET","v":3,"path":"t.log","compress":"zstd","ranges":[[5,10],[2000000,3000000]]});
        raw.write(format!("{request}\n").as_bytes()).await;
        assert_eq!(raw.reply().await["stream"], "chunked");
        let (body, _, _) = chunked_body(&mut raw).await;
        let want = [&text[5..15], &text[2_000_000..5_000_000]].concat();
        assert_eq!(body, want);
        // Without v:3, refused; a plain GET is unchanged.
        raw.write(b"{\"verb\":\"GET\",\"path\":\"t.log\",\"compress\":\"zstd\"}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "bad_request");
    });
}

#[test]
fn a_server_without_compression_says_so_and_refuses_it() {
    let server = TestServer::start_with(&["--no-compress"], sft_commands::builtins());
    std::fs::write(server.path("f"), b"hello").unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"HELLO\"}\n").await;
        assert!(raw.reply().await["limits"].get("zstd_max_level").is_none());
        raw.write(b"{\"verb\":\"GET\",\"v\":3,\"path\":\"f\",\"compress\":\"zstd\"}\n")
            .await;
        assert_eq!(raw.reply().await["code"], "unsupported");
        let send = json!({"verb":"SEND","v":3,"path":"g","body":"chunked","compress":"zstd"});
        raw.write(format!("{send}\n").as_bytes()).await;
        assert_eq!(raw.reply().await["code"], "unsupported");
        raw.write(b"{\"verb\":\"GET\",\"path\":\"f\"}\n").await;
        assert_eq!(raw.reply().await["size"], 5);
    });
}

/// Sends a chunked upload of `chunks` (header line, bytes) after `request`'s go-ahead.
async fn upload(raw: &mut Raw, request: Value, chunks: &[(Value, Vec<u8>)]) -> Value {
    raw.write(format!("{request}\n").as_bytes()).await;
    let ready = raw.reply().await;
    if ready["ok"] != true {
        return ready;
    }
    for (header, bytes) in chunks {
        raw.write(format!("{header}\n").as_bytes()).await;
        raw.write(bytes).await;
    }
    raw.reply().await
}

#[test]
fn send_compressed_and_delta_build_the_file() {
    let server = TestServer::start();
    let old = random_bytes(3 * 1024 * 1024, 21);
    std::fs::write(server.path("f.bin"), &old).unwrap();
    let mut new = old.clone();
    new[1_000_000..1_004_096].copy_from_slice(&random_bytes(4096, 22));
    new.extend_from_slice(&[b'z'; 70_000]);
    let zeros = zstd::bulk::compress(&[b'z'; 70_000], 3).unwrap();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let (_, _, end) = sign(&mut raw, json!({"verb":"SIGN","v":3,"path":"f.bin"})).await;
        let basis = end["blake3"].as_str().unwrap().to_owned();
        let hash = blake3::hash(&new).to_hex().to_string();
        let request = json!({"verb":"SEND","v":3,"path":"f.bin","body":"chunked","overwrite":true,
            "compress":"zstd","mode":0o600,
            "delta":{"basis":basis,"file_size":new.len()}});
        let chunks = [
            (json!({"copy":0,"len":1_000_000}), vec![]),
            (json!({"size":4096}), new[1_000_000..1_004_096].to_vec()),
            (
                json!({"copy":1_004_096,"len":old.len() - 1_004_096}),
                vec![],
            ),
            (json!({"size":zeros.len(),"zstd":70_000}), zeros.clone()),
            (json!({"size":0,"blake3":hash}), vec![]),
        ];
        let reply = upload(&mut raw, request.clone(), &chunks).await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["size"], new.len() as u64);
        assert_eq!(reply["reused"], old.len() as u64 - 4096);
        assert_eq!(std::fs::read(server.path("f.bin")).unwrap(), new);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(server.path("f.bin"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The same delta again: its basis is gone, so `changed`, and nothing is stored.
        let reply = upload(&mut raw, request, &chunks).await;
        assert_eq!(reply["code"], "changed");
        assert_eq!(std::fs::read(server.path("f.bin")).unwrap(), new);
        // A compressed upload of a new file.
        let request = json!({"verb":"SEND","v":3,"path":"z","body":"chunked","compress":"zstd"});
        let chunks = [
            (json!({"size":zeros.len(),"zstd":70_000}), zeros.clone()),
            (json!({"size":3}), b"abc".to_vec()),
            (json!({"size":0}), vec![]),
        ];
        let reply = upload(&mut raw, request, &chunks).await;
        assert_eq!(reply["size"], 70_003, "{reply}");
        assert_eq!(
            std::fs::read(server.path("z")).unwrap(),
            [&[b'z'; 70_000][..], b"abc"].concat()
        );
    });
}
