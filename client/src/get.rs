//! `GET`: downloading one file, to a sink or atomically to a local file.

use crate::client::{open_partial, partial_path, Client, Transfer};
use crate::conn::Exchange;
use crate::delta::body::ReplyBody;
use crate::delta::{self, Outcome};
use crate::error::Error;
use crate::files::{self, CHUNK, RECV};
use crate::many::encode_get;
use crate::partial::Partial;
use async_std::task::spawn_blocking;
use futures::{AsyncWrite, AsyncWriteExt};
use sft_io::{BlockSink, Pool};
use sft_protocol::decode_trailer;
use sft_protocol::verbs::{GetReply, GetTrailer};
use sft_protocol::ErrorCode;
use std::io;
use std::path::Path;

/// Bodies up to this size are received into memory and stored with one blocking task (create,
/// write, stamp, rename), instead of a block pipeline: for many small files, the hand-offs
/// would cost more than the bytes.
pub(crate) const SMALL: u64 = 1 << 20;

/// Options of a download.
#[derive(Debug, Clone, Copy)]
pub struct GetOptions {
    /// Check the file's BLAKE3 hash (on by default).
    pub verify: bool,
    /// Continue from the partial download left by an earlier attempt, if any.
    pub resume: bool,
    /// Give the local file the remote file's modification time, when the server tells it (on
    /// by default).
    pub times: bool,
    /// Give the local file the remote file's permission bits (`0o777` at most), when the
    /// server tells them (off by default: the local umask decides).
    pub mode: bool,
    /// Replace an existing local file of at least 1 MiB by delta: only the parts that differ
    /// cross the network (on by default; used with a server that speaks protocol version 3,
    /// PROTOCOL.md §8.4, and never to continue a partial download).
    pub delta: bool,
    /// Ask for the bytes zstd-compressed at this level, if the server allows compression
    /// (`None`, the default: uncompressed).
    pub compress: Option<i32>,
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions {
            verify: true,
            resume: false,
            times: true,
            mode: false,
            delta: true,
            compress: None,
        }
    }
}

impl GetOptions {
    /// What to give the local file from `reply`: its modification time and permission bits.
    fn stamp(&self, reply: &GetReply) -> Stamp {
        Stamp {
            mtime: reply.mtime.filter(|_| self.times),
            mode: reply.mode.filter(|_| self.mode).map(|m| m & 0o777),
        }
    }
}

/// A modification time and permission bits to give a downloaded file.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stamp {
    pub(crate) mtime: Option<i64>,
    pub(crate) mode: Option<u32>,
}

impl Stamp {
    /// Gives `file` the time and bits (blocking).
    pub(crate) fn apply(&self, file: &std::fs::File) -> io::Result<()> {
        if let Some(mode) = self.mode {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        if let Some(mtime) = self.mtime {
            let time = match u64::try_from(mtime) {
                Ok(s) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
                Err(_) => {
                    std::time::UNIX_EPOCH - std::time::Duration::from_secs(mtime.unsigned_abs())
                }
            };
            file.set_modified(time)?;
        }
        Ok(())
    }
}

impl Client {
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
        let mut x = self.conn.begin()?;
        let reply = get_start(&mut x, remote, 0, verify, None).await?;
        x.progress_start(remote, Some(reply.body_len()), 0);
        // Hashing runs beside the receiving and the writing: each 256 KiB block is hashed by a
        // short task while the next one arrives (smaller blocks would cost a hand-off each).
        let mut hashing = verify
            .then(|| BlockSink::new(None, 0, Some(blake3::Hasher::new()), &Pool::unbounded()));
        let stdout = Path::new("-");
        let during = format!("the download of {remote}");
        let mut left = reply.body_len();
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
                x.fill(piece, &during).await.map_err(|(_, e)| e)?;
                sink.write_all(piece)
                    .await
                    .map_err(Error::local(stdout, "write"))?;
                x.progress_advance((end - at) as u64);
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
        let expected = expected_hash(&mut x, &reply, remote).await?;
        x.finish(check_hash(remote, expected, hash))
            .map(|blake3| Transfer {
                size: reply.body_len(),
                bytes_transferred: reply.body_len(),
                resumed_from: 0,
                blake3,
                ..Transfer::default()
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
        let mut spent = 0;
        if opts.delta && !(opts.resume && has_partial(local)) {
            match self.try_delta(remote, local, opts).await? {
                Some(Outcome::Done(t)) => return Ok(t),
                Some(Outcome::Whole(moved)) => spent = moved,
                None => {}
            }
        }
        let mut t = self.get_whole(remote, local, opts).await?;
        t.bytes_transferred += spent;
        Ok(t)
    }

    /// Whether the server takes deltas (it answers `SIGN`, protocol version 3): asked once per
    /// connection.
    pub async fn takes_deltas(&mut self) -> bool {
        self.conn.caps().await.sign
    }

    /// A delta download of `remote` over `local`, if the server and the local file allow one.
    async fn try_delta(
        &mut self,
        remote: &str,
        local: &Path,
        opts: GetOptions,
    ) -> Result<Option<Outcome>, Error> {
        let at = local.to_owned();
        let basis = spawn_blocking(move || delta::get::open_basis(&at))
            .await
            .map_err(Error::local(local, "read"))?;
        let Some(basis) = basis else {
            return Ok(None);
        };
        if !self.takes_deltas().await {
            return Ok(None);
        }
        let compress = self.conn.compress_level(opts.compress).await;
        delta::get::get(&mut self.conn, remote, local, basis, opts, compress)
            .await
            .map(Some)
    }

    /// [`Client::get_file`] of the whole file.
    async fn get_whole(
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
        let level = self.conn.compress_level(opts.compress).await;
        let mut x = self.conn.begin()?;
        let reply = match get_start(&mut x, remote, held, opts.verify, level).await {
            // The partial is longer than the file now is: it belongs to another version.
            Err(Error::Remote(e)) if held > 0 && e.code == ErrorCode::BadRequest => {
                get_start(&mut x, remote, 0, opts.verify, level).await?
            }
            other => other?,
        };
        get_file_body(&mut x, remote, local, reply, opts, partial).await
    }
}

/// Whether a partial download of `local` holds anything to continue (one `lstat`).
pub(crate) fn has_partial(local: &Path) -> bool {
    std::fs::symlink_metadata(partial_path(local)).is_ok_and(|m| m.len() > 0)
}

/// Starts a GET, compressed at `level` if given; returns the reply.
async fn get_start(
    x: &mut Exchange<'_>,
    remote: &str,
    offset: u64,
    hash: bool,
    level: Option<i32>,
) -> Result<GetReply, Error> {
    encode_get(&mut x.scratch, remote, offset, hash, level);
    x.write_scratch("GET").await?;
    get_reply(x, remote, offset).await
}

/// Reads the reply to a GET of `remote` from `offset` (sent earlier, perhaps pipelined).
pub(crate) async fn get_reply(
    x: &mut Exchange<'_>,
    remote: &str,
    offset: u64,
) -> Result<GetReply, Error> {
    let reply: GetReply = x.reply(&format!("GET {remote}")).await?;
    if reply.size.is_none() && reply.stream.is_none() {
        return Err(Error::Protocol(format!(
            "the reply to GET {remote} has no \"size\""
        )));
    }
    let got = reply.offset.unwrap_or(0);
    if got != offset {
        return Err(Error::Protocol(format!(
            "asked for offset {offset}, got {got}"
        )));
    }
    Ok(reply)
}

/// The hash the server vouches for: from the reply, or from the trailer after the body.
async fn expected_hash(
    x: &mut Exchange<'_>,
    reply: &GetReply,
    remote: &str,
) -> Result<Option<String>, Error> {
    if !reply.trailer {
        return Ok(reply.blake3.clone());
    }
    let during = format!("the trailer of {remote}");
    x.read_line(&during).await?;
    let trailer: GetTrailer =
        decode_trailer(&x.line).map_err(|e| Error::Protocol(format!("{during}: {}", e.message)))?;
    Ok(Some(trailer.blake3))
}

/// Receives the body announced by `reply` (and its hash) into `local`'s partial file — the
/// one given, already open, or a new one — then renames it into place: the second half of
/// [`Client::get_file`]. The exchange is done once the body and its hash were read.
pub(crate) async fn get_file_body(
    x: &mut Exchange<'_>,
    remote: &str,
    local: &Path,
    reply: GetReply,
    opts: GetOptions,
    partial: Option<Partial>,
) -> Result<Transfer, Error> {
    let offset = reply.offset.unwrap_or(0);
    if reply.stream.is_some() {
        return get_file_chunked(x, remote, local, reply, opts, partial).await;
    }
    if partial.is_none() && offset == 0 && reply.body_len() <= SMALL {
        return get_small(x, remote, local, reply, opts).await;
    }
    let stamp = opts.stamp(&reply);
    let (partial, file, hasher) = open_for_body(local, partial, offset, opts.verify).await?;
    let mut writer = BlockSink::new(Some(file), offset, hasher, &Pool::unbounded());
    let during = format!("the download of {remote}");
    x.progress_start(remote, Some(offset + reply.body_len()), offset);
    let mut left = reply.body_len();
    let mut received = Ok(());
    'body: while left > 0 {
        let mut buf = writer.buffer(left.min(CHUNK as u64) as usize);
        let mut at = 0;
        while at < buf.len() {
            // Small reads: a cache-resident window.
            let end = buf.len().min(at + RECV);
            let got = x.fill(&mut buf[at..end], &during).await;
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
        x.progress_advance(buf.len() as u64);
        if let Err(e) = writer.write(buf).await {
            received = Err(Error::local(partial_path(local), "write")(e));
            break;
        }
    }
    let (partial, file, actual) = settle(writer, received, partial, local).await?;
    let expected = expected_hash(x, &reply, remote).await?;
    // Body and hash read: whatever happens to the file now, the connection is in step.
    x.done();
    let blake3 = land(remote, local, (partial, file, stamp), expected, actual).await?;
    let size = reply.file_size.unwrap_or(reply.body_len());
    Ok(Transfer {
        size,
        bytes_transferred: reply.body_len(),
        resumed_from: offset,
        blake3,
        ..Transfer::default()
    })
}

/// Ends the writing of a body into `partial`: the file and its hash when every byte arrived
/// (`received`) and was written. Cut off, the partial stays for `--continue` (what arrived,
/// decompressed if it was, is the file's start); after a local failure it goes, to start over.
async fn settle(
    writer: BlockSink,
    received: Result<(), Error>,
    partial: Partial,
    local: &Path,
) -> Result<(Partial, std::fs::File, Option<blake3::Hash>), Error> {
    let done = writer.finish().await;
    let actual = done.hasher.map(|h| h.finalize());
    let finished = done
        .written
        .map(|()| done.file.expect("the sink writes to a file"))
        .map_err(Error::local(partial_path(local), "write"));
    match (received, finished) {
        (Ok(()), Ok(file)) => Ok((partial, file, actual)),
        (Err(e @ Error::CutOff { .. }), _) => Err(e),
        (Err(e), _) | (Ok(()), Err(e)) => {
            spawn_blocking(move || partial.discard()).await;
            Err(e)
        }
    }
}

/// Keeps a download that arrived whole in `partial` (open as `file`) if it hashes to what the
/// server vouches for: stamped and renamed to `local`. Otherwise the partial goes — it is
/// useless for a resume too — and the mismatch is the error.
async fn land(
    remote: &str,
    local: &Path,
    (partial, file, stamp): (Partial, std::fs::File, Stamp),
    expected: Option<String>,
    actual: Option<blake3::Hash>,
) -> Result<Option<String>, Error> {
    match check_hash(remote, expected, actual) {
        Ok(blake3) => {
            place(partial, file, stamp, local).await?;
            Ok(blake3)
        }
        Err(e) => {
            spawn_blocking(move || partial.discard()).await;
            Err(e)
        }
    }
}

/// Gives the finished `file` (the open `partial`) its time and bits and renames it to `local`.
pub(crate) async fn place(
    partial: Partial,
    file: std::fs::File,
    stamp: Stamp,
    local: &Path,
) -> Result<(), Error> {
    let target = local.to_owned();
    spawn_blocking(move || {
        stamp.apply(&file)?;
        drop(file);
        partial.commit(&target)
    })
    .await
    .map_err(Error::local(local, "rename into"))
}

/// Opens `local`'s partial download — the one given, already open, or a new one — for a body
/// from `offset`: cut to that length, positioned there, and its first `offset` bytes hashed
/// when verifying. On failure the body is on its way and nobody will read it: the caller's
/// guard breaks the connection.
async fn open_for_body(
    local: &Path,
    partial: Option<Partial>,
    offset: u64,
    verify: bool,
) -> Result<(Partial, std::fs::File, Option<blake3::Hasher>), Error> {
    let at = local.to_owned();
    spawn_blocking(move || {
        let partial = match partial {
            Some(p) => p,
            None => Partial::open(&at, false)?,
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
    .map_err(Error::local(
        partial_path(local),
        "open the partial download",
    ))
}

/// [`get_file_body`] for a chunked (compressed) body: decoded as it arrives, its hash in the
/// terminator.
async fn get_file_chunked(
    x: &mut Exchange<'_>,
    remote: &str,
    local: &Path,
    reply: GetReply,
    opts: GetOptions,
    partial: Option<Partial>,
) -> Result<Transfer, Error> {
    let during = format!("the download of {remote}");
    let offset = reply.offset.unwrap_or(0);
    let Some(size) = reply.file_size.filter(|&s| s >= offset) else {
        return Err(Error::Protocol(format!(
            "{during}: a compressed reply without a usable \"file_size\""
        )));
    };
    let stamp = opts.stamp(&reply);
    let (partial, file, hasher) = open_for_body(local, partial, offset, opts.verify).await?;
    let mut writer = BlockSink::new(Some(file), offset, hasher, &Pool::unbounded());
    let mut body = ReplyBody::of(&reply);
    x.progress_start(remote, Some(size), offset);
    let mut at = offset;
    let received = loop {
        // Each piece goes straight into one of the sink's recycled blocks.
        let piece = match body.ready(x, &during).await {
            Ok(0) => Ok(None),
            Ok(n) => {
                let mut block = writer.buffer(n.min(CHUNK));
                body.fill(x, &mut block, &during)
                    .await
                    .map(|()| Some(block))
            }
            Err(e) => Err(e),
        };
        match piece {
            Ok(Some(block)) => {
                at += block.len() as u64;
                if at > size {
                    break Err(Error::Protocol(format!(
                        "{during}: more bytes than the file's {size}"
                    )));
                }
                x.progress_advance(block.len() as u64);
                if let Err(e) = writer.write(block).await {
                    break Err(Error::local(partial_path(local), "write")(e));
                }
            }
            Ok(None) if at == size => break Ok(()),
            Ok(None) => {
                break Err(Error::Protocol(format!(
                    "{during}: {at} of {size} bytes came"
                )))
            }
            Err(e) => break Err(e),
        }
    };
    let (partial, file, actual) = settle(writer, received, partial, local).await?;
    // The terminator was read: in step.
    x.done();
    let expected = body.finish(x, &during).await?;
    let blake3 = land(remote, local, (partial, file, stamp), expected, actual).await?;
    Ok(Transfer {
        size,
        bytes_transferred: body.wire,
        compressed: body.compressed,
        resumed_from: offset,
        blake3,
        ..Transfer::default()
    })
}

/// [`get_file_body`] for a small body from its start: received into memory and hashed in
/// place, then stored by one blocking task.
async fn get_small(
    x: &mut Exchange<'_>,
    remote: &str,
    local: &Path,
    reply: GetReply,
    opts: GetOptions,
) -> Result<Transfer, Error> {
    let small = receive_small(x, remote, local, reply, opts).await?;
    let local = local.to_owned();
    spawn_blocking(move || small.store(&local)).await
}

/// A small download received whole and checked, still to be stored.
#[derive(Debug)]
pub(crate) struct SmallBody {
    body: Vec<u8>,
    stamp: Stamp,
    transfer: Transfer,
}

impl SmallBody {
    /// Writes it to `local`'s partial and renames that into place (blocking).
    pub(crate) fn store(self, local: &Path) -> Result<Transfer, Error> {
        let SmallBody {
            body,
            stamp,
            transfer,
        } = self;
        let partial = Partial::open(local, false).map_err(Error::local(
            partial_path(local),
            "open the partial download",
        ))?;
        let written = (|| {
            let mut file = partial.file()?;
            io::Write::write_all(&mut file, &body)?;
            stamp.apply(&file)
        })();
        if let Err(e) = written {
            partial.discard();
            return Err(Error::local(partial_path(local), "write")(e));
        }
        partial
            .commit(local)
            .map_err(Error::local(local, "rename into"))?;
        Ok(transfer)
    }
}

/// Receives a small body from its start (announced by `reply`) and its hash, and checks it:
/// the exchange is then done. A cut-off keeps what arrived in `local`'s partial.
pub(crate) async fn receive_small(
    x: &mut Exchange<'_>,
    remote: &str,
    local: &Path,
    reply: GetReply,
    opts: GetOptions,
) -> Result<SmallBody, Error> {
    let during = format!("the download of {remote}");
    let mut body = vec![0u8; reply.body_len() as usize];
    x.progress_start(remote, Some(reply.body_len()), 0);
    if let Err((arrived, e)) = x.fill(&mut body, &during).await {
        // Cut off: what did arrive is kept for `--continue`, like a large file's.
        if arrived > 0 {
            body.truncate(arrived);
            let target = local.to_owned();
            let _ = spawn_blocking(move || {
                let partial = Partial::open(&target, false)?;
                io::Write::write_all(&mut partial.file()?, &body)
            })
            .await;
        }
        return Err(e);
    }
    x.progress_advance(reply.body_len());
    let expected = expected_hash(x, &reply, remote).await?;
    x.done();
    let actual = opts.verify.then(|| blake3::hash(&body));
    let blake3 = check_hash(remote, expected, actual)?;
    Ok(SmallBody {
        body,
        stamp: opts.stamp(&reply),
        transfer: Transfer {
            size: reply.body_len(),
            bytes_transferred: reply.body_len(),
            resumed_from: 0,
            blake3,
            ..Transfer::default()
        },
    })
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
