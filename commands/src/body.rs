//! Moving exactly a declared number of body bytes, in bounded chunks, within the pace rules.
//!
//! The mechanisms themselves (block pipelines, sendfile, deadlines) live in `sft-io`, shared
//! with the client; this file adapts them to a request's reader and writer.

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

/// A file being received into.
#[derive(Debug)]
pub(crate) struct Sink {
    /// The file, positioned where the next byte goes.
    pub(crate) file: File,
    /// The hash of everything in the file so far, if hashing.
    pub(crate) hasher: Option<blake3::Hasher>,
}

/// Receives exactly `len` bytes from `src` into `sink`, hashing them if it hashes. Each block
/// is hashed and written by short tasks on the blocking pool while the next one arrives (see
/// [`BlockSink`]): no pool thread waits on the client, however slowly it sends.
///
/// On failure the sink comes back with the error once every byte that was read is written
/// and hashed, so an interrupted upload can be kept and resumed.
pub(crate) async fn stream_to_file<R>(
    src: &mut R,
    sink: Sink,
    len: u64,
    pace: &mut Pace,
    mut progress: impl FnMut(u64),
) -> Result<Sink, (CopyError, Option<Sink>)>
where
    R: AsyncRead + Unpin + ?Sized,
{
    use std::io::Seek;
    let Sink { mut file, hasher } = sink;
    let start = match file.stream_position() {
        Ok(pos) => pos,
        Err(e) => return Err((CopyError::Write(e), None)),
    };
    let cap = len.min(CHUNK as u64) as usize;
    let mut left = len;
    let mut blocks = BlockSink::new(Some(file), start, hasher);
    let mut failed = None;
    while left > 0 && failed.is_none() {
        let mut buf = blocks.buffer(left.min(cap as u64) as usize);
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
                    // Keep what did arrive: it is written below with the rest.
                    failed = Some(e);
                    buf.truncate(filled);
                    break;
                }
            }
        }
        progress(filled as u64);
        left -= filled as u64;
        if blocks.write(buf).await.is_err() {
            break;
        }
    }
    let done = blocks.finish().await;
    let mut file = done.file.expect("the sink writes to a file");
    let (written, hasher) = (done.written, done.hasher);
    // Later writes (a resumed upload) continue where this one ended.
    if let Err(e) = file.seek(io::SeekFrom::Start(start + len - left)) {
        return Err((CopyError::Write(e), None));
    }
    match (written, failed) {
        (Err(e), _) => Err((CopyError::Write(e), None)),
        (Ok(()), Some(e)) => Err((CopyError::Read(e), Some(Sink { file, hasher }))),
        (Ok(()), None) => Ok(Sink { file, hasher }),
    }
}
