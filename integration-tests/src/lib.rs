//! Shared harness for sft's end-to-end tests: servers in-process and as real processes, the
//! real binaries, raw sockets, and deterministic test data.
#![warn(rust_2018_idioms)]

use async_std::net::TcpStream;
use async_std::task;
use futures::{AsyncReadExt, AsyncWriteExt};
use sft_server::{Config, Handle, Server};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A server running in this process on 127.0.0.1 and an ephemeral port; stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: Handle,
    pub root: tempfile::TempDir,
    task: Option<task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server with the built-in verbs over a new temporary root.
    pub fn start() -> TestServer {
        Self::start_with(&[], sft_commands::builtins())
    }

    /// Starts a server with extra command-line options and a registry.
    pub fn start_with(args: &[&str], registry: sft_commands::Registry) -> TestServer {
        let root = tempfile::tempdir().expect("temp dir");
        let mut argv = vec!["sft-server", "--host", "127.0.0.1", "--port", "0", "--root"];
        let root_str = root.path().to_str().expect("utf-8 temp path").to_owned();
        argv.push(&root_str);
        argv.extend_from_slice(args);
        let config = Config::from_args_iter(argv).expect("valid test config");
        let server = task::block_on(Server::bind(config, registry)).expect("bind");
        let addr = server.local_addr();
        let handle = server.handle();
        let task = Some(task::spawn(server.run()));
        TestServer {
            addr,
            handle,
            root,
            task,
        }
    }

    /// `127.0.0.1:PORT`, as a client argument.
    pub fn server_arg(&self) -> String {
        self.addr.to_string()
    }

    /// A path inside the served root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Waits (bounded) until no session is live: every connection was fully handled.
    pub fn wait_idle(&self) {
        wait_until(Duration::from_secs(20), || self.handle.session_count() == 0);
    }

    /// Files in the staging area (upload debris if any remain).
    pub fn staging_files(&self) -> Vec<PathBuf> {
        list_files(&self.path(".sft/tmp"))
    }

    /// Stops the server and waits (at most `limit`, else panics) for `run` to return, keeping
    /// the root for inspection.
    pub fn stop_within(&mut self, limit: Duration) -> std::io::Result<()> {
        self.handle.shutdown();
        let run = self.task.take().expect("running");
        task::block_on(async_std::future::timeout(limit, run))
            .unwrap_or_else(|_| panic!("Server::run did not return within {limit:?}"))
    }

    /// Stops the server and waits for `run` to return.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        task::block_on(self.task.take().expect("running"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            self.handle.shutdown();
            let _ = task::block_on(async_std::future::timeout(Duration::from_secs(10), t));
        }
    }
}

/// Polls `cond` every few milliseconds until it holds; panics after `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every regular file below `dir`, recursively.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(list_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Raises this process's open-file limit to its hard limit (load tests open many sockets;
/// child processes inherit it).
pub fn raise_fd_limit() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, raised);
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Path of a workspace binary (`sft`, `sft-server`) built by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built; run the suite with `cargo test --workspace`, which builds every binary",
        path.display()
    );
    path
}

/// Runs the `sft` client binary to completion, with stdin closed.
pub fn sft(args: &[&str], cwd: &Path) -> Output {
    Command::new(bin("sft"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run sft")
}

/// Runs the `sft` client binary to completion with `input` on its standard input.
pub fn sft_stdin(args: &[&str], cwd: &Path, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin("sft"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sft");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // Written from a thread: sft may answer (or fail) before it has read all of it.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for sft");
    let _ = writer.join();
    out
}

/// The real `sft-server` binary as a child process on an ephemeral port; killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub root: PathBuf,
    /// Every log line the server wrote so far (JSON objects).
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `sft-server --port 0 --log-format json --root ROOT ARGS…` and waits for its
    /// "listening" log line, which carries the real address.
    pub fn start(root: &Path, args: &[&str]) -> ServerProcess {
        Self::start_in_shell(root, args, None)
    }

    /// Like [`ServerProcess::start`], but runs `setup` (a bash snippet such as
    /// `ulimit -f 1024`) in the shell that then `exec`s the server.
    pub fn start_in_shell(root: &Path, args: &[&str], setup: Option<&str>) -> ServerProcess {
        let mut command = match setup {
            None => Command::new(bin("sft-server")),
            Some(setup) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("{setup}; exec \"$0\" \"$@\""))
                    .arg(bin("sft-server"));
                c
            }
        };
        let format = if args.contains(&"--log-format") {
            &[][..]
        } else {
            &["--log-format", "json"][..]
        };
        let mut child = command
            .args(["--port", "0", "--root"])
            .arg(root)
            .args(format)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sft-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let listening = match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => (v["msg"] == "listening")
                        .then(|| v["addr"].as_str().unwrap_or_default().to_owned()),
                    // Pretty format: `… INFO  listening addr=1.2.3.4:5 root=…`.
                    Err(_) if line.contains(" listening addr=") => line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .map(str::to_owned),
                    Err(_) => None,
                };
                sink.lock().unwrap().push(line);
                if let Some(addr) = listening {
                    let _ = tx.send(addr);
                }
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
            // No address, no ServerProcess to kill it on drop: stop it here.
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not log its address: {:?}", logs.lock().unwrap())
        };
        let mut addr: SocketAddr = addr.parse().expect("socket address in log");
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        ServerProcess {
            child,
            addr,
            root: root.to_owned(),
            logs,
        }
    }

    /// The metrics address the server logged (`--metrics`).
    pub fn metrics_addr(&self) -> SocketAddr {
        let logged = self.logs_with("metrics listening (Prometheus text format at /metrics)");
        assert_eq!(logged.len(), 1, "one metrics listener logged");
        logged[0]["addr"].as_str().unwrap().parse().unwrap()
    }

    /// Log lines (parsed) whose `msg` is `msg`.
    pub fn logs_with(&self, msg: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["msg"] == msg)
            .collect()
    }

    /// The server's peak resident memory so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Sends a signal (`TERM`, `INT`…) to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw TCP connection for speaking the protocol by hand.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Self::from_stream(TcpStream::connect(addr).await.expect("connect"))
    }

    /// Wraps a connection made elsewhere.
    pub fn from_stream(stream: TcpStream) -> Raw {
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends `request`, a `SEND` header, with `body`: the header with `size` set, then, after
    /// the go-ahead, the bytes. Returns the final reply, or the refusal that came instead of
    /// the go-ahead.
    pub async fn send(&mut self, mut request: serde_json::Value, body: &[u8]) -> serde_json::Value {
        request["size"] = body.len().into();
        self.write(format!("{request}\n").as_bytes()).await;
        let ready = self.reply().await;
        if ready["ok"] != true {
            return ready;
        }
        self.write(body).await;
        self.reply().await
    }

    /// Reads one reply line (panics on EOF) and parses it as JSON.
    pub async fn reply(&mut self) -> serde_json::Value {
        let line = self.line().await.expect("a reply line, not end of stream");
        serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "reply {:?} is not JSON: {e}",
                String::from_utf8_lossy(&line)
            )
        })
    }

    /// Reads one line; `None` at end of stream.
    pub async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(i + 1);
                return Some(std::mem::replace(&mut self.buf, rest));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads exactly `n` body bytes.
    pub async fn body(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 64 * 1024];
            let got = self.stream.read(&mut chunk).await.expect("read body");
            assert!(
                got > 0,
                "end of stream after {} of {n} body bytes",
                self.buf.len()
            );
            self.buf.extend_from_slice(&chunk[..got]);
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Whether the server closed the connection (reads to end of stream, bounded in time).
    pub async fn closed(&mut self) -> bool {
        let wait = async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        };
        async_std::future::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or(false)
    }
}

/// What a [`Relay`] does to the bytes it forwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tamper {
    /// Flip the lowest bit of the byte at this offset of the server → client stream.
    pub flip_down_at: Option<u64>,
    /// Flip the lowest bit of the byte at this offset of the client → server stream.
    pub flip_up_at: Option<u64>,
    /// Close both sides once this many server → client bytes were forwarded.
    pub cut_down_after: Option<u64>,
    /// Close both sides once this many client → server bytes were forwarded.
    pub cut_up_after: Option<u64>,
}

/// A man in the middle on 127.0.0.1: forwards bytes between a client and `target`, tampering
/// with them as told. Simulates corruption and broken networks.
pub struct Relay {
    pub addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Relays one connection, tampered with as told; later connections are refused.
    pub fn start(target: SocketAddr, tamper: Tamper) -> Relay {
        Self::start_series(target, vec![tamper])
    }

    /// Relays one connection per entry of `tampers`, the n-th tampered with as its n-th entry
    /// says (so a client that reconnects after a cut gets a clean line with `Tamper::default()`).
    pub fn start_series(target: SocketAddr, tampers: Vec<Tamper>) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut relays = Vec::new();
            for tamper in tampers {
                let Ok((client, _)) = listener.accept() else {
                    break;
                };
                relays.push(std::thread::spawn(move || {
                    relay_one(client, target, tamper)
                }));
            }
            for r in relays {
                let _ = r.join();
            }
        });
        Relay {
            addr,
            thread: Some(thread),
        }
    }

    /// Relays two connections: the first is cut once `bytes` server → client bytes were
    /// forwarded, the second (a client's retry) passes untouched.
    pub fn cut_once_after(target: SocketAddr, bytes: u64) -> Relay {
        let cut = Tamper {
            cut_down_after: Some(bytes),
            ..Default::default()
        };
        Self::start_series(target, vec![cut, Tamper::default()])
    }

    /// Relays two connections like [`Relay::cut_once_after`], and runs `between` after the
    /// first was cut and before the second is accepted: what changes on the server while a
    /// client waits to retry (a file replaced, say) happens at exactly that point.
    pub fn cut_once_then(
        target: SocketAddr,
        bytes: u64,
        between: impl FnOnce() + Send + 'static,
    ) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let cut = Tamper {
            cut_down_after: Some(bytes),
            ..Default::default()
        };
        let thread = std::thread::spawn(move || {
            if let Ok((client, _)) = listener.accept() {
                relay_one(client, target, cut);
            }
            between();
            if let Ok((client, _)) = listener.accept() {
                relay_one(client, target, Tamper::default());
            }
        });
        Relay {
            addr,
            thread: Some(thread),
        }
    }

    /// Waits until the relayed connections are over (every one of the series was made).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forwards one accepted connection to `target`, tampering as told, until either side ends.
fn relay_one(client: std::net::TcpStream, target: SocketAddr, tamper: Tamper) {
    let server = std::net::TcpStream::connect(target).expect("relay connects to the server");
    let pump = |mut from: std::net::TcpStream,
                mut to: std::net::TcpStream,
                flip: Option<u64>,
                cut: Option<u64>| {
        use std::io::{Read, Write};
        let mut seen: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut n = n;
            if let Some(cut) = cut {
                n = n.min((cut - seen) as usize);
            }
            if let Some(at) = flip {
                if (seen..seen + n as u64).contains(&at) {
                    buf[(at - seen) as usize] ^= 1;
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            seen += n as u64;
            if cut == Some(seen) {
                break;
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::spawn(move || pump(c2, s2, tamper.flip_up_at, tamper.cut_up_after));
    pump(server, client, tamper.flip_down_at, tamper.cut_down_after);
    let _ = up.join();
}

/// What a finished process wrote on standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every line a finished process wrote on standard output, parsed as JSON (panics on one that
/// is not).
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

/// Asserts a process's exit code, showing its standard error when it differs.
#[track_caller]
pub fn expect_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}, wanted {code}; stderr: {}",
        out.status,
        stderr(out)
    );
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub mod cluster;
pub mod gluster;
