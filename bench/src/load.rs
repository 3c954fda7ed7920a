//! The load loop: persistent connections speaking the raw protocol, each issuing its requests
//! back to back until the deadline (or the request budget) is reached.
//!
//! This module holds what both engines share (the plan, the statistics, reply decoding) and the
//! async engine; `threads.rs` holds the threaded one.

use crate::hist::Histogram;
use async_std::future::timeout;
use async_std::io::{BufReader, ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_std::task;
use sft_protocol::verbs::{Empty, GetRequest, HelloRequest, SendReply, SendRequest};
use sft_protocol::{decode_reply, encode_request, read_line, Reply};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// GET bodies are read, and discarded, in reads of up to this many bytes.
pub(crate) const BODY_READ: usize = 256 * 1024;
/// Buffer for reply lines. Smaller than [`BODY_READ`], so large body reads bypass it.
pub(crate) const LINE_BUFFER: usize = 32 * 1024;
/// SEND bodies are written from a shared pattern of at most this many bytes, repeated.
const SEND_CHUNK: usize = 1024 * 1024;
/// Longest pause between reconnection attempts after a failure.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// What each request does.
#[derive(Debug, Clone)]
pub enum Work {
    /// Download `path` and discard its bytes.
    Get {
        /// The file on the server.
        path: String,
    },
    /// Download `path` from an HTTP/1.1 server (keep-alive) and discard its bytes: the same
    /// loop against nginx, to check this tool's figures against an independent one (wrk).
    Http {
        /// The URL path, `/small.bin`.
        path: String,
    },
    /// `HELLO`, the verb a load balancer's health check sends: the cost of answering it (its
    /// storage probe included), with no file work.
    Hello,
    /// Upload `size` bytes to `bench/<connection>-<i>`, with `i` cycling through `0..files`.
    Send {
        /// Bytes per upload.
        size: u64,
        /// Distinct destination files per connection.
        files: u64,
    },
}

/// A whole run, shared by every connection.
#[derive(Debug)]
pub struct Plan {
    /// Where the server listens (tried in order when connecting).
    pub addrs: Vec<SocketAddr>,
    /// The request every connection repeats.
    pub work: Work,
    /// Number of connections, each its own task.
    pub connections: usize,
    /// Requests run but not measured at the start.
    pub warmup: Duration,
    /// Length of the measured window after the warm-up.
    pub duration: Duration,
    /// Stop after this many measured requests (over all connections).
    pub max_requests: Option<u64>,
}

/// What a run (or one connection of it) measured.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Requests that completed successfully.
    pub requests: u64,
    /// Body bytes moved by those requests.
    pub bytes: u64,
    /// Failed requests and connection attempts.
    pub errors: u64,
    /// How often each kind of error happened (`reply:not_found`, `io:connection_reset`, …).
    pub error_kinds: BTreeMap<String, u64>,
    /// Latency of each successful request, in microseconds.
    pub latency: Histogram,
}

impl Stats {
    pub(crate) fn error(&mut self, kind: String) {
        self.errors += 1;
        *self.error_kinds.entry(kind).or_default() += 1;
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.errors += other.errors;
        for (k, v) in &other.error_kinds {
            *self.error_kinds.entry(k.clone()).or_default() += v;
        }
        self.latency.merge(&other.latency);
    }
}

/// Why one request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with an error reply.
    Reply(&'static str),
    /// The socket failed, or closed early.
    Io(io::Error),
    /// The server's reply was not what the protocol says.
    Protocol(&'static str),
}

impl Failure {
    pub(crate) fn kind(&self) -> String {
        match self {
            Failure::Reply(code) => format!("reply:{code}"),
            Failure::Io(e) => format!("io:{}", io_kind(e)),
            Failure::Protocol(what) => format!("protocol:{what}"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

pub(crate) fn io_kind(e: &io::Error) -> String {
    // `ErrorKind`'s Debug form (`ConnectionReset`) in snake case.
    let mut out = String::new();
    for (i, c) in format!("{:?}", e.kind()).chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// State every connection shares.
pub(crate) struct Shared {
    pub(crate) plan: Plan,
    /// Start of the measured window.
    pub(crate) measure_from: Instant,
    /// End of the run: requests still in flight then are abandoned, and not counted.
    pub(crate) deadline: Instant,
    /// Measured requests started so far (only counted when there is a budget).
    started: AtomicU64,
    /// The GET or HELLO request line (or HTTP request), encoded once.
    pub(crate) get_line: Vec<u8>,
    /// The bytes every SEND body is made of.
    pub(crate) send_chunk: Vec<u8>,
}

impl Shared {
    /// Takes one request from the budget; false once it is spent.
    pub(crate) fn take_ticket(&self) -> bool {
        match self.plan.max_requests {
            None => true,
            Some(max) => self.started.fetch_add(1, Ordering::Relaxed) < max,
        }
    }
}

/// The fields of a GET reply this tool uses (decoded locally so later protocol fields don't matter).
#[derive(serde::Deserialize)]
pub(crate) struct GetHead {
    pub(crate) size: u64,
    /// A trailer line follows the body.
    #[serde(default)]
    pub(crate) trailer: bool,
}

/// Decodes a reply line into its fields, or the failure it reports.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, Failure> {
    match decode_reply(line) {
        Ok(Reply::Err(e)) => Err(Failure::Reply(e.code.as_str())),
        Ok(ok) => ok
            .fields::<T>()
            .map_err(|_| Failure::Protocol("malformed_reply")),
        Err(_) => Err(Failure::Protocol("malformed_reply")),
    }
}

/// One open connection with its buffers.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: Vec<u8>,
    scratch: Vec<u8>,
    request: Vec<u8>,
}

impl Conn {
    async fn open(addrs: &[SocketAddr]) -> io::Result<Conn> {
        let stream = TcpStream::connect(addrs).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::with_capacity(LINE_BUFFER, stream.clone()),
            writer: stream,
            line: Vec::with_capacity(256),
            scratch: Vec::new(),
            request: Vec::with_capacity(256),
        })
    }

    /// Reads one reply line and returns it decoded as `T`, or the failure.
    async fn reply<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Failure> {
        self.line.clear();
        if !read_line(&mut self.reader, &mut self.line).await? {
            return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        decode(&self.line)
    }

    /// HELLO: sends the request line and reads the reply, which has no body. Returns 0 bytes.
    async fn hello(&mut self, request_line: &[u8]) -> Result<u64, Failure> {
        self.writer.write_all(request_line).await?;
        let _: serde::de::IgnoredAny = self.reply().await?;
        Ok(0)
    }

    /// GET: sends the request line, reads the reply and discards the body. Returns body bytes.
    async fn get(&mut self, request_line: &[u8]) -> Result<u64, Failure> {
        self.writer.write_all(request_line).await?;
        let GetHead { size, trailer } = self.reply().await?;
        let want = (size.min(BODY_READ as u64)) as usize;
        if self.scratch.len() < want {
            self.scratch.resize(want, 0);
        }
        let mut left = size;
        while left > 0 {
            let n = left.min(self.scratch.len() as u64) as usize;
            let got = self.reader.read(&mut self.scratch[..n]).await?;
            if got == 0 {
                return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            left -= got as u64;
        }
        if trailer {
            // Only sent when a hash was asked for, which this tool never does; read it anyway
            // so the connection stays in step with a server that sends one.
            self.line.clear();
            if !read_line(&mut self.reader, &mut self.line).await? {
                return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(size)
    }

    /// SEND: request, go-ahead, body, final reply. Returns body bytes.
    async fn send(&mut self, path: String, size: u64, chunk: &[u8]) -> Result<u64, Failure> {
        self.request.clear();
        // Struct-update syntax on purpose: fields added to the protocol later keep their defaults.
        #[allow(clippy::needless_update)]
        let request = SendRequest {
            path,
            size,
            overwrite: true,
            ..Default::default()
        };
        encode_request(&request, &mut self.request);
        self.writer.write_all(&self.request).await?;
        self.reply::<Empty>().await?;
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            self.writer.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        let stored = self.reply::<SendReply>().await?.size;
        if stored != size {
            return Err(Failure::Protocol("size_mismatch"));
        }
        Ok(size)
    }
}

/// How connections are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One OS thread per connection with blocking sockets: two system calls per small request,
    /// the least client overhead per request.
    Threads,
    /// One async-std task per connection: fewer threads for very many connections, at more
    /// system calls and wake-ups per request.
    Async,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "threads" => Ok(Engine::Threads),
            "async" => Ok(Engine::Async),
            other => Err(format!("unknown engine {other:?} (use threads or async)")),
        }
    }
}

/// Runs the plan; returns the merged statistics and the length of the measured window.
pub fn run(plan: Plan, engine: Engine) -> (Stats, Duration) {
    let shared = prepare(plan);
    let total = match engine {
        Engine::Threads => crate::threads::run(Arc::clone(&shared)),
        Engine::Async => task::block_on(run_async(Arc::clone(&shared))),
    };
    let end = Instant::now().min(shared.deadline);
    (total, end.saturating_duration_since(shared.measure_from))
}

/// Fixes the run's clock and encodes what every request sends.
fn prepare(plan: Plan) -> Arc<Shared> {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let deadline = measure_from + plan.duration;
    let get_line = match &plan.work {
        Work::Get { path } => {
            // Struct-update syntax on purpose: see `Conn::send`.
            #[allow(clippy::needless_update)]
            let request = GetRequest {
                path: path.clone(),
                ..Default::default()
            };
            let mut line = Vec::new();
            encode_request(&request, &mut line);
            line
        }
        Work::Http { path } => format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes(),
        Work::Hello => {
            let mut line = Vec::new();
            encode_request(&HelloRequest {}, &mut line);
            line
        }
        Work::Send { .. } => Vec::new(),
    };
    let send_chunk = match &plan.work {
        Work::Send { size, .. } => pattern((*size).min(SEND_CHUNK as u64) as usize),
        Work::Get { .. } | Work::Http { .. } | Work::Hello => Vec::new(),
    };
    Arc::new(Shared {
        measure_from,
        deadline,
        started: AtomicU64::new(0),
        get_line,
        send_chunk,
        plan,
    })
}

async fn run_async(shared: Arc<Shared>) -> Stats {
    let tasks: Vec<_> = (0..shared.plan.connections)
        .map(|id| task::spawn(connection(id, Arc::clone(&shared))))
        .collect();
    let mut total = Stats::default();
    for stats in futures::future::join_all(tasks).await {
        total.merge(&stats);
    }
    total
}

/// Non-repeating-looking bytes (a simple LCG), so nothing along the way can compress them.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// One connection's loop: connect, issue requests back to back, reconnect after any failure.
async fn connection(id: usize, shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(1);
    let mut seq: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= shared.deadline {
            break;
        }
        let measured = now >= shared.measure_from;
        if measured && !shared.take_ticket() {
            break;
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => match timeout(shared.deadline - now, Conn::open(&shared.plan.addrs)).await {
                Err(_) => break,
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    if measured {
                        stats.error(format!("connect:{}", io_kind(&e)));
                    }
                    // Bounded pause so a refusing server is not hammered in a tight loop.
                    let left = shared.deadline.saturating_duration_since(Instant::now());
                    task::sleep(backoff.min(left)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let began = Instant::now();
        let left = shared.deadline.saturating_duration_since(began);
        let result = match &shared.plan.work {
            Work::Get { .. } => timeout(left, c.get(&shared.get_line)).await,
            Work::Hello => timeout(left, c.hello(&shared.get_line)).await,
            Work::Http { .. } => Ok(Err(Failure::Protocol("http_needs_threads_engine"))),
            Work::Send { size, files } => {
                let path = format!("bench/{id}-{}", seq % files.max(&1));
                timeout(left, c.send(path, *size, &shared.send_chunk)).await
            }
        };
        seq += 1;
        match result {
            // The deadline passed mid-request: abandoned, neither success nor error.
            Err(_) => break,
            Ok(Ok(bytes)) => {
                if measured {
                    let us = began.elapsed().as_micros();
                    stats.latency.record(u64::try_from(us).unwrap_or(u64::MAX));
                    stats.requests += 1;
                    stats.bytes += bytes;
                }
                backoff = Duration::from_millis(1);
                conn = Some(c);
            }
            Ok(Err(failure)) => {
                if measured {
                    stats.error(failure.kind());
                }
                // Dropping `c` closes the socket; the next turn reconnects.
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};

    /// A server on 127.0.0.1 that answers each request line of its one connection with `reply`,
    /// until the client hangs up; returns its address and the request lines it read.
    fn scripted(reply: &'static str) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut seen = Vec::new();
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                seen.push(line);
                if writer.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
            seen
        });
        (addr, server)
    }

    fn hellos(addr: SocketAddr, engine: Engine) -> Stats {
        let plan = Plan {
            addrs: vec![addr],
            work: Work::Hello,
            connections: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(30),
            max_requests: Some(3),
        };
        run(plan, engine).0
    }

    #[test]
    fn hello_asks_hello_and_counts_answers_and_refusals() {
        for engine in [Engine::Threads, Engine::Async] {
            let (addr, server) = scripted("{\"ok\":true,\"server\":\"x\",\"protocol\":3}\n");
            let stats = hellos(addr, engine);
            assert_eq!((stats.requests, stats.errors, stats.bytes), (3, 0, 0));
            let seen = server.join().unwrap();
            assert_eq!(seen.len(), 3, "{seen:?}");
            assert!(
                seen.iter().all(|l| l.contains("\"verb\":\"HELLO\"")),
                "{seen:?}"
            );

            let (addr, server) =
                scripted("{\"ok\":false,\"code\":\"unavailable\",\"message\":\"hung\"}\n");
            let stats = hellos(addr, engine);
            assert_eq!(stats.requests, 0);
            assert!(stats.errors > 0);
            assert!(
                stats.error_kinds.contains_key("reply:unavailable"),
                "{:?}",
                stats.error_kinds
            );
            drop(server);
        }
    }
}
