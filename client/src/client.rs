//! A connection to an sft server, carrying requests one after another.

use crate::address::{parse_server, ServerAddr};
use crate::error::Error;
use crate::files::{self, CHUNK, RECV};
use crate::partial::Partial;
use crate::progress::Progress;
use crate::walk::Upload;
use async_std::io::{BufReader, BufWriter};
use async_std::net::{TcpStream, ToSocketAddrs};
use async_std::task::spawn_blocking;
use futures::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::de::DeserializeOwned;
use sft_io::{confirm, BlockSink, FileSource, Pace, PaceRule, Version};
use sft_protocol::body::{decode_stream_line, StreamLine};
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::verbs::{
    GetReply, GetRequest, GetTrailer, SendReady, SendReply, SendRequest, SendTrailer, Verb,
};
use sft_protocol::{
    decode_reply, decode_trailer, encode_request, encode_trailer, read_line, ErrorCode, Reply,
    WireError,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const IO_BUFFER: usize = 256 * 1024;

/// A connection to one server. Requests run one at a time; after a transfer is cut off the
/// connection is unusable and every further call fails.
#[derive(Debug)]
pub struct Client {
    server: ServerAddr,
    pub(crate) reader: BufReader<TcpStream>,
    pub(crate) writer: BufWriter<TcpStream>,
    /// The last header or stream line read, terminator included.
    pub(crate) line: Vec<u8>,
    pub(crate) scratch: Vec<u8>,
    /// Set once the connection is out of step; every later call fails.
    pub(crate) broken: bool,
    /// Told about every transfer's bytes as they move.
    pub(crate) progress: Option<Arc<dyn Progress>>,
    /// A read or write that moves nothing for this long fails (`None`: wait forever).
    pub(crate) stall: Option<Duration>,
}

/// How long a connection attempt, or any read or write, may make no progress by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `op`, failing with `TimedOut` if it takes longer than `stall`.
pub(crate) async fn with_stall<T>(
    stall: Option<Duration>,
    op: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match stall {
        None => op.await,
        Some(limit) => async_std::io::timeout(limit, op)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing moved for {} s (see --timeout)", limit.as_secs()),
                ),
                _ => e,
            }),
    }
}

/// Runs a connection attempt `op` for at most `share`; a timeout names the whole `limit`.
async fn with_deadline<T>(
    share: Option<Duration>,
    limit: Option<Duration>,
    op: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match share {
        None => op.await,
        Some(share) => async_std::io::timeout(share, op).await.map_err(|e| {
            match (e.kind(), limit) {
                (io::ErrorKind::TimedOut, Some(limit)) => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {:.1} s (the connect may take {} s in all; see --timeout)",
                        share.as_secs_f64(),
                        limit.as_secs()
                    ),
                ),
                _ => e,
            }
        }),
    }
}

/// Options of a download.
#[derive(Debug, Clone, Copy)]
pub struct GetOptions {
    /// Check the file's BLAKE3 hash (on by default).
    pub verify: bool,
    /// Continue from the partial download left by an earlier attempt, if any.
    pub resume: bool,
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions {
            verify: true,
            resume: false,
        }
    }
}

/// Options of an upload.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Replace an existing remote file.
    pub overwrite: bool,
    /// Declare the file's BLAKE3 hash, so the server stores it only if it arrived intact (on by
    /// default; also what makes an interrupted upload resumable).
    pub verify: bool,
    /// Continue an interrupted upload the server kept.
    pub resume: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            overwrite: false,
            verify: true,
            resume: false,
        }
    }
}

/// What a finished transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The whole file's size.
    pub size: u64,
    /// Bytes that crossed the network in this transfer.
    pub bytes_transferred: u64,
    /// Where this transfer started (non-zero when it continued an interrupted one).
    pub resumed_from: u64,
    /// The verified BLAKE3 hash (64 hex digits), when verified.
    pub blake3: Option<String>,
}

impl Client {
    /// Connects to `server` (`host`, `host:port`, `[v6]:port`…), using `default_port` when it
    /// names none. Every resolved address is tried in turn.
    pub async fn connect(server: &str, default_port: u16) -> Result<Client, Error> {
        let addr = parse_server(server, default_port).map_err(|m| Error::Resolve {
            server: ServerAddr {
                host: server.to_owned(),
                port: default_port,
            },
            source: io::Error::new(io::ErrorKind::InvalidInput, m),
        })?;
        Self::connect_to(addr).await
    }

    /// Connects to an already parsed address, giving up after [`DEFAULT_TIMEOUT`].
    pub async fn connect_to(server: ServerAddr) -> Result<Client, Error> {
        Self::connect_within(server, Some(DEFAULT_TIMEOUT)).await
    }

    /// Connects to an already parsed address; the whole connect — resolving the name and
    /// trying each of its addresses in turn — takes at most `limit` (`None`: as long as the
    /// system allows). Each address gets an equal share of the time still left, so a first
    /// address that never answers (a dropped SYN) still leaves time for the others. The new
    /// client's read and write timeout is `limit` too (see [`Client::set_timeout`]).
    pub async fn connect_within(
        server: ServerAddr,
        limit: Option<Duration>,
    ) -> Result<Client, Error> {
        let deadline = limit.map(|l| std::time::Instant::now() + l);
        let left = || deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let resolving = async {
            (server.host.as_str(), server.port)
                .to_socket_addrs()
                .await
                .map(Iterator::collect::<Vec<_>>)
        };
        let addrs = with_stall(left(), resolving)
            .await
            .map_err(|source| Error::Resolve {
                server: server.clone(),
                source,
            })?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no addresses");
        for (i, addr) in addrs.iter().enumerate() {
            let share = left().map(|l| l / (addrs.len() - i) as u32);
            if share.is_some_and(|s| s.is_zero()) {
                break;
            }
            match with_deadline(share, limit, TcpStream::connect(addr)).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Client {
                        server,
                        reader: BufReader::with_capacity(IO_BUFFER, stream.clone()),
                        writer: BufWriter::with_capacity(IO_BUFFER, stream),
                        line: Vec::with_capacity(256),
                        scratch: Vec::with_capacity(256),
                        broken: false,
                        progress: None,
                        stall: limit,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(Error::Connect {
            server,
            source: last,
        })
    }

    /// The server this client is connected to.
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    /// Fails any later read or write that moves nothing for `stall` (`None`: waits forever;
    /// the default is [`DEFAULT_TIMEOUT`]). A stalled transfer is reported as cut off, so
    /// `--retries` and `--continue` recover from it like from a dropped connection.
    pub fn set_timeout(&mut self, stall: Option<Duration>) {
        self.stall = stall;
    }

    /// Reports every later transfer's progress to `progress` (`None`: to nobody).
    pub fn set_progress(&mut self, progress: Option<Arc<dyn Progress>>) {
        self.progress = progress;
    }

    /// Whether an earlier failure left the connection out of step (every call then fails;
    /// connect again).
    pub fn is_broken(&self) -> bool {
        self.broken
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

    pub(crate) fn check_usable(&self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Protocol(
                "the connection was broken by an earlier failure".into(),
            ));
        }
        Ok(())
    }

    /// Marks the connection unusable when `result` left it out of step.
    pub(crate) fn track<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        if matches!(
            result,
            Err(Error::CutOff { .. } | Error::Protocol(_) | Error::Local { .. })
        ) {
            self.broken = true;
        }
        result
    }

    /// Writes a request header and flushes it.
    pub(crate) async fn request<V: Verb>(&mut self, args: &V) -> Result<(), Error> {
        self.check_usable()?;
        self.scratch.clear();
        encode_request(args, &mut self.scratch);
        self.write_scratch(V::NAME).await
    }

    /// Writes the request line in `scratch` and flushes it.
    pub(crate) async fn write_scratch(&mut self, verb: &str) -> Result<(), Error> {
        let during = format!("the {verb} request");
        self.writer
            .write_all(&self.scratch)
            .await
            .map_err(Error::cut_off(during.clone()))?;
        self.writer.flush().await.map_err(Error::cut_off(during))
    }

    /// Reads one line (a reply or a trailer) into `self.line`.
    async fn read_line(&mut self, during: &str) -> Result<(), Error> {
        self.line.clear();
        let read = with_stall(self.stall, read_line(&mut self.reader, &mut self.line)).await;
        let result = match read {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::CutOff {
                during: during.to_owned(),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server"),
            }),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Protocol(format!(
                "{during}: reply line longer than {MAX_HEADER_LEN} bytes"
            ))),
            Err(e) => Err(Error::cut_off(during)(e)),
        };
        self.track(result)
    }

    /// Reads a reply header: its fields on success, `Error::Remote` for an error reply.
    pub(crate) async fn reply<T: DeserializeOwned>(&mut self, during: &str) -> Result<T, Error> {
        self.read_line(during).await?;
        let result = match decode_reply(&self.line) {
            Ok(Reply::Err(e)) => Err(Error::Remote(e)),
            Ok(ok) => ok
                .fields::<T>()
                .map_err(|e| Error::Protocol(format!("{during}: {}", e.message))),
            Err(e) => Err(Error::Protocol(format!("{during}: {}", e.message))),
        };
        self.track(result)
    }

    /// Fills `buf` with the next body bytes. On failure, says how many did arrive.
    async fn fill(&mut self, buf: &mut [u8], during: &str) -> Result<(), (usize, Error)> {
        // Bytes the reader already buffered first; then straight from the socket, so that a
        // large body is copied once, not through the reader's buffer.
        let buffered = self.reader.buffer();
        let mut filled = buffered.len().min(buf.len());
        buf[..filled].copy_from_slice(&buffered[..filled]);
        std::pin::Pin::new(&mut self.reader).consume(filled);
        while filled < buf.len() {
            let read = self.reader.get_mut().read(&mut buf[filled..]);
            let n = match with_stall(self.stall, read).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection early",
                )),
                other => other,
            };
            filled += self
                .track(n.map_err(Error::cut_off(during)))
                .map_err(|e| (filled, e))?;
        }
        Ok(())
    }

    /// Starts a GET; returns the reply.
    async fn get_start(
        &mut self,
        remote: &str,
        offset: u64,
        hash: bool,
    ) -> Result<GetReply, Error> {
        self.request(&GetRequest {
            path: remote.to_owned(),
            offset: (offset > 0).then_some(offset),
            hash,
        })
        .await?;
        self.get_reply(remote, offset).await
    }

    /// Reads the reply to a GET of `remote` from `offset` (sent earlier, perhaps pipelined).
    pub(crate) async fn get_reply(&mut self, remote: &str, offset: u64) -> Result<GetReply, Error> {
        let reply: GetReply = self.reply(&format!("GET {remote}")).await?;
        let got = reply.offset.unwrap_or(0);
        if got != offset {
            return self.track(Err(Error::Protocol(format!(
                "asked for offset {offset}, got {got}"
            ))));
        }
        Ok(reply)
    }

    /// The hash the server vouches for: from the reply, or from the trailer after the body.
    async fn expected_hash(
        &mut self,
        reply: &GetReply,
        remote: &str,
    ) -> Result<Option<String>, Error> {
        if !reply.trailer {
            return Ok(reply.blake3.clone());
        }
        let during = format!("the trailer of {remote}");
        self.read_line(&during).await?;
        let trailer: Result<GetTrailer, _> = decode_trailer(&self.line);
        let trailer =
            self.track(trailer.map_err(|e| Error::Protocol(format!("{during}: {}", e.message))))?;
        Ok(Some(trailer.blake3))
    }

    /// Reads one line of a line stream into `line` (PROTOCOL.md §3.2). A cut-off or malformed
    /// stream breaks the connection; an error line ends the stream and leaves it usable.
    pub(crate) async fn stream_line(&mut self, during: &str) -> Result<StreamItem, Error> {
        self.line.clear();
        let read = with_stall(self.stall, read_line(&mut self.reader, &mut self.line)).await;
        let result = match read {
            Ok(true) => match decode_stream_line(&self.line) {
                Ok(StreamLine::Item(_)) => Ok(StreamItem::Item),
                Ok(StreamLine::End(_)) => Ok(StreamItem::End),
                Ok(StreamLine::Error(e)) => Ok(StreamItem::Error(e)),
                Err(e) => Err(Error::Protocol(format!("{during}: {}", e.message))),
            },
            Ok(false) => Err(Error::CutOff {
                during: during.to_owned(),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server"),
            }),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Protocol(format!(
                "{during}: stream line longer than {MAX_HEADER_LEN} bytes"
            ))),
            Err(e) => Err(Error::cut_off(during)(e)),
        };
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Downloads `remote` into `sink`; returns the number of bytes written.
    ///
    /// The sink may have received part of the file when this fails (including a failed
    /// verification, which is only known at the end); use [`Client::get_file`] for a download
    /// that lands whole and verified or not at all.
    pub async fn get<W>(&mut self, remote: &str, sink: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.get_with(remote, sink, true).await.map(|t| t.size)
    }

    /// Like [`Client::get`], with or without verification.
    pub async fn get_with<W>(
        &mut self,
        remote: &str,
        sink: &mut W,
        verify: bool,
    ) -> Result<Transfer, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let reply = self.get_start(remote, 0, verify).await?;
        self.progress_start(remote, Some(reply.size), 0);
        // Hashing runs beside the receiving and the writing: each 256 KiB block is hashed by a
        // short task while the next one arrives (smaller blocks would cost a hand-off each).
        let mut hashing = verify.then(|| BlockSink::new(None, 0, Some(blake3::Hasher::new())));
        let stdout = Path::new("-");
        let during = format!("the download of {remote}");
        let mut left = reply.size;
        while left > 0 {
            let len = left.min(CHUNK as u64) as usize;
            let mut block = match hashing.as_mut() {
                Some(h) => h.buffer(len),
                None => vec![0u8; len.min(RECV)],
            };
            let mut at = 0;
            while at < len {
                // Small reads, each passed on at once: a cache-resident window.
                let end = len.min(at + RECV);
                let piece = match hashing {
                    Some(_) => &mut block[at..end],
                    None => &mut block[..end - at],
                };
                self.fill(piece, &during).await.map_err(|(_, e)| e)?;
                let written = sink
                    .write_all(piece)
                    .await
                    .map_err(Error::local(stdout, "write"));
                self.track(written)?;
                self.progress_advance((end - at) as u64);
                at = end;
            }
            left -= len as u64;
            if let Some(h) = hashing.as_mut() {
                // Hashing only: it cannot fail.
                let _ = h.write(block).await;
            }
        }
        sink.flush().await.map_err(Error::local(stdout, "write"))?;
        let hash = match hashing {
            Some(h) => h.finish().await.hasher.map(|h| h.finalize()),
            None => None,
        };
        let expected = self.expected_hash(&reply, remote).await?;
        let blake3 = check_hash(remote, expected, hash)?;
        Ok(Transfer {
            size: reply.size,
            bytes_transferred: reply.size,
            resumed_from: 0,
            blake3,
        })
    }

    /// Downloads `remote` to the file `local`, atomically: the bytes go to
    /// [`partial_path`]`(local)` and are renamed to `local` only once all of them arrived (and,
    /// with `verify`, hash to what the server vouches for). An existing `local` is replaced.
    ///
    /// A download that breaks off keeps its partial file; with `resume` the next call asks only
    /// for the rest. Without `resume` a leftover partial is started over.
    pub async fn get_file(
        &mut self,
        remote: &str,
        local: &Path,
        opts: GetOptions,
    ) -> Result<Transfer, Error> {
        // With a resume the partial is opened (and locked) first: its length is the offset.
        let partial = match opts.resume {
            true => Some(open_partial(local, true).await?),
            false => None,
        };
        let held = match &partial {
            Some(p) => p.len().map_err(Error::local(p.path(), "read"))?,
            None => 0,
        };
        let reply = match self.get_start(remote, held, opts.verify).await {
            // The partial is longer than the file now is: it belongs to another version.
            Err(Error::Remote(e)) if held > 0 && e.code == ErrorCode::BadRequest => {
                self.get_start(remote, 0, opts.verify).await?
            }
            other => other?,
        };
        self.get_file_body(remote, local, reply, opts.verify, partial)
            .await
    }

    /// Receives the body announced by `reply` (and its hash) into `local`'s partial file — the
    /// one given, already open, or a new one — then renames it into place: the second half of
    /// [`Client::get_file`].
    pub(crate) async fn get_file_body(
        &mut self,
        remote: &str,
        local: &Path,
        reply: GetReply,
        verify: bool,
        partial: Option<Partial>,
    ) -> Result<Transfer, Error> {
        let offset = reply.offset.unwrap_or(0);
        let opened = {
            let local = local.to_owned();
            spawn_blocking(move || {
                let partial = match partial {
                    Some(p) => p,
                    None => Partial::open(&local, false)?,
                };
                let mut file = partial.file()?;
                file.set_len(offset)?;
                io::Seek::seek(&mut file, io::SeekFrom::Start(offset))?;
                let hasher = if verify {
                    Some(files::hash_prefix(&file, offset)?)
                } else {
                    None
                };
                Ok::<_, io::Error>((partial, file, hasher))
            })
            .await
        };
        let (partial, file, hasher) = match opened {
            Ok(x) => x,
            Err(e) => {
                // The body is on its way and nobody will read it.
                self.broken = true;
                return Err(Error::local(
                    partial_path(local),
                    "open the partial download",
                )(e));
            }
        };
        let mut writer = BlockSink::new(Some(file), offset, hasher);
        let during = format!("the download of {remote}");
        self.progress_start(remote, Some(offset + reply.size), offset);
        let mut left = reply.size;
        let mut received = Ok(());
        'body: while left > 0 {
            let mut buf = writer.buffer(left.min(CHUNK as u64) as usize);
            let mut at = 0;
            while at < buf.len() {
                // Small reads: a cache-resident window.
                let end = buf.len().min(at + RECV);
                let got = self.fill(&mut buf[at..end], &during).await;
                let arrived = match &got {
                    Ok(()) => end - at,
                    Err((arrived, _)) => *arrived,
                };
                at += arrived;
                if let Err((_, e)) = got {
                    // Keep what did arrive, for a resume.
                    buf.truncate(at);
                    let _ = writer.write(buf).await;
                    received = Err(e);
                    break 'body;
                }
            }
            left -= buf.len() as u64;
            self.progress_advance(buf.len() as u64);
            if let Err(e) = writer.write(buf).await {
                self.broken = true;
                received = Err(Error::local(partial_path(local), "write")(e));
                break;
            }
        }
        let done = writer.finish().await;
        let actual = done.hasher.map(|h| h.finalize());
        let finished = done
            .written
            .map(|()| done.file.expect("the sink writes to a file"))
            .map_err(Error::local(partial_path(local), "write"));
        let file = match (received, finished) {
            (Ok(()), Ok(file)) => file,
            // Cut off: the partial stays for `--continue`. A local failure: start over next time.
            (Err(e @ Error::CutOff { .. }), _) => return Err(e),
            (Err(e), _) | (Ok(()), Err(e)) => {
                spawn_blocking(move || partial.discard()).await;
                return Err(e);
            }
        };
        drop(file);
        let verified = match self.expected_hash(&reply, remote).await {
            Ok(expected) => check_hash(remote, expected, actual),
            Err(e) => Err(e),
        };
        let blake3 = match verified {
            Ok(b) => b,
            Err(e) => {
                // What arrived does not match: it is useless for a resume too.
                if matches!(e, Error::Integrity { .. }) {
                    spawn_blocking(move || partial.discard()).await;
                }
                return Err(e);
            }
        };
        let target = local.to_owned();
        spawn_blocking(move || partial.commit(&target))
            .await
            .map_err(Error::local(local, "rename into"))?;
        let size = reply.file_size.unwrap_or(reply.size);
        Ok(Transfer {
            size,
            bytes_transferred: reply.size,
            resumed_from: offset,
            blake3,
        })
    }

    /// Uploads exactly `size` bytes read from `source` to `remote`, unverified.
    /// Without `overwrite` an existing remote file makes this fail with `exists`.
    pub async fn send<R>(
        &mut self,
        source: &mut R,
        size: u64,
        remote: &str,
        overwrite: bool,
    ) -> Result<u64, Error>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let args = SendRequest {
            path: remote.to_owned(),
            size,
            overwrite,
            ..Default::default()
        };
        let during = format!("the upload of {remote}");
        let ready: SendReady = self.send_start(&args, &during).await?;
        let mut left = size - ready.offset;
        let mut buf = vec![0u8; left.min(CHUNK as u64) as usize];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match source.read(&mut buf[..want]).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("it ended {left} bytes early"),
                )),
                other => other,
            };
            let n = self.track(n.map_err(Error::local("-", "read")))?;
            self.send_chunk(&buf[..n], &during).await?;
            left -= n as u64;
        }
        self.send_finish(&args, &during, None).await.map(|_| size)
    }

    async fn send_start(&mut self, args: &SendRequest, during: &str) -> Result<SendReady, Error> {
        self.request(args).await?;
        let ready: SendReady = self.reply(during).await?;
        if ready.offset > args.size {
            return self.track(Err(Error::Protocol(format!(
                "go-ahead from offset {} past the size",
                ready.offset
            ))));
        }
        Ok(ready)
    }

    pub(crate) async fn send_chunk(&mut self, chunk: &[u8], during: &str) -> Result<(), Error> {
        let written = with_stall(self.stall, self.writer.write_all(chunk))
            .await
            .map_err(Error::cut_off(during));
        self.track(written)
    }

    async fn send_finish(
        &mut self,
        args: &SendRequest,
        during: &str,
        ours: Option<&str>,
    ) -> Result<SendReply, Error> {
        let flushed = self.writer.flush().await.map_err(Error::cut_off(during));
        self.track(flushed)?;
        let reply: SendReply = self.reply(during).await?;
        if reply.size != args.size {
            return self.track(Err(Error::Protocol(format!(
                "server stored {} of {} bytes",
                reply.size, args.size
            ))));
        }
        if let (Some(ours), Some(theirs)) = (ours, reply.blake3.as_deref()) {
            if ours != theirs {
                return Err(Error::Integrity {
                    what: args.path.clone(),
                    expected: ours.into(),
                    actual: theirs.into(),
                });
            }
        }
        Ok(reply)
    }

    /// Uploads the local file `local` to `remote`. With `verify` (the default) the file's
    /// BLAKE3 hash is computed first and declared, and the server stores the file only if what
    /// it received matches; with `resume`, an upload the server kept is continued.
    pub async fn send_file(
        &mut self,
        local: &Path,
        remote: &str,
        opts: SendOptions,
    ) -> Result<Transfer, Error> {
        let path = local.to_owned();
        let opened = spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a regular file",
                ));
            }
            Ok((file, meta))
        })
        .await;
        let (file, meta) = opened.map_err(Error::local(local, "read"))?;
        self.send_opened(file, &meta, local, remote, opts).await
    }

    /// Uploads a file found by [`walk`](crate::walk) (or named with [`Upload::named`]) like
    /// [`Client::send_file`] — but only if the file opened is still the one found: a file
    /// swapped for a symlink or replaced since is refused with a local error, and nothing of
    /// it is sent (the connection stays usable).
    pub async fn send_upload(
        &mut self,
        upload: &Upload,
        opts: SendOptions,
    ) -> Result<Transfer, Error> {
        let found = upload.clone();
        let opened = spawn_blocking(move || found.open()).await;
        let (file, meta) = opened.map_err(Error::local(&upload.local, "read"))?;
        self.send_opened(file, &meta, &upload.local, &upload.remote, opts)
            .await
    }

    /// Uploads the open regular file `file` (described by `meta`, found at `local`).
    async fn send_opened(
        &mut self,
        file: std::fs::File,
        meta: &std::fs::Metadata,
        local: &Path,
        remote: &str,
        opts: SendOptions,
    ) -> Result<Transfer, Error> {
        let path = local.to_owned();
        let meta = meta.clone();
        // The version every byte sent must be of (checked again after the last one left).
        let version = Version::of(&file).map_err(Error::local(local, "read"))?;
        let (size, id) = spawn_blocking(move || upload_id(&path, &meta)).await;
        if size != version.size {
            return Err(Error::local(local, "read")(sft_io::changed()));
        }
        // Verified uploads hash while they send and give the hash in a trailer; an id derived
        // from the local file lets an interrupted one be resumed.
        let args = SendRequest {
            path: remote.to_owned(),
            size,
            overwrite: opts.overwrite,
            trailer: opts.verify,
            upload_id: opts.verify.then_some(id),
            resume: opts.resume && opts.verify,
            ..Default::default()
        };
        let during = format!("the upload of {remote}");
        let ready = self.send_start(&args, &during).await?;
        self.progress_start(remote, Some(size), ready.offset);
        let body = size - ready.offset;
        let hash = if files::ZERO_COPY && body >= files::SENDFILE_MIN {
            self.send_zero_copy(file, ready.offset, version, opts.verify, local, &during)
                .await?
        } else {
            let hasher = if opts.verify {
                // Resuming: the whole file's hash needs the part the server already holds.
                let offset = ready.offset;
                let reader = file.try_clone().map_err(Error::local(local, "read"))?;
                let prefix = spawn_blocking(move || files::hash_prefix(&reader, offset)).await;
                Some(self.track(prefix.map_err(Error::local(local, "read")))?)
            } else {
                None
            };
            // The version is confirmed after the last block is read: a file rewritten while
            // it is sent ends the upload with an error before the trailer, never "verified".
            let mut reader = FileSource::new(file, ready.offset, body, hasher, Some(version));
            while let Some(chunk) = reader.next().await {
                let chunk = self.track(chunk.map_err(Error::local(local, "read")))?;
                self.send_chunk(&chunk, &during).await?;
                self.progress_advance(chunk.len() as u64);
            }
            reader.hash()
        };
        let ours = hash.map(|h| h.to_hex().to_string());
        if let Some(hash) = &ours {
            self.scratch.clear();
            encode_trailer(
                &SendTrailer {
                    blake3: hash.clone(),
                },
                &mut self.scratch,
            );
            let line = std::mem::take(&mut self.scratch);
            let sent = self.send_chunk(&line, &during).await;
            self.scratch = line;
            sent?;
        }
        let reply = self.send_finish(&args, &during, ours.as_deref()).await?;
        Ok(Transfer {
            size,
            bytes_transferred: size - ready.offset,
            resumed_from: ready.offset,
            blake3: reply.blake3.or(ours),
        })
    }

    /// Sends bytes `offset..` of `file` with `sendfile(2)` (no copy through this process),
    /// while a blocking task reads the whole file and hashes it (when verifying); then confirms
    /// the file is still `version`, so a file rewritten meanwhile is never reported verified.
    async fn send_zero_copy(
        &mut self,
        file: std::fs::File,
        offset: u64,
        version: Version,
        verify: bool,
        local: &Path,
        during: &str,
    ) -> Result<Option<blake3::Hash>, Error> {
        let size = version.size;
        let flushed = self.writer.flush().await.map_err(Error::cut_off(during));
        self.track(flushed)?;
        let hashing = match verify {
            true => {
                let reader = file.try_clone().map_err(Error::local(local, "read"))?;
                Some(spawn_blocking(move || files::hash_prefix(&reader, size)))
            }
            false => None,
        };
        let mut sent = offset;
        let result = {
            let progress = self.progress.clone();
            let mut pace = Pace::new(PaceRule {
                stall: self.stall,
                min_rate: 0,
            });
            sft_io::sendfile(
                &file,
                &mut sent,
                size,
                self.writer.get_ref(),
                &mut pace,
                |n| {
                    if let Some(p) = &progress {
                        p.advance(n);
                    }
                },
            )
            .await
        };
        if let Err(e) = result {
            self.broken = true;
            // A file that ended early is a local problem; anything else, the connection's.
            return Err(match e.kind() {
                io::ErrorKind::UnexpectedEof => Error::local(local, "read")(e),
                _ => Error::cut_off(during)(e),
            });
        }
        let hash = match hashing {
            Some(task) => {
                let hasher = task.await.map_err(Error::local(local, "read"));
                Some(self.track(hasher)?.finalize())
            }
            None => None,
        };
        let confirmed = spawn_blocking(move || confirm(&file, &version, hash.as_ref())).await;
        self.track(confirmed.map_err(Error::local(local, "read")))?;
        Ok(hash)
    }
}

/// Names an upload of the local file at `path` so that the server can keep it for a resume:
/// a hash of the file's identity and version (path, device, inode, size, modification time),
/// stable while the file is unchanged and unguessable to other clients. Returns the size too.
fn upload_id(path: &Path, meta: &std::fs::Metadata) -> (u64, String) {
    use std::os::unix::fs::MetadataExt;
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut h = blake3::Hasher::new();
    h.update(absolute.as_os_str().as_encoded_bytes());
    for n in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
    ] {
        h.update(&n.to_le_bytes());
    }
    (meta.len(), h.finalize().to_hex()[..32].to_owned())
}

/// Compares what the server vouches for with what arrived.
fn check_hash(
    remote: &str,
    expected: Option<String>,
    actual: Option<blake3::Hash>,
) -> Result<Option<String>, Error> {
    match (expected, actual) {
        (_, None) => Ok(None),
        (None, Some(_)) => Err(Error::Protocol(format!(
            "the server sent no hash for {remote}"
        ))),
        (Some(expected), Some(actual)) => {
            let actual = actual.to_hex().to_string();
            if expected == actual {
                Ok(Some(actual))
            } else {
                Err(Error::Integrity {
                    what: remote.to_owned(),
                    expected,
                    actual,
                })
            }
        }
    }
}

/// What [`Client::stream_line`] read; the line itself is in `Client::line`.
#[derive(Debug)]
pub(crate) enum StreamItem {
    /// An item line.
    Item,
    /// The end line.
    End,
    /// An error line: the stream ended incomplete.
    Error(WireError),
}

/// Opens (and locks) the partial download of `local`, see [`Partial::open`].
pub(crate) async fn open_partial(local: &Path, resume: bool) -> Result<Partial, Error> {
    let target = local.to_owned();
    spawn_blocking(move || Partial::open(&target, resume))
        .await
        .map_err(Error::local(
            partial_path(local),
            "open the partial download",
        ))
}

/// Where [`Client::get_file`] keeps a download in progress: `.<name>.sft-part` beside `local`.
pub fn partial_path(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    local.with_file_name(format!(".{name}.sft-part"))
}
