//! The pace a transfer must keep, as a [`Deadline`] for every wait on its peer.
//!
//! Two rules, both in the style of Apache's `mod_reqtimeout`: a wait during which no byte moves
//! fails after the *stall* timeout, and once a transfer is older than the stall timeout it must
//! have moved, on average, at least `min_rate` bytes a second since it began. The first rule
//! cuts off a peer that stops; the second a peer that trickles a byte now and then to keep a
//! slot for hours. Neither can hurt a real slow link: a transfer is cut only when it has been
//! below the minimum rate for longer than the stall timeout.
//!
//! Progress that restarts the stall clock is at least [`PROGRESS`] bytes: a peer that never
//! reads still lets its kernel accept a few bytes now and then (TCP's zero-window probes, every
//! 0.2, 0.4, 0.8… s), and that must not pass for a peer that is reading.

use crate::deadline::{Deadline, Elapsed};
use futures::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Bytes that must move before a wait counts as progress (see the module's documentation).
pub const PROGRESS: u64 = 4096;

/// The deadlines a transfer must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceRule {
    /// A wait during which nothing moves fails after this long (`None`: wait forever).
    pub stall: Option<Duration>,
    /// After the first `stall`, the transfer's average rate in bytes a second must stay at
    /// least this (0: no minimum).
    pub min_rate: u64,
}

impl PaceRule {
    /// Only a stall timeout.
    pub fn stall(stall: Duration) -> PaceRule {
        PaceRule {
            stall: Some(stall),
            min_rate: 0,
        }
    }
}

/// The progress of one transfer under a [`PaceRule`], and the one [`Deadline`] that every
/// wait of the transfer keeps: progress moves it later, at no cost per wait.
#[derive(Debug)]
pub struct Pace {
    rule: PaceRule,
    started: Instant,
    /// When the stall clock last restarted, and how much had moved then.
    last: Instant,
    moved_at_last: u64,
    moved: u64,
    timer: Deadline,
}

impl Pace {
    /// A transfer that starts now.
    pub fn new(rule: PaceRule) -> Pace {
        let now = Instant::now();
        Pace {
            rule,
            started: now,
            last: now,
            moved_at_last: 0,
            moved: 0,
            timer: Deadline::never(),
        }
    }

    /// The rule this pace keeps.
    pub fn rule(&self) -> PaceRule {
        self.rule
    }

    /// Starts a new transfer now (a new request on the same connection), keeping the timer.
    pub fn restart(&mut self) {
        let now = Instant::now();
        self.started = now;
        self.last = now;
        self.moved_at_last = 0;
        self.moved = 0;
    }

    /// Records that `n` bytes moved; once [`PROGRESS`] bytes moved since the stall clock last
    /// restarted, it restarts.
    pub fn advance(&mut self, n: u64) {
        self.moved += n;
        if self.moved - self.moved_at_last >= PROGRESS {
            self.last = Instant::now();
            self.moved_at_last = self.moved;
        }
    }

    /// Bytes moved since the transfer started.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// When a wait that starts now must have made progress; `None`: never.
    pub fn deadline(&self) -> Option<Instant> {
        let stall = self.rule.stall?;
        let quiet = self.last + stall;
        if self.rule.min_rate == 0 {
            return Some(quiet);
        }
        // The time `moved` bytes may take at the minimum rate, after a first stall period.
        let earned = Duration::from_secs_f64(self.moved as f64 / self.rule.min_rate as f64);
        let slow = self.started + stall + earned;
        Some(quiet.min(slow))
    }

    /// The error of a wait that passed its deadline at `now`.
    pub fn expired(&self, now: Instant) -> io::Error {
        let stall = self.rule.stall.unwrap_or_default();
        let message = if now.saturating_duration_since(self.last) >= stall {
            format!("nothing moved for {} s", stall.as_secs_f64())
        } else {
            let secs = now.saturating_duration_since(self.started).as_secs_f64();
            format!(
                "{} bytes in {secs:.0} s is below the minimum rate of {} bytes/s",
                self.moved, self.rule.min_rate
            )
        };
        io::Error::new(io::ErrorKind::TimedOut, message)
    }

    /// Runs `op` (one read or write), failing with `TimedOut` at the deadline. The caller
    /// reports what moved with [`Pace::advance`].
    pub async fn limit<T>(&mut self, op: impl Future<Output = io::Result<T>>) -> io::Result<T> {
        self.timer.set(self.deadline());
        match self.timer.run(op).await {
            Ok(done) => done,
            Err(Elapsed) => Err(self.expired(Instant::now())),
        }
    }

    /// For a stream that is not ready: the error once the deadline has passed, pending (with
    /// the task's waker registered) until then.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.timer.set(self.deadline());
        self.timer
            .poll_passed(cx)
            .map(|()| self.expired(Instant::now()))
    }

    /// Reads into `buf` within the deadline and records what arrived (0 at end of stream).
    pub async fn read<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        src: &mut R,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let n = self.limit(futures::AsyncReadExt::read(src, buf)).await?;
        self.advance(n as u64);
        Ok(n)
    }

    /// Writes all of `buf` within the deadline (each partial write counts as progress).
    pub async fn write_all<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        dst: &mut W,
        mut buf: &[u8],
    ) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.limit(futures::AsyncWriteExt::write(dst, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n as u64);
            buf = &buf[n..];
        }
        Ok(())
    }
}

/// A stream whose every write and flush keeps a [`Pace`]: a peer that stops reading makes
/// the write fail with `TimedOut` instead of waiting forever. Reads pass through untouched
/// (waiting for a request is the idle timeout's business).
#[derive(Debug)]
pub struct PacedWrite<S> {
    io: S,
    pace: Pace,
}

impl<S> PacedWrite<S> {
    /// Wraps `io`.
    pub fn new(io: S, rule: PaceRule) -> PacedWrite<S> {
        PacedWrite {
            io,
            pace: Pace::new(rule),
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The pace of writes (restart it for each new request).
    pub fn pace_mut(&mut self) -> &mut Pace {
        &mut self.pace
    }

    /// The stream and the pace at once, for a write that bypasses this wrapper (sendfile).
    pub fn parts_mut(&mut self) -> (&S, &mut Pace) {
        (&self.io, &mut self.pace)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PacedWrite<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.pace.advance(n as u64);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pace.poll_expired(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.pace.poll_expired(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_close(cx) {
            Poll::Pending => this.pace.poll_expired(cx).map(Err),
            ready => ready,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PacedWrite<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_rate_starts_after_one_stall_period() {
        let rule = PaceRule {
            stall: Some(Duration::from_secs(10)),
            min_rate: 100,
        };
        let mut pace = Pace::new(rule);
        let start = pace.started;
        assert_eq!(pace.deadline(), Some(start + Duration::from_secs(10)));
        // 5000 bytes earn 50 s beyond the first stall period, but the stall clock restarts at
        // most now: the deadline is at most one stall period away.
        pace.advance(5000);
        let d = pace.deadline().unwrap();
        assert!(d >= start + Duration::from_secs(10));
        assert!(d <= Instant::now() + Duration::from_secs(10));
        // A trickle of a few bytes does not restart the stall clock.
        let mut trickle = Pace::new(rule);
        trickle.advance(PROGRESS - 1);
        assert_eq!(
            trickle.deadline(),
            Some(trickle.started + Duration::from_secs(10))
        );
        let off = Pace::new(PaceRule {
            stall: None,
            min_rate: 100,
        });
        assert_eq!(off.deadline(), None);
    }

    #[test]
    fn a_write_to_a_peer_that_never_reads_times_out() {
        async_std::task::block_on(async {
            let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let client = async_std::net::TcpStream::connect(addr).await.unwrap();
            let (_peer, _) = listener.accept().await.unwrap();
            let mut w = PacedWrite::new(client, PaceRule::stall(Duration::from_millis(300)));
            let block = vec![0u8; 1 << 20];
            let mut result = Ok(());
            for _ in 0..256 {
                result = futures::AsyncWriteExt::write_all(&mut w, &block).await;
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        });
    }
}
