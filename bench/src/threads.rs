//! The threaded engine: one OS thread per connection, blocking sockets.
//!
//! A small request costs the client two system calls (write the request, read the reply and
//! body), so nearly all the time measured is the server's. A watchdog shuts every open socket
//! down at the deadline, which ends any read still blocked then.

use crate::load::{
    decode, io_kind, Failure, GetHead, Shared, Stats, Work, BODY_READ, LINE_BUFFER, MAX_BACKOFF,
};
use futures::executor::block_on;
use futures::io::AllowStdIo;
use sft_protocol::verbs::{Empty, SendReply, SendRequest};
use sft_protocol::{encode_request, read_line};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Stack of each connection thread: the loop needs little, and a thousand threads should not
/// reserve the default 2 MiB each.
const STACK: usize = 256 * 1024;

/// The socket each connection has open, so the watchdog can cut them all at the deadline.
struct Sockets {
    stopped: bool,
    open: Vec<Option<TcpStream>>,
}

/// Runs every connection on its own thread until the deadline or the request budget.
pub(crate) fn run(shared: Arc<Shared>) -> Stats {
    let n = shared.plan.connections;
    let sockets = Arc::new(Mutex::new(Sockets {
        stopped: false,
        open: (0..n).map(|_| None).collect(),
    }));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = {
        let sockets = Arc::clone(&sockets);
        let deadline = shared.deadline;
        thread::spawn(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            // Disconnected means every connection finished early (request budget spent).
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(wait) {
                let mut s = sockets.lock().unwrap_or_else(PoisonError::into_inner);
                s.stopped = true;
                for sock in s.open.iter().flatten() {
                    let _ = sock.shutdown(Shutdown::Both);
                }
            }
        })
    };
    let mut total = Stats::default();
    let mut workers = Vec::with_capacity(n);
    for id in 0..n {
        let shared = Arc::clone(&shared);
        let sockets = Arc::clone(&sockets);
        let spawned = thread::Builder::new()
            .name(format!("conn-{id}"))
            .stack_size(STACK)
            .spawn(move || connection(id, &shared, &sockets));
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => total.error(format!("spawn:{}", io_kind(&e))),
        }
    }
    for worker in workers {
        match worker.join() {
            Ok(stats) => total.merge(&stats),
            Err(_) => total.error("panic".into()),
        }
    }
    drop(done_tx);
    let _ = watchdog.join();
    total
}

/// Connects to the first address that answers within `limit`.
fn connect(addrs: &[SocketAddr], limit: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::from(io::ErrorKind::TimedOut);
    for addr in addrs {
        if limit.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, limit) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One open connection with its buffers.
struct Conn {
    reader: AllowStdIo<BufReader<TcpStream>>,
    writer: TcpStream,
    line: Vec<u8>,
    scratch: Vec<u8>,
    request: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: AllowStdIo::new(BufReader::with_capacity(LINE_BUFFER, stream.try_clone()?)),
            writer: stream,
            line: Vec::with_capacity(256),
            scratch: Vec::new(),
            request: Vec::with_capacity(256),
        })
    }

    /// Reads one reply line (`read_line` completes at its first poll: the reader blocks).
    fn read_line(&mut self) -> Result<(), Failure> {
        self.line.clear();
        if block_on(read_line(&mut self.reader, &mut self.line))? {
            Ok(())
        } else {
            Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()))
        }
    }

    fn reply<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Failure> {
        self.read_line()?;
        decode(&self.line)
    }

    /// HELLO: sends the request line and reads the reply, which has no body. Returns 0 bytes.
    fn hello(&mut self, request_line: &[u8]) -> Result<u64, Failure> {
        self.writer.write_all(request_line)?;
        let _: serde::de::IgnoredAny = self.reply()?;
        Ok(0)
    }

    /// GET: sends the request line, reads the reply and discards the body. Returns body bytes.
    fn get(&mut self, request_line: &[u8]) -> Result<u64, Failure> {
        self.writer.write_all(request_line)?;
        let GetHead { size, trailer } = self.reply()?;
        self.discard(size)?;
        if trailer {
            // Only sent when a hash was asked for, which this tool never does.
            self.read_line()?;
        }
        Ok(size)
    }

    /// HTTP/1.1 GET on a kept-alive connection: request, status line and headers, then
    /// `Content-Length` bytes of body, discarded. Returns body bytes.
    fn http_get(&mut self, request: &[u8]) -> Result<u64, Failure> {
        self.writer.write_all(request)?;
        self.read_line()?;
        if !self.line.starts_with(b"HTTP/1.1 200 ") {
            return Err(Failure::Reply("http_status"));
        }
        let mut size = None;
        loop {
            self.read_line()?;
            let header = self.line.trim_ascii();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_at_checked(15) {
                if name.eq_ignore_ascii_case(b"content-length:") {
                    size = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok());
                }
            }
        }
        let size = size.ok_or(Failure::Protocol("no_content_length"))?;
        self.discard(size)?;
        Ok(size)
    }

    /// Reads `size` body bytes, the buffered ones first, and drops them.
    fn discard(&mut self, size: u64) -> Result<(), Failure> {
        let want = size.min(BODY_READ as u64) as usize;
        if self.scratch.len() < want {
            self.scratch.resize(want, 0);
        }
        let mut left = size;
        while left > 0 {
            let n = left.min(self.scratch.len() as u64) as usize;
            // Reads larger than the line buffer go straight to the socket.
            let got = self.reader.get_mut().read(&mut self.scratch[..n])?;
            if got == 0 {
                return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            left -= got as u64;
        }
        Ok(())
    }

    /// SEND: request, go-ahead, body, final reply. Returns body bytes.
    fn send(&mut self, path: String, size: u64, chunk: &[u8]) -> Result<u64, Failure> {
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
        self.writer.write_all(&self.request)?;
        self.reply::<Empty>()?;
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            self.writer.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        let stored = self.reply::<SendReply>()?.size;
        if stored != size {
            return Err(Failure::Protocol("size_mismatch"));
        }
        Ok(size)
    }
}

/// Makes `stream` the connection's registered socket (`None` to forget it). False once the
/// watchdog has stopped the run.
fn register(sockets: &Mutex<Sockets>, id: usize, stream: Option<TcpStream>) -> bool {
    let mut s = sockets.lock().unwrap_or_else(PoisonError::into_inner);
    if s.stopped {
        return false;
    }
    s.open[id] = stream;
    true
}

/// One connection's loop: connect, issue requests back to back, reconnect after any failure.
fn connection(id: usize, shared: &Shared, sockets: &Mutex<Sockets>) -> Stats {
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
            None => {
                let opened = connect(&shared.plan.addrs, shared.deadline - now)
                    .and_then(|s| Ok((s.try_clone()?, Conn::new(s)?)));
                match opened {
                    Ok((handle, c)) => {
                        if !register(sockets, id, Some(handle)) {
                            break;
                        }
                        c
                    }
                    Err(e) => {
                        if Instant::now() >= shared.deadline {
                            break;
                        }
                        if measured {
                            stats.error(format!("connect:{}", io_kind(&e)));
                        }
                        // Bounded pause so a refusing server is not hammered in a tight loop.
                        let left = shared.deadline.saturating_duration_since(Instant::now());
                        thread::sleep(backoff.min(left));
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
        };
        let began = Instant::now();
        let result = match &shared.plan.work {
            Work::Get { .. } => c.get(&shared.get_line),
            Work::Http { .. } => c.http_get(&shared.get_line),
            Work::Hello => c.hello(&shared.get_line),
            Work::Send { size, files } => {
                let path = format!("bench/{id}-{}", seq % files.max(&1));
                c.send(path, *size, &shared.send_chunk)
            }
        };
        seq += 1;
        let done = Instant::now();
        if done >= shared.deadline {
            // Finished, or cut by the watchdog, after the deadline: not counted either way.
            break;
        }
        match result {
            Ok(bytes) => {
                if measured {
                    let us = done.duration_since(began).as_micros();
                    stats.latency.record(u64::try_from(us).unwrap_or(u64::MAX));
                    stats.requests += 1;
                    stats.bytes += bytes;
                }
                backoff = Duration::from_millis(1);
                conn = Some(c);
            }
            Err(failure) => {
                if measured {
                    stats.error(failure.kind());
                }
                // Forget the socket; dropping `c` closes it and the next turn reconnects.
                if !register(sockets, id, None) {
                    break;
                }
            }
        }
    }
    register(sockets, id, None);
    stats
}
