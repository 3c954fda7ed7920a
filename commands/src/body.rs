//! Moving exactly a declared number of body bytes, in bounded chunks.

use async_std::io::timeout;
use async_std::task::spawn_blocking;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::fs::File;
use std::io::{self, Read, Write};
use std::time::Duration;

/// Largest chunk moved at once: memory per transfer is bounded by this, whatever the file size.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Which side of a copy failed.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading failed, or the source ended before the declared length.
    Read(io::Error),
    /// Writing failed.
    Write(io::Error),
}

/// Copies exactly `len` bytes from `src` to `dst`, calling `progress` with each chunk read.
/// A read or a write that makes no progress for `stall` fails with `TimedOut`.
pub(crate) async fn copy_exact<R, W>(
    src: &mut R,
    dst: &mut W,
    len: u64,
    stall: Duration,
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
        let n = timeout(stall, src.read(&mut buf[..want]))
            .await
            .map_err(CopyError::Read)?;
        if n == 0 {
            return Err(CopyError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("ended {left} bytes before the declared {len}"),
            )));
        }
        // Counted once read: after a failed write the caller knows how much is left to drain.
        left -= n as u64;
        progress(n as u64);
        timeout(stall, dst.write_all(&buf[..n]))
            .await
            .map_err(CopyError::Write)?;
    }
    Ok(())
}

/// Reads and discards exactly `len` bytes (keeps a connection in step after a refused body).
pub(crate) async fn discard<R: AsyncRead + Unpin + ?Sized>(
    src: &mut R,
    len: u64,
    stall: Duration,
) -> io::Result<()> {
    let mut sink = futures::io::sink();
    match copy_exact(src, &mut sink, len, stall, |_| {}).await {
        Ok(()) => Ok(()),
        Err(CopyError::Read(e)) | Err(CopyError::Write(e)) => Err(e),
    }
}

/// Fills `buf` from `file` (blocking), stopping early only at end of file.
fn read_full(mut file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Sends exactly `len` bytes of `file` to `dst`. Disk reads run on the blocking pool, one chunk
/// ahead of the socket writes, so the disk and the network work at the same time.
pub(crate) async fn file_to_stream<W>(
    file: File,
    dst: &mut W,
    len: u64,
    stall: Duration,
    mut progress: impl FnMut(u64),
) -> Result<(), CopyError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let cap = len.min(CHUNK as u64) as usize;
    let mut left = len;
    let mut spare = Vec::new();
    let first = left.min(cap as u64) as usize;
    let mut reading = Some(spawn_blocking(move || {
        let mut buf = vec![0u8; first];
        let r = read_full(&file, &mut buf);
        (file, buf, r)
    }));
    while let Some(pending) = reading.take() {
        let (file, buf, read) = pending.await;
        let n = read.map_err(CopyError::Read)?;
        if n < buf.len() {
            return Err(CopyError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended {left} bytes before its declared {len} (it shrank)"),
            )));
        }
        left -= n as u64;
        if left > 0 {
            let mut next = std::mem::take(&mut spare);
            next.resize(left.min(cap as u64) as usize, 0);
            reading = Some(spawn_blocking(move || {
                let r = read_full(&file, &mut next);
                (file, next, r)
            }));
        }
        timeout(stall, dst.write_all(&buf))
            .await
            .map_err(CopyError::Write)?;
        progress(n as u64);
        spare = buf;
    }
    Ok(())
}

/// Receives exactly `len` bytes from `src` into `file`. Disk writes run on the blocking pool
/// while the next chunk arrives from the network. Returns the file once every byte is written.
pub(crate) async fn stream_to_file<R>(
    src: &mut R,
    file: File,
    len: u64,
    stall: Duration,
    mut progress: impl FnMut(u64),
) -> Result<File, CopyError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let cap = len.min(CHUNK as u64) as usize;
    let mut left = len;
    let mut idle = Some(file);
    let mut writing = None;
    let mut spare = Vec::new();
    while left > 0 {
        let mut buf = std::mem::take(&mut spare);
        buf.resize(left.min(cap as u64) as usize, 0);
        let mut filled = 0;
        while filled < buf.len() {
            let n = timeout(stall, src.read(&mut buf[filled..]))
                .await
                .map_err(CopyError::Read)?;
            if n == 0 {
                return Err(CopyError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "ended {} bytes before the declared {len}",
                        left - filled as u64
                    ),
                )));
            }
            filled += n;
        }
        left -= filled as u64;
        progress(filled as u64);
        let file = match writing.take() {
            Some(pending) => {
                let (file, done, written): (File, Vec<u8>, io::Result<()>) = pending.await;
                written.map_err(CopyError::Write)?;
                spare = done;
                file
            }
            None => idle
                .take()
                .expect("the file is idle when no write is pending"),
        };
        writing = Some(spawn_blocking(move || {
            let r = (&file).write_all(&buf);
            (file, buf, r)
        }));
    }
    match writing {
        Some(pending) => {
            let (file, _, written) = pending.await;
            written.map_err(CopyError::Write)?;
            Ok(file)
        }
        None => Ok(idle.expect("nothing was written")),
    }
}
