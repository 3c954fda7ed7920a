//! A storage that stops answering never freezes the server (PROTOCOL.md §4.1): its requests
//! are answered `unavailable` within `--storage-timeout`, downloads under way are cut in
//! bounded time, `HELLO` and every other connection go on being answered (`HELLO` saying
//! `unavailable` while the storage hangs), at most `--storage-jobs` threads wait on it, and
//! everything works again once it answers.
//!
//! The storage is a local folder seen through FUSE (`bindfs`), whose daemon the test stops
//! (`SIGSTOP`) as a hung network mount behaves, then lets go on (`SIGCONT`). The same on a
//! GlusterFS mount behind HAProxy is in `multi_server.rs`. Where FUSE cannot run here (not
//! root, no `bindfs`, no `/dev/fuse`), the test says so and passes without running.

use sft_integration_tests::gluster::{find_program, signal, Resume};
use sft_integration_tests::{wait_until, ServerProcess};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

/// The server's deadline for a storage call, and how many may wait at once.
const TIMEOUT_S: u64 = 2;
const JOBS: usize = 4;
/// The longest any answer may take here: a failure bound, never a wait.
const BOUND: Duration = Duration::from_secs(20);
/// `statfs`'s file-system type of a FUSE mount.
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;

/// A local folder (`back`) seen through FUSE at `mnt`, by a `bindfs` in the foreground.
struct Bindfs {
    child: Child,
    back: tempfile::TempDir,
    mnt: tempfile::TempDir,
}

fn is_fuse(path: &Path) -> bool {
    #[allow(clippy::unnecessary_cast)] // the field's type differs between targets
    rustix::fs::statfs(path).is_ok_and(|st| st.f_type as u64 == FUSE_SUPER_MAGIC)
}

impl Bindfs {
    /// Mounts a new folder through FUSE, or says why not.
    fn start(test: &str) -> Option<Bindfs> {
        let why = if !rustix::process::geteuid().is_root() {
            Some("mounting with FUSE needs root".to_owned())
        } else if !Path::new("/dev/fuse").exists() {
            Some("no /dev/fuse".to_owned())
        } else if find_program("bindfs").is_none() {
            Some("bindfs is not installed (a Debian package: apt-get install bindfs)".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            // Straight to standard error: the test harness would hide what `eprintln!` prints.
            let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
            return None;
        }
        let (back, mnt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let child = Command::new(find_program("bindfs").unwrap())
            .arg("-f")
            .arg(back.path())
            .arg(mnt.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bindfs");
        let fs = Bindfs { child, back, mnt };
        wait_until(BOUND, || is_fuse(fs.mnt.path()));
        Some(fs)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        signal(self.pid(), Signal::CONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mnt.path())
            .status();
    }
}

/// A connection with every read bounded by [`BOUND`] (a failure, not a wait).
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(BOUND)).unwrap();
        Conn {
            reader: BufReader::new(stream),
        }
    }

    fn ask(&mut self, request: &str) -> serde_json::Value {
        writeln!(self.reader.get_mut(), "{request}").expect("send a request");
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("a reply within the bound");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"))
    }

    /// Reads what the server still sends, to the end of the stream.
    fn drain(&mut self) -> u64 {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n as u64,
                Err(e) => panic!("the connection neither ended nor moved within the bound: {e}"),
            }
        }
    }
}

/// One request on a connection of its own, and how long its reply took.
fn ask(addr: SocketAddr, request: &str) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let reply = Conn::open(addr).ask(request);
    (reply, started.elapsed())
}

/// The number of threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The value of the sample `name` on the metrics page at `addr`.
fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("the metrics page");
    page.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[test]
fn a_hung_storage_fails_its_requests_in_bounded_time_and_the_server_answers_everyone_else() {
    const TEST: &str =
        "a_hung_storage_fails_its_requests_in_bounded_time_and_the_server_answers_everyone_else";
    let Some(fs) = Bindfs::start(TEST) else {
        return;
    };
    // Files written behind FUSE's back: the first look at each through the mount asks the
    // daemon, so none is answered from a cache while it is stopped.
    const BIG: u64 = 256 << 20;
    std::fs::File::create(fs.back.path().join("big.bin"))
        .unwrap()
        .set_len(BIG)
        .unwrap();
    const STATS: usize = 10 * JOBS;
    for i in 0..STATS {
        std::fs::write(fs.back.path().join(format!("s{i}.txt")), b"small").unwrap();
    }
    let (timeout, jobs) = (TIMEOUT_S.to_string(), JOBS.to_string());
    let server = ServerProcess::start(
        fs.mnt.path(),
        &[
            "--storage-timeout",
            &timeout,
            "--storage-jobs",
            &jobs,
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = server.metrics_addr();
    let pid = server.child.id();
    assert_eq!(ask(server.addr, r#"{"verb":"HELLO"}"#).0["ok"], true);

    // Three downloads under way, their clients not reading for now.
    let mut downloads: Vec<Conn> = (0..3)
        .map(|_| {
            let mut conn = Conn::open(server.addr);
            let reply = conn.ask(r#"{"verb":"GET","path":"big.bin"}"#);
            assert_eq!(reply["size"], BIG, "{reply}");
            conn
        })
        .collect();
    let before = threads(pid);

    assert!(signal(fs.pid(), Signal::STOP));
    // Declared after the server, so dropped before it: a failed assertion lets the storage go
    // on before the server is stopped (whose threads wait on it until then).
    let _resume = Resume(fs.pid());
    let stopped = Instant::now();

    // HELLO goes on being answered, each within the probe's deadline, and says the storage
    // does not answer once the last probe's result (reused for a second) is stale.
    let mut hello;
    loop {
        let took;
        (hello, took) = ask(server.addr, r#"{"verb":"HELLO"}"#);
        assert!(took < Duration::from_secs(2), "HELLO took {took:?}");
        if hello["ok"] != true || stopped.elapsed() > BOUND {
            break;
        }
    }
    assert_eq!(hello["code"], "unavailable", "{hello}");
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "HELLO said ok for {:?} after the storage stopped",
        stopped.elapsed()
    );

    // Ten times as many requests as may wait on the storage: each is answered `unavailable`
    // in bounded time, and no more than JOBS threads are held.
    let stats: Vec<_> = (0..STATS)
        .map(|i| {
            let addr = server.addr;
            std::thread::spawn(move || {
                ask(addr, &format!(r#"{{"verb":"STAT","path":"s{i}.txt"}}"#))
            })
        })
        .collect();
    for stat in stats {
        let (reply, took) = stat.join().unwrap();
        assert_eq!(reply["code"], "unavailable", "{reply}");
        assert!(
            took < Duration::from_secs(3 * TIMEOUT_S + 2),
            "STAT took {took:?}"
        );
    }
    let held = threads(pid);
    assert!(
        held <= before + JOBS + 2,
        "{held} threads with the storage hung, {before} before: more than --storage-jobs ({JOBS}) wait on it"
    );
    assert_eq!(metric(metrics, "sft_storage_up"), Some(0.0));
    let stuck = metric(metrics, "sft_storage_calls_stuck").unwrap();
    assert!((1.0..=JOBS as f64).contains(&stuck), "{stuck} calls stuck");
    assert!(metric(metrics, "sft_storage_calls_given_up_total").unwrap() >= STATS as f64);

    // The downloads under way end, short, in bounded time.
    for conn in &mut downloads {
        let got = conn.drain();
        assert!(got < BIG, "a download went on whole from a hung storage");
    }
    assert!(stopped.elapsed() < BOUND);
    // HELLO still answered, still saying so.
    assert_eq!(
        ask(server.addr, r#"{"verb":"HELLO"}"#).0["code"],
        "unavailable"
    );

    // Once the storage answers again, so does the server: HELLO says ok, files are served.
    assert!(signal(fs.pid(), Signal::CONT));
    wait_until(BOUND, || {
        ask(server.addr, r#"{"verb":"HELLO"}"#).0["ok"] == true
    });
    let mut conn = Conn::open(server.addr);
    let reply = conn.ask(r#"{"verb":"GET","path":"s0.txt"}"#);
    assert_eq!(reply["size"], 5, "{reply}");
    wait_until(BOUND, || {
        metric(metrics, "sft_storage_calls_stuck") == Some(0.0)
            && metric(metrics, "sft_storage_up") == Some(1.0)
    });
    let warned =
        server.logs_with("the served folder's storage does not answer: HELLO answers unavailable");
    assert_eq!(warned.len(), 1, "the change is logged once");
    assert_eq!(
        server
            .logs_with("the served folder's storage answers again")
            .len(),
        1
    );
}
