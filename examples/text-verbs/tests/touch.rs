//! `TOUCH`, the example verb that writes: in process, with `sft_server::Server` serving this
//! crate's registry and `sft_client::Client::call`.

use async_std::task;
use sft_client::{Client, Error, ErrorCode};
use sft_server::{Config, Server};
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Serves `root` with this crate's verbs (and `extra` flags) while `body` runs with a client.
fn with_server<F, Fut>(root: &Path, extra: &[&str], body: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut argv = vec![
        "sft-text-server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--root",
        root.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    let config = Config::from_args_iter(argv).unwrap();
    let server = task::block_on(Server::bind(config, sft_text_verbs::registry())).unwrap();
    let addr = server.local_addr().to_string();
    let handle = server.handle();
    let running = task::spawn(server.run());
    task::block_on(async {
        let client = Client::connect(&addr, 7005).await.unwrap();
        body(client).await;
    });
    handle.shutdown();
    task::block_on(running).unwrap();
}

async fn touch(client: &mut Client, path: &str) -> Result<bool, ErrorCode> {
    let args = serde_json::json!({ "path": path });
    match client.call("TOUCH", args.as_object().unwrap()).await {
        Ok(reply) => {
            let created = reply.fields()["created"].as_bool().unwrap();
            reply.read_body(&mut Vec::new()).await.unwrap();
            Ok(created)
        }
        Err(Error::Remote(e)) => Err(e.code),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn touch_creates_then_updates_and_stays_in_the_sandbox() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::write(root.path().join("old.txt"), b"keep").unwrap();
    fs::File::options()
        .write(true)
        .open(root.path().join("old.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let r = root.path().to_owned();
    with_server(root.path(), &[], |mut client| async move {
        assert_eq!(touch(&mut client, "new/ready").await, Ok(true));
        assert_eq!(fs::read(r.join("new/ready")).unwrap(), b"");
        assert_eq!(touch(&mut client, "new/ready").await, Ok(false));
        assert_eq!(touch(&mut client, "old.txt").await, Ok(false));
        let mtime = fs::metadata(r.join("old.txt")).unwrap().modified().unwrap();
        assert!(mtime > old, "the time was set to now");
        assert_eq!(
            fs::read(r.join("old.txt")).unwrap(),
            b"keep",
            "contents kept"
        );
        for (path, want) in [
            ("new", ErrorCode::BadRequest),
            ("../x", ErrorCode::Forbidden),
            (".sft/x", ErrorCode::Forbidden),
            ("out/x", ErrorCode::Forbidden),
            ("", ErrorCode::BadRequest),
        ] {
            assert_eq!(touch(&mut client, path).await, Err(want), "{path:?}");
        }
        let hello = client.hello().await.unwrap();
        let verb = hello.verbs.iter().find(|v| v.name == "TOUCH").unwrap();
        assert!(verb.writes && !verb.summary.is_empty());
    });
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_read_only_server_refuses_touch() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_owned();
    with_server(root.path(), &["--read-only"], |mut client| async move {
        assert_eq!(touch(&mut client, "x").await, Err(ErrorCode::ReadOnly));
        assert!(!r.join("x").exists());
        assert!(!r.join(".sft").exists(), "nothing written at all");
    });
}

/// What EXTENDING.md says of a file a verb stages and commits: created `0644` less the server's
/// umask by `Root::stage`, and `Staged::commit` leaves its bits as they are.
#[test]
fn a_committed_staged_file_is_0644_less_the_umask() {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let root = tempfile::tempdir().unwrap();
    let probe = root.path().join("probe");
    fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o777)
        .open(&probe)
        .unwrap();
    let umask = !fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
    let r = root.path().to_owned();
    with_server(root.path(), &[], |mut client| async move {
        assert_eq!(touch(&mut client, "made").await, Ok(true));
        let mode = fs::metadata(r.join("made")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644 & !umask, "umask {umask:o}");
    });
}
