//! `sft-bench relay`: a TCP relay that makes loopback look like a long link, so that the bench
//! harness can compare transfer tools over a realistic round-trip time on one machine.
//!
//! Each direction of each relayed connection is a reader and a writer thread joined by a
//! bounded queue of timestamped chunks. The reader stamps every chunk with the time it may be
//! delivered: when a link of `--rate-mbit` (one clock per direction, shared by every
//! connection, like one bottleneck) has finished sending it, plus `--delay-ms`. The writer
//! delivers each at its time. So a round trip through the relay takes twice the delay, and
//! the bytes of all connections together move at most at the rate. Nothing is ever dropped:
//! a full queue, or a link backlog of more than a delay's worth, stops the reader, and TCP's
//! own flow control then holds the sender back.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes read at once, one queued chunk at most.
const CHUNK: usize = 16 * 1024;
/// Chunks queued per direction of a connection, at most (4 MiB): the memory bound, and the
/// ceiling of one connection's throughput without a rate (4 MiB per delay).
const QUEUE: usize = 256;
/// The link's backlog, at least: at a rate, a reader waits while the link has more than
/// max(this, the delay) of sending ahead of it (a router's queue, not an unbounded one).
const MIN_BACKLOG: Duration = Duration::from_millis(20);

/// How the relay delays and paces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    /// One-way delay, each direction.
    pub(crate) delay: Duration,
    /// Bits per second each way, if limited.
    pub(crate) rate_bps: Option<u64>,
}

/// When a direction's link is free again (one per direction, shared by all connections).
type Clock = Arc<Mutex<Instant>>;

/// Accepts connections on `listen` for ever and relays each to `to` over `link`.
pub(crate) fn run(listen: &str, to: &str, link: Link) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    let target = to
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{to}: no address")))?;
    eprintln!(
        "relay {} -> {target}: {} ms each way, {}",
        listener.local_addr()?,
        link.delay.as_millis(),
        link.rate_bps.map_or("no rate limit".into(), |r| format!(
            "{} Mbit/s each way",
            r / 1_000_000
        ))
    );
    let up: Clock = Arc::new(Mutex::new(Instant::now()));
    let down: Clock = Arc::new(Mutex::new(Instant::now()));
    for client in listener.incoming() {
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                eprintln!("relay: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let server = match TcpStream::connect(target) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("relay: connect {target}: {e}");
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        direction(&client, &server, link, up.clone())?;
        direction(&server, &client, link, down.clone())?;
    }
    Ok(())
}

/// Starts relaying what `from` sends to `to`, delayed and paced.
fn direction(from: &TcpStream, to: &TcpStream, link: Link, clock: Clock) -> io::Result<()> {
    let (tx, rx) = sync_channel(QUEUE);
    let from = from.try_clone()?;
    let to = to.try_clone()?;
    thread::spawn(move || read_side(from, tx, link, clock));
    thread::spawn(move || write_side(to, rx));
    Ok(())
}

/// A chunk and when it may be delivered; an empty chunk is the end of the stream.
type Stamped = (Instant, Vec<u8>);

fn read_side(mut from: TcpStream, tx: SyncSender<Stamped>, link: Link, clock: Clock) {
    let backlog = link.delay.max(MIN_BACKLOG);
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = from.read(&mut buf).unwrap_or(0);
        buf.truncate(n);
        let sent = match link.rate_bps {
            None => Instant::now(),
            Some(bps) => {
                let took = Duration::from_nanos((n as u64 * 8).saturating_mul(1_000_000_000) / bps);
                let mut free = clock.lock().expect("the clock's lock is never poisoned");
                let now = Instant::now();
                if *free > now + backlog {
                    // The link has more than its queue's worth to send: wait (the lock held,
                    // so that every connection waits its turn).
                    thread::sleep(*free - now - backlog);
                }
                *free = (*free).max(Instant::now()) + took;
                *free
            }
        };
        if tx.send((sent + link.delay, buf)).is_err() || n == 0 {
            return;
        }
    }
}

fn write_side(mut to: TcpStream, rx: Receiver<Stamped>) {
    while let Ok((due, chunk)) = rx.recv() {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if chunk.is_empty() {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
        if to.write_all(&chunk).is_err() {
            // The receiver is gone: so is the sender's side of it.
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
    }
}
