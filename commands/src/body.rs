//! Moving exactly a declared number of body bytes, in bounded chunks.

use async_std::io::timeout;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;
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

/// Copies exactly `len` bytes from `src` to `dst`, calling `progress` after each chunk.
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
        timeout(stall, dst.write_all(&buf[..n]))
            .await
            .map_err(CopyError::Write)?;
        left -= n as u64;
        progress(n as u64);
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
