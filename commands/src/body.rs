//! Moving exactly a declared number of body bytes, in bounded chunks.

use async_std::io::timeout;
use async_std::task::spawn_blocking;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
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

/// Fills `buf` from `file` at `pos` (blocking), stopping early only at end of file.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Feeds the first `len` bytes of `file` to `hasher` (blocking; resuming needs the prefix).
pub(crate) fn hash_prefix(file: &File, hasher: &mut blake3::Hasher, len: u64) -> io::Result<()> {
    hash_range(file, hasher, 0, len)
}

/// A file being sent, and the hash of what was read from it so far.
struct Source {
    file: File,
    hasher: Option<blake3::Hasher>,
}

/// Sends `len` bytes of `file` from position `start` to `dst`, feeding them to `hasher` if
/// given. Disk reads (and hashing) run on the blocking pool, one chunk ahead of the socket
/// writes, so disk, CPU and network work at the same time. Returns the file and the hasher.
pub(crate) async fn file_to_stream<W>(
    file: File,
    start: u64,
    hasher: Option<blake3::Hasher>,
    dst: &mut W,
    len: u64,
    stall: Duration,
    mut progress: impl FnMut(u64),
) -> Result<(File, Option<blake3::Hasher>), CopyError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let cap = len.min(CHUNK as u64) as usize;
    let mut pos = start;
    let end = start + len;
    let read_chunk = move |mut src: Source, mut buf: Vec<u8>, at: u64| {
        let r = read_full_at(&src.file, &mut buf, at);
        if let (Ok(n), Some(h)) = (&r, src.hasher.as_mut()) {
            h.update(&buf[..*n]);
        }
        (src, buf, r)
    };
    let first = vec![0u8; cap];
    let mut reading = Some(spawn_blocking(move || {
        read_chunk(Source { file, hasher }, first, start)
    }));
    let mut spare = Vec::new();
    loop {
        let (src, buf, read) = reading.take().expect("a read is pending").await;
        let n = read.map_err(CopyError::Read)?;
        let want = buf.len().min((end - pos) as usize);
        if n < want {
            return Err(CopyError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended {} bytes before its declared end (it shrank)",
                    end - pos
                ),
            )));
        }
        pos += n as u64;
        let done = pos >= end;
        let src = if done {
            Some(src)
        } else {
            let mut next = std::mem::take(&mut spare);
            next.resize(((end - pos) as usize).min(cap), 0);
            reading = Some(spawn_blocking(move || read_chunk(src, next, pos)));
            None
        };
        timeout(stall, dst.write_all(&buf[..n]))
            .await
            .map_err(CopyError::Write)?;
        progress(n as u64);
        spare = buf;
        if let Some(src) = src {
            return Ok((src.file, src.hasher));
        }
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

/// Most bytes taken from the socket per read: a small, cache-resident window that is hashed
/// while it is hot (large reads cost about twice the kernel time per byte here).
const RECV: usize = 64 * 1024;

type PendingWrite = async_std::task::JoinHandle<(File, Vec<u8>, io::Result<()>)>;

/// Receives exactly `len` bytes from `src` into `sink`, hashing them if it hashes. Bytes are
/// hashed as they arrive; disk writes run on the blocking pool, one block behind the network.
///
/// On failure the sink comes back with the error once every byte that was read is written
/// and hashed, so an interrupted upload can be kept and resumed.
pub(crate) async fn stream_to_file<R>(
    src: &mut R,
    sink: Sink,
    len: u64,
    stall: Duration,
    mut progress: impl FnMut(u64),
) -> Result<Sink, (CopyError, Option<Sink>)>
where
    R: AsyncRead + Unpin + ?Sized,
{
    /// Waits for the write in flight; gives back the file and the buffer.
    async fn settle(
        pending: &mut Option<PendingWrite>,
        idle: &mut Option<File>,
    ) -> io::Result<Vec<u8>> {
        match pending.take() {
            Some(p) => {
                let (file, buf, r) = p.await;
                *idle = Some(file);
                r.map(|()| buf)
            }
            None => Ok(Vec::new()),
        }
    }
    let Sink { file, mut hasher } = sink;
    let cap = len.min(CHUNK as u64) as usize;
    let mut left = len;
    let mut idle = Some(file);
    let mut writing: Option<PendingWrite> = None;
    let mut spare = Vec::new();
    while left > 0 {
        let mut buf = std::mem::take(&mut spare);
        buf.resize(left.min(cap as u64) as usize, 0);
        let mut filled = 0;
        let mut failed = None;
        while filled < buf.len() {
            let end = buf.len().min(filled + RECV);
            let read = match timeout(stall, src.read(&mut buf[filled..end])).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "ended {} bytes before the declared {len}",
                        left - filled as u64
                    ),
                )),
                other => other,
            };
            match read {
                Ok(n) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&buf[filled..filled + n]);
                    }
                    filled += n;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        progress(filled as u64);
        let done = settle(&mut writing, &mut idle).await;
        let Ok(done) = done else {
            let e = done.unwrap_err();
            return Err((CopyError::Write(e), None));
        };
        spare = done;
        let file = idle
            .take()
            .expect("the file is idle once the write settled");
        if let Some(e) = failed {
            // Keep what did arrive: write this part too, then hand everything back.
            buf.truncate(filled);
            let (file, written) = spawn_blocking(move || {
                let r = (&file).write_all(&buf);
                (file, r)
            })
            .await;
            let sink = written.is_ok().then_some(Sink { file, hasher });
            return Err((CopyError::Read(e), sink));
        }
        left -= filled as u64;
        writing = Some(spawn_blocking(move || {
            let r = (&file).write_all(&buf);
            (file, buf, r)
        }));
    }
    settle(&mut writing, &mut idle)
        .await
        .map_err(|e| (CopyError::Write(e), None))?;
    Ok(Sink {
        file: idle.expect("the file comes back"),
        hasher,
    })
}

/// Sends `len` bytes of `file` from `start` straight from the page cache to `socket` with
/// `sendfile(2)`: no copy through user space. The socket's readiness comes from the runtime's
/// reactor, so no thread blocks; a send that makes no progress for `stall` fails.
#[cfg(target_os = "linux")]
pub(crate) async fn sendfile_to_socket(
    file: &File,
    start: u64,
    len: u64,
    socket: &async_std::net::TcpStream,
    stall: Duration,
) -> Result<(), CopyError> {
    use std::os::fd::AsFd;
    // A second handle on the same socket, registered with the reactor for writability.
    let dup = socket
        .as_fd()
        .try_clone_to_owned()
        .map_err(CopyError::Write)?;
    let sock = async_io::Async::new(std::net::TcpStream::from(dup)).map_err(CopyError::Write)?;
    let end = start + len;
    let mut pos = start;
    while pos < end {
        let want = (end - pos).min(1 << 30) as usize;
        let sent = sock.write_with(|s| {
            rustix::fs::sendfile(s, file, Some(&mut pos), want).map_err(io::Error::from)
        });
        let n = timeout(stall, sent).await.map_err(CopyError::Write)?;
        if n == 0 {
            return Err(CopyError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended {} bytes before its declared end (it shrank)",
                    end - pos
                ),
            )));
        }
    }
    Ok(())
}

/// Feeds bytes `start..start + len` of `file` to `hasher` (blocking), for hashing beside a
/// `sendfile` that does not pass the bytes through user space.
pub(crate) fn hash_range(
    file: &File,
    hasher: &mut blake3::Hasher,
    start: u64,
    len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; len.min(CHUNK as u64 * 4) as usize];
    let mut pos = start;
    let end = start + len;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let n = read_full_at(file, &mut buf[..want], pos)?;
        if n < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was hashed",
            ));
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}
