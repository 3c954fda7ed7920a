//! Moving exactly a declared number of body bytes, in bounded chunks, within the pace rules.
//!
//! The mechanisms themselves (block pipelines, sendfile, deadlines) live in `sft-io`, shared
//! with the client; this file adapts them to a request's reader and writer.

use async_std::task::spawn_blocking;
use futures::{AsyncRead, AsyncWrite};
use sft_io::{BlockSink, Pace, CHUNK, RECV};
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
    let Sink { dest, mut hasher } = sink;
    let (mut blocks, mut create) = match dest {
        Dest::Open(file) => (Some(BlockSink::new(Some(file), start, hasher.take())), None),
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
            (None, Some(create)) => match spawn_blocking(create).await {
                Ok(file) => blocks.insert(BlockSink::new(Some(file), start, hasher.take())),
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
        let sink = Sink { dest, hasher };
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
    let file = done.file.expect("the sink writes to a file");
    let sink = Sink {
        dest: Dest::Open(file),
        hasher: done.hasher,
    };
    match (done.written, failed) {
        (Err(e), _) => Err(Stopped {
            error: CopyError::Write(e),
            sink: None,
            stored,
        }),
        (Ok(()), Some(e)) => Err(Stopped {
            error: CopyError::Read(e),
            sink: Some(sink),
            stored,
        }),
        (Ok(()), None) => Ok(sink),
    }
}
