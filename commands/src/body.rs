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

/// Most bytes taken from the socket per read: a small, cache-resident window (reads of a whole
/// 256 KiB block cost about twice the kernel time per byte here).
const RECV: usize = 64 * 1024;

/// Blocks that may wait for the disk before the network side has to wait.
const WRITE_QUEUE: usize = 8;

/// A file written in blocks by a task on the blocking pool, fed through a bounded queue, so
/// that receiving goes on while a write is slow. Memory: at most `WRITE_QUEUE` + 2 blocks.
struct BlockWriter {
    queue: async_std::channel::Sender<Vec<u8>>,
    recycled: async_std::channel::Receiver<Vec<u8>>,
    task: async_std::task::JoinHandle<(File, io::Result<()>)>,
    hashing: Option<async_std::task::JoinHandle<blake3::Hasher>>,
}

impl BlockWriter {
    /// With a `hasher`, a second task hashes each block before passing it on to the writer:
    /// receiving, hashing and writing then proceed side by side.
    fn new(file: File, hasher: Option<blake3::Hasher>) -> BlockWriter {
        let (to_writer, blocks) = async_std::channel::bounded::<Vec<u8>>(WRITE_QUEUE);
        let (give_back, recycled) = async_std::channel::bounded(2 * WRITE_QUEUE + 1);
        let task = spawn_blocking(move || {
            while let Ok(block) = futures::executor::block_on(blocks.recv()) {
                if let Err(e) = (&file).write_all(&block) {
                    return (file, Err(e));
                }
                let _ = give_back.try_send(block);
            }
            (file, Ok(()))
        });
        let (queue, hashing) = match hasher {
            None => (to_writer, None),
            Some(mut hasher) => {
                let (queue, incoming) = async_std::channel::bounded::<Vec<u8>>(WRITE_QUEUE);
                let hashing = spawn_blocking(move || {
                    while let Ok(block) = futures::executor::block_on(incoming.recv()) {
                        hasher.update(&block);
                        // If the writer stopped on an error, `finish` reports it; the hash is
                        // then of no use, but the queue is still drained to the end.
                        let _ = futures::executor::block_on(to_writer.send(block));
                    }
                    hasher
                });
                (queue, Some(hashing))
            }
        };
        BlockWriter {
            queue,
            recycled,
            task,
            hashing,
        }
    }

    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Queues a block; fails once the writer stopped on an error (see [`BlockWriter::finish`]).
    async fn write(&self, block: Vec<u8>) -> bool {
        self.queue.send(block).await.is_ok()
    }

    /// Waits for every queued block; the file back, or the first write error, and the hasher.
    async fn finish(self) -> (File, io::Result<()>, Option<blake3::Hasher>) {
        drop(self.queue);
        let hasher = match self.hashing {
            Some(task) => Some(task.await),
            None => None,
        };
        let (file, written) = self.task.await;
        (file, written, hasher)
    }
}

/// Receives exactly `len` bytes from `src` into `sink`, hashing them if it hashes. Receiving,
/// hashing and writing run side by side: blocks go through bounded queues to a hashing task and
/// then to a writing task on the blocking pool (measured: about 5% faster for a verified 1 GiB
/// upload than hashing on the receiving side, on two cores).
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
    let Sink { file, hasher } = sink;
    let hashed = hasher.is_some();
    let cap = len.min(CHUNK as u64) as usize;
    let mut left = len;
    let writer = BlockWriter::new(file, hasher);
    let mut failed = None;
    while left > 0 && failed.is_none() {
        let mut buf = writer.buffer(left.min(cap as u64) as usize);
        let mut filled = 0;
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
        if !writer.write(buf).await {
            break;
        }
    }
    let (file, written, hasher) = writer.finish().await;
    debug_assert_eq!(hashed, hasher.is_some());
    match (written, failed) {
        (Err(e), _) => Err((CopyError::Write(e), None)),
        (Ok(()), Some(e)) => Err((CopyError::Read(e), Some(Sink { file, hasher }))),
        (Ok(()), None) => Ok(Sink { file, hasher }),
    }
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
