//! LIST and STAT: over raw sockets (the exact framing), through the client library, and through
//! the real `sft ls` / `sft stat` binaries, against an in-process server.

use async_std::task;
use serde_json::{json, Value};
use sft_client::{Client, Error, Kind};
use sft_integration_tests::{sft, Raw, TestServer};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Output;
use std::time::{Duration, UNIX_EPOCH};

const MTIME: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC
const MODE: u32 = 0o644;

/// A server whose root holds:
/// ```text
/// hello.txt (6 bytes)   sub/                 link_to_sub -> sub    link_out -> /tmp-ish
/// .x.sft-part           sub/a.txt (1 byte)   sub/deeper/b.txt (2 bytes)
/// ```
/// plus the server's own `.sft/`, which is never listed.
fn server() -> (TestServer, tempfile::TempDir) {
    let server = TestServer::start();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "secret").unwrap();
    fs::create_dir_all(server.path("sub/deeper")).unwrap();
    fs::write(server.path("hello.txt"), "hello\n").unwrap();
    fs::write(server.path("sub/a.txt"), "a").unwrap();
    fs::write(server.path("sub/deeper/b.txt"), "bb").unwrap();
    fs::write(server.path(".x.sft-part"), "partial download").unwrap();
    symlink("sub", server.path("link_to_sub")).unwrap();
    symlink(outside.path(), server.path("link_out")).unwrap();
    let file = fs::File::options()
        .write(true)
        .open(server.path("hello.txt"))
        .unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME))
        .unwrap();
    // Entries carry their permission bits: fixed here, whatever the umask.
    for f in ["hello.txt", "sub/deeper/b.txt"] {
        fs::set_permissions(server.path(f), fs::Permissions::from_mode(MODE)).unwrap();
    }
    (server, outside)
}

/// Sends `request` and reads a whole LIST reply: header, entry lines (sorted by name), end line.
async fn list_raw(raw: &mut Raw, request: Value) -> (Value, Vec<Value>, Value) {
    raw.write(format!("{request}\n").as_bytes()).await;
    let header = raw.reply().await;
    if header["ok"] != true {
        return (header, Vec::new(), Value::Null);
    }
    let mut entries = Vec::new();
    loop {
        let line = raw.reply().await;
        if line.get("end").is_some() || line.get("ok").is_some() {
            entries.sort_by(|a: &Value, b| a["name"].as_str().cmp(&b["name"].as_str()));
            return (header, entries, line);
        }
        entries.push(line);
    }
}

fn names(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

#[test]
fn list_of_the_root_is_a_line_stream_without_hidden_files() {
    let (server, _outside) = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let (header, entries, end) = list_raw(&mut raw, json!({"verb": "LIST"})).await;
        assert_eq!(header, json!({"ok": true, "stream": "lines", "path": "."}));
        assert_eq!(
            names(&entries),
            ["hello.txt", "link_out", "link_to_sub", "sub"],
            "no .sft/ and no partial download"
        );
        assert_eq!(
            entries[0],
            json!({"name": "hello.txt", "kind": "file", "size": 6, "mtime": MTIME, "mode": MODE})
        );
        assert_eq!(entries[1]["kind"], "symlink");
        assert_eq!(entries[2]["kind"], "symlink");
        assert_eq!(entries[3]["kind"], "folder");
        assert_eq!(entries[3]["size"], 0);
        assert_eq!(end, json!({"end": true, "count": 4, "skipped": 0}));

        // The connection is in step: the next request works.
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"hello.txt\"}\n")
            .await;
        assert_eq!(raw.reply().await["entry"]["size"], 6);
    });
}

#[test]
fn list_of_a_subfolder_and_recursively() {
    let (server, _outside) = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let (header, entries, end) =
            list_raw(&mut raw, json!({"verb": "LIST", "path": "sub/"})).await;
        assert_eq!(header["path"], "sub");
        assert_eq!(names(&entries), ["a.txt", "deeper"]);
        assert_eq!(end["count"], 2);

        // Recursive: names relative to the listed folder; symlinks reported, never followed
        // (link_to_sub would list sub twice, link_out would leave the root).
        let (_, entries, end) =
            list_raw(&mut raw, json!({"verb": "LIST", "recursive": true})).await;
        assert_eq!(
            names(&entries),
            [
                "hello.txt",
                "link_out",
                "link_to_sub",
                "sub",
                "sub/a.txt",
                "sub/deeper",
                "sub/deeper/b.txt"
            ]
        );
        assert_eq!(end, json!({"end": true, "count": 7, "skipped": 0}));

        // A folder named through a symlink inside the root is listed like the folder.
        let (header, entries, _) = list_raw(
            &mut raw,
            json!({"verb": "LIST", "path": "link_to_sub", "recursive": true}),
        )
        .await;
        assert_eq!(header["path"], "link_to_sub");
        assert_eq!(names(&entries), ["a.txt", "deeper", "deeper/b.txt"]);
    });
}

#[test]
fn list_and_stat_refuse_paths_outside_the_root_and_reserved_ones() {
    let (server, _outside) = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let table = [
            (json!({"verb": "LIST", "path": ".."}), "forbidden"),
            (json!({"verb": "LIST", "path": "sub/../.."}), "forbidden"),
            (json!({"verb": "LIST", "path": "/etc"}), "forbidden"),
            (json!({"verb": "LIST", "path": "link_out"}), "forbidden"),
            (json!({"verb": "LIST", "path": ".sft"}), "forbidden"),
            (json!({"verb": "LIST", "path": ".sft/tmp"}), "forbidden"),
            (json!({"verb": "LIST", "path": "hello.txt"}), "bad_request"),
            (json!({"verb": "LIST", "path": "missing"}), "not_found"),
            (json!({"verb": "LIST", "path": 7}), "bad_request"),
            (json!({"verb": "STAT", "path": ".."}), "forbidden"),
            (
                json!({"verb": "STAT", "path": "../etc/passwd"}),
                "forbidden",
            ),
            (
                json!({"verb": "STAT", "path": "link_out/secret"}),
                "forbidden",
            ),
            (json!({"verb": "STAT", "path": ".sft"}), "forbidden"),
            (
                json!({"verb": "STAT", "path": "link_to_sub/../.sft"}),
                "forbidden",
            ),
            (json!({"verb": "STAT", "path": "missing"}), "not_found"),
            (
                json!({"verb": "STAT", "path": "hello.txt/x"}),
                "bad_request",
            ),
        ];
        for (request, code) in table {
            raw.write(format!("{request}\n").as_bytes()).await;
            let reply = raw.reply().await;
            assert_eq!(reply["ok"], false, "{request} → {reply}");
            assert_eq!(reply["code"], code, "{request} → {reply}");
        }
        // Every refusal came before any stream: the connection is still in step.
        let (_, entries, _) = list_raw(&mut raw, json!({"verb": "LIST"})).await;
        assert_eq!(entries.len(), 4);
    });
}

#[test]
fn stat_of_a_file_a_folder_a_symlink_and_the_root() {
    let (server, _outside) = server();
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"./sub/../hello.txt\"}\n")
            .await;
        assert_eq!(
            raw.reply().await,
            json!({"ok": true, "entry":
                {"name": "hello.txt", "kind": "file", "size": 6, "mtime": MTIME, "mode": MODE,
                 "blake3": blake3::hash(b"hello\n").to_hex().as_str()}}),
            "the entry is nested: a top-level size would announce a body"
        );
        raw.write(b"{\"verb\":\"STAT\",\"path\":\"hello.txt\",\"hash\":false}\n")
            .await;
        assert!(raw.reply().await["entry"].get("blake3").is_none());
    });
    task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        let e = client.stat("sub").await.unwrap();
        assert_eq!((e.name.as_str(), e.kind, e.size), ("sub", Kind::Folder, 0));
        // A symlink is described, not followed — even one that points outside the root.
        let e = client.stat("link_out").await.unwrap();
        assert_eq!(e.kind, Kind::Symlink);
        let e = client.stat("link_to_sub/a.txt").await.unwrap();
        assert_eq!((e.kind, e.size), (Kind::File, 1));
        assert_eq!(
            e.blake3.map(|h| h.len()),
            Some(64),
            "files carry their hash"
        );
        let e = client.stat("").await.unwrap();
        assert_eq!((e.name.as_str(), e.kind), (".", Kind::Folder));
        assert!(e.blake3.is_none());
        let err = client.stat("missing").await.unwrap_err();
        assert_eq!(err.code(), Some(sft_protocol::ErrorCode::NotFound));
    });
}

#[test]
fn a_big_tree_streams_through_the_client_library() {
    let server = TestServer::start();
    for d in 0..20 {
        let dir = server.path(&format!("d{d:02}/inner"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("f{f:03}")), [b'x'; 3]).unwrap();
        }
    }
    task::block_on(async {
        let mut client = Client::connect(&server.server_arg(), 7005).await.unwrap();
        let mut listing = client.list("", true).await.unwrap();
        let (mut files, mut folders, mut bytes) = (0, 0, 0);
        while let Some(e) = listing.next().await.unwrap() {
            match e.kind {
                Kind::File => files += 1,
                Kind::Folder => folders += 1,
                other => panic!("unexpected {other:?}"),
            }
            bytes += e.size;
        }
        assert_eq!((files, folders, bytes), (2000, 40, 6000));
        assert_eq!(listing.end().unwrap().count, 2040);
        drop(listing);

        // A listing abandoned midway leaves its stream on the wire: the connection is unusable,
        // and says so instead of misreading entries as replies.
        let mut listing = client.list("", true).await.unwrap();
        listing.next().await.unwrap().unwrap();
        drop(listing);
        let err = client.stat("d00").await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
    });
}

#[test]
fn unreadable_folders_are_listed_with_an_error_and_the_walk_goes_on() {
    let server = TestServer::start();
    fs::create_dir_all(server.path("locked/inside")).unwrap();
    fs::create_dir_all(server.path("open")).unwrap();
    fs::write(server.path("open/f"), "f").unwrap();
    let locked = server.path("locked");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let readable_anyway = fs::read_dir(&locked).is_ok(); // running as root
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        let (_, entries, end) =
            list_raw(&mut raw, json!({"verb": "LIST", "recursive": true})).await;
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(names(&entries).contains(&"open/f"), "{entries:?}");
        assert_eq!(end["end"], true);
        if readable_anyway {
            eprintln!("skipping the permission check: this user reads any folder");
            return;
        }
        assert_eq!(entries[0]["name"], "locked");
        assert_eq!(entries[0]["error"]["code"], "forbidden");
        assert!(!names(&entries).contains(&"locked/inside"));
    });
}

fn stdout(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn sft_ls_prints_a_table_or_one_json_document() {
    let (server, _outside) = server();
    let cwd = tempfile::tempdir().unwrap();
    let arg = server.server_arg();

    let table = stdout(&sft(&["ls", &arg], cwd.path()));
    let mut lines: Vec<&str> = table.lines().collect();
    lines.sort_by_key(|l| l.rsplit("  ").next().unwrap().to_owned());
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(
        lines[0],
        "file               6  2023-11-14 22:13:20  hello.txt"
    );
    assert!(lines[3].starts_with("folder             -  "), "{table}");
    assert!(lines[3].ends_with("  sub"), "{table}");

    let sub = stdout(&sft(&["ls", &arg, "sub"], cwd.path()));
    let mut names: Vec<&str> = sub
        .lines()
        .map(|l| l.rsplit("  ").next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "deeper"]);

    let json_doc = stdout(&sft(&["ls", &arg, "-r", "--json"], cwd.path()));
    assert_eq!(json_doc.lines().count(), 1, "one document: {json_doc}");
    let doc: Value = serde_json::from_str(&json_doc).unwrap();
    assert_eq!(doc["path"], ".");
    assert_eq!(doc["recursive"], true);
    assert_eq!(doc["count"], 7);
    assert_eq!(doc["skipped"], 0);
    let mut entries = doc["entries"].as_array().unwrap().clone();
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    assert_eq!(
        entries[6],
        json!({"name": "sub/deeper/b.txt", "kind": "file", "size": 2, "mtime": entries[6]["mtime"],
               "mode": MODE})
    );

    let root = stdout(&sft(
        &["ls", &arg, "sub/deeper/../..", "--json"],
        cwd.path(),
    ));
    assert_eq!(serde_json::from_str::<Value>(&root).unwrap()["count"], 4);
}

#[test]
fn sft_stat_and_refusals_exit_4() {
    let (server, _outside) = server();
    let cwd = tempfile::tempdir().unwrap();
    let arg = server.server_arg();

    let text = stdout(&sft(&["stat", &arg, "hello.txt"], cwd.path()));
    assert_eq!(
        text,
        format!(
            "name    hello.txt\nkind    file\nsize    6 bytes\nmtime   2023-11-14 22:13:20 UTC (1700000000)\nblake3  {}\n",
            blake3::hash(b"hello\n").to_hex()
        )
    );
    let text = stdout(&sft(&["stat", &arg, "sub", "--json"], cwd.path()));
    let entry: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(entry["kind"], "folder");

    for (args, phrase) in [
        (&["stat", &arg, "missing"][..], "not found"),
        (&["stat", &arg, "../x"], "forbidden"),
        (&["ls", &arg, ".."], "forbidden"),
    ] {
        let out = sft(args, cwd.path());
        assert_eq!(out.status.code(), Some(4), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: ") && err.contains(phrase), "{err}");
        assert!(out.stdout.is_empty());
    }
    // `ls` of a file shows that file, as `ls` does.
    let line = stdout(&sft(&["ls", &arg, "hello.txt"], cwd.path()));
    assert_eq!(
        line,
        "file               6  2023-11-14 22:13:20  hello.txt\n"
    );
}
