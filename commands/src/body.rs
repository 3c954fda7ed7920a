//! Moving exactly a declared number of body bytes, in bounded chunks, within the pace rules.
//!
//! The mechanisms themselves (block pipelines, sendfile, deadlines) live in `sft-io`, shared
//! with the client; this file adapts them to a request's reader and writer. The built-in verbs
//! and third-party ones use the same helpers: [`Context::send_file`], and the [`Body`] handle
//! a go-ahead returns ([`Body::receive_file`], [`Body::discard`], [`Body::read_exact`],
//! [`Body::read_line`]).

use crate::command::CommandError;
use crate::context::Context;
use crate::sandbox::{io_error, Work};
use crate::staging::{Interrupted, Staged, Upload};
use futures::{AsyncRead, AsyncWrite};
use sft_io::{confirm, BlockSink, FileSource, Pace, Pool, Version, CHUNK, RECV};
use std::fs::File;
use std::io;

pub(crate) use sft_io::blocks::read_full_at;

/// Feeds the first `len` bytes of `file` to `hasher` (blocking; resuming needs the prefix).
pub(crate) fn hash_prefix(file: &File, hasher: &mut blake3::Hasher, len: u64) -> io::Result<()> {
    sft_io::blocks::hash_range(file, hasher, 0, len)
}

/// Which side of a copy failed.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading failed, or the source ended before the declared length.
    Read(io::Error),
    /// Writing failed.
    Write(io::Error),
}

fn ended_early(left: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("ended {left} bytes before the declared {len}"),
    )
}

/// Copies exactly `len` bytes from `src` to `dst`, calling `progress` with each chunk read.
/// Reads and writes keep `pace` (stall timeout and minimum rate).
pub(crate) async fn copy_exact<R, W>(
    src: &mut R,
    dst: &mut W,
    len: u64,
    pace: &mut Pace,
    mut progress: impl FnMut(u64),
) -> Result<(), CopyError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; len.min(CHUNK as u64) as usize];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = pace
            .read(src, &mut buf[..want])
            .await
            .map_err(CopyError::Read)?;
        if n == 0 {
            return Err(CopyError::Read(ended_early(left, len)));
        }
        // Counted once read: after a failed write the caller knows how much is left to drain.
        left -= n as u64;
        progress(n as u64);
        pace.write_all(dst, &buf[..n])
            .await
            .map_err(CopyError::Write)?;
    }
    Ok(())
}

/// Reads and discards exactly `len` bytes (keeps a connection in step after a refused body).
pub(crate) async fn discard<R: AsyncRead + Unpin + ?Sized>(
    src: &mut R,
    len: u64,
    pace: &mut Pace,
) -> io::Result<()> {
    let mut sink = futures::io::sink();
    match copy_exact(src, &mut sink, len, pace, |_| {}).await {
        Ok(()) => Ok(()),
        Err(CopyError::Read(e)) | Err(CopyError::Write(e)) => Err(e),
    }
}

/// Where a received body goes.
pub(crate) enum Dest {
    /// An open file.
    Open(File),
    /// A file not created yet: this creates it, on the blocking pool, just before the first
    /// block is written — so a body that stores nothing costs the file system nothing.
    Later(Box<dyn FnOnce() -> io::Result<File> + Send>),
}

/// A file being received into.
pub(crate) struct Sink {
    /// The file, open or still to be created.
    pub(crate) dest: Dest,
    /// The hash of everything in the file so far, if hashing.
    pub(crate) hasher: Option<blake3::Hasher>,
    /// Where its writes run: the root's pool.
    pub(crate) pool: Pool,
}

/// Why [`stream_to_file`] stopped early, and what it stored.
pub(crate) struct Stopped {
    /// Which side failed.
    pub(crate) error: CopyError,
    /// The sink, holding (and hashing) exactly the bytes stored; `None` once a write failed.
    pub(crate) sink: Option<Sink>,
    /// Bytes stored, from `start` on.
    pub(crate) stored: u64,
}

/// Receives exactly `len` bytes from `src` into `sink` from position `start` on, hashing them
/// if it hashes. Each block is hashed and written by short tasks on the blocking pool while the
/// next one arrives (see [`BlockSink`]): no pool thread waits on the client, however slowly it
/// sends. A file still to be created is created when the first block is written.
///
/// When the source fails, the bytes of the last block that did arrive are stored only if the
/// file then holds at least `keep_from` bytes (what an interrupted upload must hold to be kept
/// for a resume): otherwise they would be written only to be removed. On failure the sink comes
/// back once every byte stored is written and hashed, so an interrupted upload can be kept and
/// resumed.
pub(crate) async fn stream_to_file<R>(
    src: &mut R,
    sink: Sink,
    start: u64,
    len: u64,
    keep_from: u64,
    pace: &mut Pace,
    mut progress: impl FnMut(u64),
) -> Result<Sink, Stopped>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let Sink {
        dest,
        mut hasher,
        pool,
    } = sink;
    let (mut blocks, mut create) = match dest {
        Dest::Open(file) => (
            Some(BlockSink::new(Some(file), start, hasher.take(), &pool)),
            None,
        ),
        Dest::Later(create) => (None, Some(create)),
    };
    let cap = len.min(CHUNK as u64) as usize;
    let (mut left, mut stored) = (len, 0);
    let mut failed = None;
    while left > 0 && failed.is_none() {
        let want = left.min(cap as u64) as usize;
        let mut buf = match &mut blocks {
            Some(blocks) => blocks.buffer(want),
            None => vec![0; want],
        };
        let mut filled = 0;
        while filled < buf.len() {
            let end = buf.len().min(filled + RECV);
            let read = match pace.read(src, &mut buf[filled..end]).await {
                Ok(0) => Err(ended_early(left - filled as u64, len)),
                other => other,
            };
            match read {
                Ok(n) => filled += n,
                Err(e) => {
                    failed = Some(e);
                    buf.truncate(filled);
                    break;
                }
            }
        }
        progress(filled as u64);
        left -= filled as u64;
        if failed.is_some() && start + stored + (filled as u64) < keep_from {
            // Too little to be kept: not worth writing.
            break;
        }
        let blocks = match (&mut blocks, create.take()) {
            (Some(blocks), _) => blocks,
            (None, Some(create)) => match pool.spawn(create).io().await {
                Ok(file) => blocks.insert(BlockSink::new(Some(file), start, hasher.take(), &pool)),
                Err(e) => {
                    return Err(Stopped {
                        error: CopyError::Write(e),
                        sink: None,
                        stored,
                    })
                }
            },
            (None, None) => unreachable!("a sink has a file or a way to create one"),
        };
        stored += filled as u64;
        if blocks.write(buf).await.is_err() {
            break;
        }
    }
    let Some(blocks) = blocks else {
        // Nothing was written: the file is still to be created.
        let dest = Dest::Later(create.expect("not taken: nothing was written"));
        let sink = Sink { dest, hasher, pool };
        return match failed {
            Some(e) => Err(Stopped {
                error: CopyError::Read(e),
                sink: Some(sink),
                stored,
            }),
            None => Ok(sink),
        };
    };
    let done = blocks.finish().await;
    // A file a write given up on still holds is gone with it (`written` says why).
    let sink = done.file.map(|file| Sink {
        dest: Dest::Open(file),
        hasher: done.hasher,
        pool,
    });
    match (done.written, failed, sink) {
        (Ok(()), None, Some(sink)) => Ok(sink),
        (Ok(()), Some(e), Some(sink)) => Err(Stopped {
            error: CopyError::Read(e),
            sink: Some(sink),
            stored,
        }),
        (written, _, _) => Err(Stopped {
            error: CopyError::Write(written.err().unwrap_or_else(|| {
                io::Error::other("the upload's file was lost with a write given up on")
            })),
            sink: None,
            stored,
        }),
    }
}

/// Sends bytes `offset..offset + body` of `file` as a body, with `sendfile(2)` where it
/// applies and through the connection's writer otherwise, every wait within the writer's pace.
/// With `hashing` (a hasher holding the hash of the bytes before `offset`, and the version the
/// file was when opened), also computes the whole file's hash and confirms the file is still
/// that version before returning it. Returns the file and that hash.
pub(crate) async fn send_range(
    ctx: &mut Context<'_>,
    file: File,
    offset: u64,
    body: u64,
    hashing: Option<(blake3::Hasher, Version)>,
) -> Result<(File, Option<blake3::Hash>), CopyError> {
    // `sendfile` waits on the file in the calling thread, an executor thread: on a network
    // file system that may hang, the body is read on the root's pool instead.
    let local = ctx.root.is_local();
    if log::log_enabled!(log::Level::Debug) {
        let (how, why) = match local {
            true => ctx.writer.why_zero_copy(body),
            false => ("copy", "a network file system: read on the storage pool"),
        };
        log::debug!(
            session = ctx.session, offset = offset, bytes = body, how = how, why = why,
            hashing = hashing.is_some();
            "sending a file body"
        );
    }
    if local && ctx.writer.zero_copy(body) {
        send_zero_copy(ctx, file, offset, body, hashing).await
    } else {
        send_copied(ctx, file, offset, body, hashing).await
    }
}

/// Sends the body with `sendfile(2)`; when a hash is being computed, a blocking task reads and
/// hashes the same bytes meanwhile (from the page cache), so hashing costs no extra time as
/// long as it keeps up with the network. Then, before that hash can go out in a trailer,
/// confirms the file is still the version it was.
///
/// Only a hash computed while sending needs the check: a hash given up front (cached) lets the
/// client itself find a torn body, and without a hash nothing is vouched for. Checking those
/// would only cut a connection whose client already has every byte.
#[cfg(target_os = "linux")]
async fn send_zero_copy(
    ctx: &mut Context<'_>,
    file: File,
    offset: u64,
    body: u64,
    hashing: Option<(blake3::Hasher, Version)>,
) -> Result<(File, Option<blake3::Hash>), CopyError> {
    ctx.flush().await.map_err(CopyError::Write)?;
    let (hashing, version) = match hashing {
        Some((mut hasher, version)) => {
            let reader = file.try_clone().map_err(CopyError::Read)?;
            let task = Some(ctx.root.bulk(move || {
                sft_io::blocks::hash_range(&reader, &mut hasher, offset, body)
                    .map(|()| hasher.finalize())
            }));
            (task, Some(version))
        }
        None => (None, None),
    };
    let mut pos = offset;
    let stats = &mut ctx.stats;
    let sent = ctx
        .writer
        .sendfile(&file, &mut pos, offset + body, |n| stats.bytes_out += n)
        .await;
    let hash = match hashing {
        Some(task) => Some(task.io().await.map_err(CopyError::Read)?),
        None => None,
    };
    sent.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CopyError::Read(e),
        _ => CopyError::Write(e),
    })?;
    let (Some(hash), Some(version)) = (hash, version) else {
        return Ok((file, None));
    };
    ctx.root
        .bulk(move || confirm(&file, &version, Some(&hash)).map(|()| file))
        .io()
        .await
        .map(|file| (file, Some(hash)))
        .map_err(CopyError::Read)
}

#[cfg(not(target_os = "linux"))]
async fn send_zero_copy(
    ctx: &mut Context<'_>,
    file: File,
    offset: u64,
    body: u64,
    hashing: Option<(blake3::Hasher, Version)>,
) -> Result<(File, Option<blake3::Hash>), CopyError> {
    send_copied(ctx, file, offset, body, hashing).await
}

/// Sends the body through the connection's writer, read one block ahead and hashed exactly as
/// sent; when hashing, the version is confirmed after the last block is read, before it is
/// written (see [`send_zero_copy`] for why only then).
async fn send_copied(
    ctx: &mut Context<'_>,
    file: File,
    offset: u64,
    body: u64,
    hashing: Option<(blake3::Hasher, Version)>,
) -> Result<(File, Option<blake3::Hash>), CopyError> {
    let (hasher, version) = hashing.unzip();
    let mut source = FileSource::new(file, offset, body, hasher, version, ctx.root.pool());
    while let Some(block) = source.next().await {
        let block = block.map_err(CopyError::Read)?;
        log::trace!(session = ctx.session, bytes = block.len(); "body: a block copied");
        ctx.write_body(&block).await.map_err(CopyError::Write)?;
    }
    let hash = source.hash();
    let file = source
        .into_file()
        .ok_or_else(|| CopyError::Read(io::Error::other("the file was not read to its end")))?;
    Ok((file, hash))
}

/// A request body received into a staging file by [`Body::receive_file`].
#[derive(Debug)]
pub struct ReceivedFile {
    /// The staging file, holding exactly the body. Put it in place with
    /// [`Staged::commit`] (on the blocking pool); dropped, it is removed.
    pub staged: Staged,
    /// The BLAKE3 hash of the body, when asked for.
    pub hash: Option<blake3::Hash>,
}

impl Context<'_> {
    /// What messages about the request's file call it: [`Stats::path`](crate::Stats::path) if
    /// the handler set it.
    fn shown(&self) -> String {
        self.stats.path.clone().unwrap_or_else(|| "the file".into())
    }

    /// Sends bytes `offset..offset + len` of `file` as the body a reply already announced
    /// (`{"ok":true,"size":len}` written with [`Context::reply_ok`]). Large bodies go out with
    /// `sendfile(2)` where the platform has it, smaller ones in bounded copies behind the reply
    /// line; every wait keeps the server's stall timeout and minimum rate, so a client that
    /// stops reading is cut off. Counts the bytes in [`Stats::bytes_out`](crate::Stats) and
    /// returns how many were sent (always `len`).
    ///
    /// Every failure is an [`CommandError::Abort`]: once a body is announced, a file that
    /// shrinks or fails to read, or a connection that fails or stalls, leaves the connection
    /// out of step, and the session closes it. Return the error with `?`.
    pub async fn send_file(
        &mut self,
        file: File,
        offset: u64,
        len: u64,
    ) -> Result<u64, CommandError> {
        match send_range(self, file, offset, len, None).await {
            Ok((file, _)) => {
                self.root.release(file);
                Ok(len)
            }
            Err(e) => Err(self.sending_failed(e)),
        }
    }

    /// The abort for a body that could not be sent whole.
    pub(crate) fn sending_failed(&self, e: CopyError) -> CommandError {
        CommandError::Abort(match e {
            CopyError::Read(e) => io::Error::new(
                e.kind(),
                format!("reading {} failed mid-transfer: {e}", self.shown()),
            ),
            CopyError::Write(e) => e,
        })
    }
}

/// The body of a request, once its go-ahead was given ([`Context::go_ahead`]): the only way a
/// verb reads what follows a header. Every read keeps the server's stall timeout and minimum
/// rate, one [`Pace`] for the whole body from the go-ahead on, and counts what arrived in
/// [`Stats::bytes_in`](crate::Stats). It is also the request's [`Context`] (it dereferences to
/// it), for the replies that go with a body: the final one, or a refusal once the body is read.
///
/// Read exactly what the request declared, never past it: the next request follows.
#[derive(Debug)]
pub struct Body<'a, 'c> {
    pub(crate) ctx: &'a mut Context<'c>,
    pace: Pace,
}

impl<'a, 'c> Body<'a, 'c> {
    pub(crate) fn new(ctx: &'a mut Context<'c>, pace: Pace) -> Self {
        Body { ctx, pace }
    }

    /// Receives exactly `len` body bytes into a new staging file
    /// of the root ([`Root::stage`](crate::Root::stage)), hashing them if `hash`. Each block is
    /// written by a short task on the blocking pool while the next one arrives, and every read
    /// keeps the server's stall timeout and minimum rate. Counts the bytes in
    /// [`Stats::bytes_in`](crate::Stats).
    ///
    /// - A client that stops sending, or stalls, is an [`CommandError::Abort`]: the session
    ///   closes the connection; the staging file is removed.
    /// - Storing that fails (disk full, quota…) removes the staging file, reads and drops the
    ///   rest of the body so the connection stays in step, and is a [`CommandError::Reply`]
    ///   with an error the client can act on: the verb's final reply.
    pub async fn receive_file(
        &mut self,
        len: u64,
        hash: bool,
    ) -> Result<ReceivedFile, CommandError> {
        let stage = self.root.blocking(Work::Store, |root| root.stage());
        let (staged, file) = match stage.await.unwrap_or_else(|h| Err(h.into())) {
            Ok(staged) => staged,
            Err(e) => {
                self.discard(len).await?;
                return Err(io_error(&self.shown(), &e).into());
            }
        };
        let sink = Sink {
            dest: Dest::Open(file),
            hasher: hash.then(blake3::Hasher::new),
            pool: self.root.pool().clone(),
        };
        let mut got = 0;
        // `keep_from` past any length: a body cut off is never kept, so its last block is
        // never written only to be removed.
        let received = stream_to_file(
            &mut *self.ctx.reader,
            sink,
            0,
            len,
            u64::MAX,
            &mut self.pace,
            |n| got += n,
        )
        .await;
        self.stats.bytes_in += got;
        match received {
            Ok(sink) => Ok(ReceivedFile {
                staged,
                hash: sink.hasher.map(|h| h.finalize()),
            }),
            Err(Stopped { error, .. }) => {
                // Removing the staging file touches the file system: on the blocking pool.
                self.root
                    .clean_up("removing a staging file", move || drop(staged))
                    .await;
                match error {
                    CopyError::Read(e) => Err(CommandError::Abort(e)),
                    CopyError::Write(e) => {
                        self.discard(len - got).await?;
                        Err(io_error(&self.shown(), &e).into())
                    }
                }
            }
        }
    }

    /// Reads and drops exactly `len` body bytes, within the server's stall timeout and minimum
    /// rate: how a verb that refuses a body it was sent keeps the connection in step before its
    /// error reply. Counts them in [`Stats::bytes_in`](crate::Stats). A client that
    /// stops sending is an [`CommandError::Abort`].
    pub async fn discard(&mut self, len: u64) -> Result<(), CommandError> {
        discard(&mut *self.ctx.reader, len, &mut self.pace)
            .await
            .map_err(CommandError::Abort)?;
        self.stats.bytes_in += len;
        Ok(())
    }

    /// Fills `buf` with the next body bytes: first from what is already buffered (no wait, so
    /// no timer), then within the pace. On failure, says how many bytes did arrive.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), (u64, io::Error)> {
        let reader = &mut *self.ctx.reader;
        let buffered = reader.buffer();
        let mut filled = buffered.len().min(buf.len());
        buf[..filled].copy_from_slice(&buffered[..filled]);
        futures::AsyncBufReadExt::consume_unpin(reader, filled);
        let mut failed = None;
        while filled < buf.len() {
            match self.pace.read(reader, &mut buf[filled..]).await {
                Ok(0) => {
                    let left = buf.len() - filled;
                    failed = Some(ended_early(left as u64, buf.len() as u64));
                    break;
                }
                Ok(n) => filled += n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.ctx.stats.bytes_in += filled as u64;
        match failed {
            None => Ok(()),
            Some(e) => Err((filled as u64, e)),
        }
    }

    /// Reads one line of the body (a chunk header, a trailer) into `line`, at most
    /// [`MAX_HEADER_LEN`](sft_protocol::limits::MAX_HEADER_LEN) bytes, within the pace. `false`:
    /// the client closed before a line began; an over-long line is `InvalidData` (its end was
    /// not read: the connection is out of step).
    pub async fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<bool> {
        let reader = &mut *self.ctx.reader;
        self.pace.limit(sft_protocol::read_line(reader, line)).await
    }

    /// Waits, within the pace, until the body's first bytes are here; `false` if the client
    /// closed instead. A client that leaves before its first byte costs no more than this wait.
    pub(crate) async fn ready(&mut self) -> io::Result<bool> {
        let reader = &mut *self.ctx.reader;
        self.pace
            .limit(async {
                futures::AsyncBufReadExt::fill_buf(reader)
                    .await
                    .map(|b| !b.is_empty())
            })
            .await
    }

    /// Stores `bytes` the body stood for but did not carry as such (decompressed, or copied from
    /// the server's own file) into `upload`, as [`Body::receive_upload`] stores body bytes; not
    /// counted as received.
    pub(crate) async fn store(
        &mut self,
        upload: &mut Upload,
        bytes: &[u8],
    ) -> Result<(), Interrupted> {
        let mut src = bytes;
        let pool = self.ctx.root.pool().clone();
        upload
            .receive(&mut src, bytes.len() as u64, &mut self.pace, pool, |_| {})
            .await
    }

    /// Receives the next `len` body bytes into `upload` (see [`Upload::receive`]), counting
    /// them; `progress` hears of each block as it arrives.
    pub(crate) async fn receive_upload(
        &mut self,
        upload: &mut Upload,
        len: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<(), Interrupted> {
        let stats = &mut self.ctx.stats;
        let pool = self.ctx.root.pool().clone();
        upload
            .receive(&mut *self.ctx.reader, len, &mut self.pace, pool, |n| {
                stats.bytes_in += n;
                progress(n)
            })
            .await
    }
}

impl<'c> std::ops::Deref for Body<'_, 'c> {
    type Target = Context<'c>;

    fn deref(&self) -> &Context<'c> {
        self.ctx
    }
}

impl std::ops::DerefMut for Body<'_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.ctx
    }
}
