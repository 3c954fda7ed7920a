//! The connection under a [`Client`](crate::Client): its buffered socket halves, the reading
//! and writing of header lines and bodies, and the one place that knows whether the connection
//! is still in step.
//!
//! Every exchange (a request and everything that answers it) runs under an [`Exchange`] guard
//! taken from [`Conn::begin`]. Unless the exchange is ended with [`Exchange::done`] — it ended
//! in step, or was refused before any body — dropping the guard marks the connection broken,
//! whatever way the code left: an error returned with `?`, a panic, a future dropped midway.

use crate::error::Error;
use crate::many::Ahead;
use crate::progress::Progress;
use async_std::io::{BufReader, BufWriter};
use futures::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use serde::de::DeserializeOwned;
use sft_io::RECV;
use sft_io::{Deadline, RateLimit};
use sft_io::{StreamRead, StreamWrite};
use sft_protocol::body::{decode_stream_line, StreamLine};
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::verbs::{HelloReply, HelloRequest, Verb};
use sft_protocol::{decode_reply, encode_request, read_line, Reply, WireError};
use std::collections::VecDeque;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

/// Socket buffer sizes.
const IO_BUFFER: usize = 256 * 1024;

/// The client's deadline on every wait for the server: a read or a write that moves nothing
/// for `limit` (`--timeout`) fails.
#[derive(Debug, Default)]
pub(crate) struct Stall {
    /// `None`: waits forever.
    pub(crate) limit: Option<Duration>,
}

impl Stall {
    pub(crate) fn new(limit: Option<Duration>) -> Stall {
        Stall { limit }
    }

    /// Runs `op` (one read or write), failing with `TimedOut` if it moves nothing for the limit.
    pub(crate) async fn run<T>(
        &mut self,
        op: impl std::future::Future<Output = io::Result<T>>,
    ) -> io::Result<T> {
        let Some(limit) = self.limit else {
            return op.await;
        };
        // A deadline of its own for each wait, whose timer is registered with the reactor when
        // the wait begins: that registration wakes the reactor's thread, which then sees the
        // socket ready sooner. Measured side by side (20 alternating runs, medians), a 1 GiB
        // unverified GET took 1.10-1.27x as long with one deadline kept for the connection's
        // life, and the same as before with this (a lone connection's wait, as the server's
        // IdleTimer found too).
        let mut deadline = Deadline::after(limit);
        deadline.run(op).await.map_err(|_| stalled(limit))?
    }
}

/// The error of a wait on the server that moved nothing for `limit`.
pub(crate) fn stalled(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("nothing moved for {} s (see --timeout)", limit.as_secs()),
    )
}

/// One connection's state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) reader: BufReader<StreamRead>,
    pub(crate) writer: BufWriter<StreamWrite>,
    /// The last header or stream line read, terminator included.
    pub(crate) line: Vec<u8>,
    pub(crate) scratch: Vec<u8>,
    /// Set once an exchange ended out of step; every later one fails.
    broken: bool,
    /// Told about every transfer's bytes as they move.
    pub(crate) progress: Option<Arc<dyn Progress>>,
    /// A read or write that moves nothing for this long fails.
    pub(crate) stall: Stall,
    /// The bandwidth limit of body bytes, both ways.
    pub(crate) rate: Option<RateLimit>,
    /// What the server said it can do, once asked (`HELLO`).
    pub(crate) caps: Option<Caps>,
    /// `GET`s written while a listing still arrived, whose replies follow it: owed to the
    /// downloads that take them over; any other exchange would read them as its own reply.
    pub(crate) ahead: VecDeque<Ahead>,
    /// Whether a line has arrived yet: until one has, a close is the server refusing the
    /// connection itself, and a line that is no JSON object is another protocol's greeting.
    heard: bool,
}

/// What a server's `HELLO` says it can do, as far as this client cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Caps {
    /// The highest protocol version it speaks (1 for a server without `HELLO`).
    pub(crate) protocol: u32,
    /// It answers `SIGN` (and so takes deltas, version 3).
    pub(crate) sign: bool,
    /// The highest zstd level it compresses at; `None`: it refuses compression.
    pub(crate) zstd_max_level: Option<i32>,
}

/// An exchange in progress on a [`Conn`]; see the module documentation.
#[derive(Debug)]
pub(crate) struct Exchange<'c> {
    conn: &'c mut Conn,
    in_step: bool,
}

impl Deref for Exchange<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl DerefMut for Exchange<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
    }
}

impl Exchange<'_> {
    /// The exchange ended in step: the connection carries the next one (unless another
    /// request is written under this guard, which starts a new exchange).
    pub(crate) fn done(&mut self) {
        self.in_step = true;
    }

    /// The exchange is out of step again (replies to pipelined requests are still to come,
    /// even though one of them was an error).
    pub(crate) fn out_of_step(&mut self) {
        self.in_step = false;
    }

    /// Ends the exchange in step and passes `result` on.
    pub(crate) fn finish<T>(mut self, result: Result<T, Error>) -> Result<T, Error> {
        self.done();
        result
    }

    /// Writes a request header and flushes it: a new exchange starts.
    pub(crate) async fn request<V: Verb>(&mut self, args: &V) -> Result<(), Error> {
        self.in_step = false;
        self.conn.scratch.clear();
        encode_request(args, &mut self.conn.scratch);
        self.conn.write_scratch(V::NAME).await
    }

    /// Writes the request line in `scratch` and flushes it: a new exchange starts.
    pub(crate) async fn write_scratch(&mut self, verb: &str) -> Result<(), Error> {
        self.in_step = false;
        self.conn.write_scratch(verb).await
    }

    /// Writes the request line in `scratch` without flushing it (pipelined requests): a new
    /// exchange starts.
    pub(crate) async fn queue_scratch(&mut self, during: &str) -> Result<(), Error> {
        self.in_step = false;
        let conn = &mut *self.conn;
        let line = std::mem::take(&mut conn.scratch);
        let written = conn.write_buffered(&line, during).await;
        conn.scratch = line;
        written
    }

    /// Reads a reply header: its fields on success, `Error::Remote` for an error reply — which
    /// ends the exchange in step (nothing follows an error reply, and this client sends
    /// nothing more for a refused request), so the guard is then done.
    pub(crate) async fn reply<T: DeserializeOwned>(&mut self, during: &str) -> Result<T, Error> {
        self.read_line(during).await?;
        match decode_reply(&self.line) {
            Ok(Reply::Err(e)) => {
                self.in_step = true;
                Err(Error::Remote(e))
            }
            Ok(ok) => ok
                .fields::<T>()
                .map_err(|e| Error::Protocol(format!("{during}: {}", e.message))),
            Err(e) => Err(Error::Protocol(format!("{during}: {}", e.message))),
        }
    }
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        if !self.in_step {
            self.conn.broken = true;
        }
    }
}

impl Conn {
    /// A connection over a stream's halves (plain TCP or TLS).
    pub(crate) fn new((read, write): (StreamRead, StreamWrite), stall: Option<Duration>) -> Conn {
        Conn {
            reader: BufReader::with_capacity(IO_BUFFER, read),
            writer: BufWriter::with_capacity(IO_BUFFER, write),
            line: Vec::with_capacity(256),
            scratch: Vec::with_capacity(256),
            broken: false,
            progress: None,
            stall: Stall::new(stall),
            rate: None,
            caps: None,
            ahead: VecDeque::new(),
            heard: false,
        }
    }

    /// Whether the connection is encrypted (TLS).
    pub(crate) fn is_encrypted(&self) -> bool {
        self.writer.get_ref().tcp().is_none()
    }

    /// Whether an earlier exchange left the connection out of step.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// One request without a body and its one reply line, in step: the fields of a successful
    /// reply, `Error::Remote` for a refusal.
    pub(crate) async fn ask<V: Verb, T: DeserializeOwned>(
        &mut self,
        request: &V,
        during: &str,
    ) -> Result<T, Error> {
        let mut x = self.begin()?;
        x.request(request).await?;
        let reply = x.reply(during).await?;
        x.done();
        Ok(reply)
    }

    /// What the server can do (asked with `HELLO` once per connection). A server without
    /// `HELLO`, or one whose answer cannot be read, is taken for the oldest kind; so is any
    /// while replies to requests sent ahead are owed (nothing else may be asked then).
    pub(crate) async fn caps(&mut self) -> Caps {
        let oldest = Caps {
            protocol: 1,
            ..Caps::default()
        };
        if let Some(known) = self.caps {
            return known;
        }
        if !self.ahead.is_empty() {
            return oldest;
        }
        let Ok(mut x) = self.begin() else {
            return oldest;
        };
        if x.request(&HelloRequest {}).await.is_err() {
            return oldest;
        }
        let known = match x.reply::<HelloReply>("HELLO").await {
            Ok(hello) => {
                x.done();
                let v3 = hello.protocol >= 3;
                Caps {
                    protocol: hello.protocol,
                    sign: v3 && hello.verbs.iter().any(|v| v.name == "SIGN"),
                    zstd_max_level: hello.limits.zstd_max_level.filter(|_| v3),
                }
            }
            // A server without HELLO is an older one.
            Err(_) => oldest,
        };
        drop(x);
        self.caps = Some(known);
        known
    }

    /// The zstd level to ask for, when `wanted` and the server compresses (at most at its cap).
    pub(crate) async fn compress_level(&mut self, wanted: Option<i32>) -> Option<i32> {
        let wanted = wanted?;
        let max = self.caps().await.zstd_max_level?;
        Some(wanted.min(max))
    }

    /// [`Conn::compress_level`] from what the server already said, without asking.
    pub(crate) fn known_compress_level(&self, wanted: Option<i32>) -> Option<i32> {
        Some(wanted?.min(self.caps?.zstd_max_level?))
    }

    /// Marks the connection out of step: every later exchange fails.
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Starts an exchange: fails at once on a broken connection, and on one that owes the
    /// replies of `GET`s sent ahead to downloads not started (it is then out of step).
    pub(crate) fn begin(&mut self) -> Result<Exchange<'_>, Error> {
        if !self.ahead.is_empty() {
            self.ahead.clear();
            self.broken = true;
            return Err(Error::Protocol(
                "downloads requested ahead were never received".into(),
            ));
        }
        if self.broken {
            return Err(Error::Protocol(
                "the connection was broken by an earlier failure".into(),
            ));
        }
        Ok(Exchange {
            conn: self,
            in_step: false,
        })
    }

    pub(crate) fn progress_start(&self, remote: &str, total: Option<u64>, done: u64) {
        if let Some(p) = &self.progress {
            p.start(remote, total, done);
        }
    }

    pub(crate) fn progress_advance(&self, n: u64) {
        if let Some(p) = &self.progress {
            p.advance(n);
        }
    }

    /// Writes the request line in `scratch` and flushes it.
    async fn write_scratch(&mut self, verb: &str) -> Result<(), Error> {
        let during = format!("the {verb} request");
        let written = self.stall.run(self.writer.write_all(&self.scratch)).await;
        written.map_err(|e| self.cut_off(&during, e))?;
        self.flush(&during).await
    }

    /// Sends everything buffered.
    pub(crate) async fn flush(&mut self, during: &str) -> Result<(), Error> {
        let flushed = self.stall.run(self.writer.flush()).await;
        flushed.map_err(|e| self.cut_off(during, e))
    }

    /// The connection failed with `e` during `during`: cut off, or, before the server said
    /// anything, closed by it at once (what a server does to an address it does not allow).
    fn cut_off(&self, during: &str, e: io::Error) -> Error {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match e.kind() {
            BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof if !self.heard => {
                Error::ClosedAtOnce {
                    during: during.to_owned(),
                }
            }
            _ => Error::cut_off(during)(e),
        }
    }

    /// Reads one line (a reply or a trailer) into `self.line`.
    pub(crate) async fn read_line(&mut self, during: &str) -> Result<(), Error> {
        self.line.clear();
        // A line already buffered whole needs no deadline (and no timer).
        let read = if self.reader.buffer().contains(&b'\n') {
            read_line(&mut self.reader, &mut self.line).await
        } else {
            // Requests written ahead (pipelined) go before the wait for this reply.
            if !self.writer.buffer().is_empty() {
                self.flush(during).await?;
            }
            self.stall
                .run(read_line(&mut self.reader, &mut self.line))
                .await
        };
        let first = !self.heard;
        match read {
            Ok(true) if first && !looks_like_json(&self.line) => {
                Err(Error::Protocol(not_sft(&self.line)))
            }
            Ok(true) => {
                self.heard = true;
                Ok(())
            }
            Ok(false) => Err(self.cut_off(
                during,
                io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server"),
            )),
            Err(e) if e.kind() == io::ErrorKind::InvalidData && first => {
                Err(Error::Protocol(not_sft(&self.line)))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Protocol(format!(
                "{during}: reply line longer than {MAX_HEADER_LEN} bytes"
            ))),
            Err(e) => Err(self.cut_off(during, e)),
        }
    }

    /// Reads one line of a line stream into `line` (PROTOCOL.md §3.2). An error line ends the
    /// stream in step.
    pub(crate) async fn stream_line(&mut self, during: &str) -> Result<StreamItem, Error> {
        self.read_line(during).await.map_err(|e| match e {
            Error::Protocol(_) => Error::Protocol(format!(
                "{during}: stream line longer than {MAX_HEADER_LEN} bytes"
            )),
            other => other,
        })?;
        match decode_stream_line(&self.line) {
            Ok(StreamLine::Item(_)) => Ok(StreamItem::Item),
            Ok(StreamLine::End(_)) => Ok(StreamItem::End),
            Ok(StreamLine::Error(e)) => Ok(StreamItem::Error(e)),
            Err(e) => Err(Error::Protocol(format!("{during}: {}", e.message))),
        }
    }

    /// Fills `buf` with the next body bytes (within the rate limit, if any). On failure, says
    /// how many did arrive.
    pub(crate) async fn fill(
        &mut self,
        buf: &mut [u8],
        during: &str,
    ) -> Result<(), (usize, Error)> {
        // Bytes the reader already buffered first; then straight from the socket, so that a
        // large body is copied once, not through the reader's buffer.
        let buffered = self.reader.buffer();
        let mut filled = buffered.len().min(buf.len());
        buf[..filled].copy_from_slice(&buffered[..filled]);
        std::pin::Pin::new(&mut self.reader).consume(filled);
        if let Some(rate) = &mut self.rate {
            rate.take(filled as u64).await;
        }
        while filled < buf.len() {
            if buf.len() - filled < RECV {
                // The rest of a small body: through the reader's buffer, so that the bodies and
                // replies that follow it arrive with the same read.
                let got = match self.stall.run(self.reader.fill_buf()).await {
                    Ok([]) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection early",
                    )),
                    Ok(got) => Ok(got),
                    Err(e) => Err(e),
                };
                let got = got.map_err(|e| (filled, Error::cut_off(during)(e)))?;
                let n = got.len().min(buf.len() - filled);
                buf[filled..filled + n].copy_from_slice(&got[..n]);
                std::pin::Pin::new(&mut self.reader).consume(n);
                if let Some(rate) = &mut self.rate {
                    rate.take(n as u64).await;
                }
                filled += n;
                continue;
            }
            let end = match &self.rate {
                Some(rate) => buf.len().min(filled + rate.step()),
                None => buf.len(),
            };
            let read = self.reader.get_mut().read(&mut buf[filled..end]);
            let n = match self.stall.run(read).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection early",
                )),
                other => other,
            };
            let n = n.map_err(|e| (filled, Error::cut_off(during)(e)))?;
            if let Some(rate) = &mut self.rate {
                rate.take(n as u64).await;
            }
            filled += n;
        }
        Ok(())
    }

    /// Writes `data` through the buffer: without a deadline (or a timer) when it fits in the
    /// buffer, since that cannot wait.
    pub(crate) async fn write_buffered(&mut self, data: &[u8], during: &str) -> Result<(), Error> {
        let fits = self.writer.buffer().len() + data.len() <= IO_BUFFER;
        let written = match fits {
            true => self.writer.write_all(data).await,
            false => self.stall.run(self.writer.write_all(data)).await,
        };
        written.map_err(Error::cut_off(during))
    }

    /// Reads some body bytes into `buf` (within the stall timeout and the rate limit): how
    /// many, 0 at the end of the stream.
    pub(crate) async fn fill_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match &self.rate {
            Some(rate) => buf.len().min(rate.step()),
            None => buf.len(),
        };
        let n = self.stall.run(self.reader.read(&mut buf[..want])).await?;
        if let Some(rate) = &mut self.rate {
            rate.take(n as u64).await;
        }
        Ok(n)
    }

    /// Writes body bytes (buffered; within the rate limit, if any).
    pub(crate) async fn send_chunk(&mut self, chunk: &[u8], during: &str) -> Result<(), Error> {
        let Some(step) = self.rate.as_ref().map(RateLimit::step) else {
            return self.write_buffered(chunk, during).await;
        };
        for piece in chunk.chunks(step.max(1)) {
            if let Some(rate) = &mut self.rate {
                rate.take(piece.len() as u64).await;
            }
            self.stall
                .run(self.writer.write_all(piece))
                .await
                .map_err(Error::cut_off(during))?;
            // Paced bytes leave as they are paced, not when the buffer fills.
            self.flush(during).await?;
        }
        Ok(())
    }
}

/// Whether `line` starts like a JSON object, as every line of the sft protocol does.
fn looks_like_json(line: &[u8]) -> bool {
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Says that the peer speaks another protocol, quoting (escaped, shortened) what it sent first:
/// an SSH server's banner, an HTTP status line.
fn not_sft(line: &[u8]) -> String {
    const SHOWN: usize = 40;
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let mut shown: String = text
        .chars()
        .take(SHOWN)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(SHOWN).is_some() {
        shown.push('…');
    }
    format!("not an sft server (it sent '{shown}')")
}

/// What [`Conn::stream_line`] read; the line itself is in `Conn::line`.
#[derive(Debug)]
pub(crate) enum StreamItem {
    /// An item line.
    Item,
    /// The end line.
    End,
    /// An error line: the stream ended incomplete.
    Error(WireError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_protocols_greeting_is_quoted_escaped_and_shortened() {
        assert_eq!(
            not_sft(b"SSH-2.0-OpenSSH_9.6\r\n"),
            "not an sft server (it sent 'SSH-2.0-OpenSSH_9.6')"
        );
        let http = format!("HTTP/1.1 400 Bad\x1b[2J{}\n", "x".repeat(100));
        let said = not_sft(http.as_bytes());
        assert!(said.starts_with("not an sft server (it sent 'HTTP/1.1 400 Bad\\u{1b}[2J"));
        assert!(said.ends_with("xxx…')") && !said.contains('\x1b'), "{said}");
        assert!(looks_like_json(b" {\"ok\":true}\n"));
        assert!(!looks_like_json(b"SSH-2.0\r\n") && !looks_like_json(b"\n"));
    }
}
