//! Local file I/O for transfers: large blocks on the blocking pool, overlapped with the network,
//! hashed on the way.

use async_std::task::{spawn_blocking, JoinHandle};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// Block size for local reads and writes.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Most bytes taken from the socket per read. Receiving into a small, cache-resident window
/// (and hashing it while it is hot) costs about half the CPU of one large read (measured: kernel
/// time of a 1 GiB download 0.55 s with 256 KiB reads, 0.3 s with 64 KiB).
pub(crate) const RECV: usize = 64 * 1024;

/// A read in flight: gives back the file, the hasher and the filled buffer.
type PendingRead = JoinHandle<(File, Option<blake3::Hasher>, Vec<u8>, io::Result<usize>)>;

/// Blocks that may wait for the disk before the network side has to wait: enough slack to ride
/// out a slow write without stalling the socket, bounded so memory stays at a few MiB.
const WRITE_QUEUE: usize = 8;

/// A local file being written in large blocks by a task on the blocking pool, which takes them
/// from a bounded queue: the caller goes on receiving while up to [`WRITE_QUEUE`] blocks wait.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: async_std::channel::Sender<Vec<u8>>,
    recycled: async_std::channel::Receiver<Vec<u8>>,
    task: JoinHandle<(File, io::Result<()>)>,
    hashing: Option<JoinHandle<blake3::Hasher>>,
}

impl Writer {
    /// Writes go to `file` at its current position. With a `hasher` (covering what the file
    /// already holds), a second task hashes each block before passing it on to the writer, so
    /// receiving, hashing and writing proceed side by side.
    pub(crate) fn new(file: File, hasher: Option<blake3::Hasher>) -> Writer {
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
            Some(hasher) => {
                let (queue, incoming) = async_std::channel::bounded::<Vec<u8>>(WRITE_QUEUE);
                let hashing = spawn_hasher(hasher, incoming, Then::Forward(to_writer));
                (queue, Some(hashing))
            }
        };
        Writer {
            queue,
            recycled,
            task,
            hashing,
        }
    }

    /// A buffer to fill with the next block (recycled from earlier writes).
    pub(crate) fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Queues `buf` to be written; waits only while the queue is full.
    pub(crate) async fn write(&mut self, buf: Vec<u8>) -> io::Result<()> {
        self.queue
            .send(buf)
            .await
            .map_err(|_| io::Error::other("the file writer stopped after an error"))
    }

    /// Waits for every queued block to be written; returns the file (or the first error) and
    /// the hash of everything the file holds.
    pub(crate) async fn finish(self) -> (io::Result<File>, Option<blake3::Hash>) {
        drop(self.queue);
        let hash = match self.hashing {
            Some(task) => Some(task.await.finalize()),
            None => None,
        };
        let (file, written) = self.task.await;
        (written.map(|()| file), hash)
    }
}

/// Reads `len` bytes of `file` from `start`, one chunk ahead of the consumer.
#[derive(Debug)]
pub(crate) struct Reader {
    next: Option<PendingRead>,
    pos: u64,
    end: u64,
    hash: Option<blake3::Hash>,
}

fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
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

impl Reader {
    /// Reads `len` bytes from `start`, feeding them to `hasher` (if any) as they are read, while
    /// they are hot in the cache of the thread that read them.
    pub(crate) fn new(file: File, start: u64, len: u64, hasher: Option<blake3::Hasher>) -> Reader {
        let mut reader = Reader {
            next: None,
            pos: start,
            end: start + len,
            hash: None,
        };
        reader.schedule(file, hasher, Vec::new());
        reader
    }

    fn schedule(&mut self, file: File, mut hasher: Option<blake3::Hasher>, mut buf: Vec<u8>) {
        let want = (self.end - self.pos).min(CHUNK as u64) as usize;
        if want == 0 {
            self.hash = hasher.map(|h| h.finalize());
            return;
        }
        buf.resize(want, 0);
        let pos = self.pos;
        self.next = Some(spawn_blocking(move || {
            let r = read_full_at(&file, &mut buf, pos);
            if let (Ok(n), Some(h)) = (&r, hasher.as_mut()) {
                h.update(&buf[..*n]);
            }
            (file, hasher, buf, r)
        }));
    }

    /// The hash of everything read, once [`Reader::next`] has returned `None`.
    pub(crate) fn hash(&self) -> Option<blake3::Hash> {
        self.hash
    }

    /// The next chunk, or `None` at the end. A file that ends early is an `UnexpectedEof`.
    pub(crate) async fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        let (file, hasher, buf, read) = self.next.take()?.await;
        match read {
            Ok(n) if n < buf.len() => Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "it ended {} bytes early (did it shrink?)",
                    self.end - self.pos - n as u64
                ),
            ))),
            Ok(n) => {
                self.pos += n as u64;
                self.schedule(file, hasher, Vec::with_capacity(CHUNK));
                Some(Ok(buf))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// Hashes the first `len` bytes of `file` into a fresh hasher, blocks split across every core
/// (blocking).
pub(crate) fn hash_prefix(file: &File, len: u64) -> io::Result<blake3::Hasher> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; (len.min(8 << 20)) as usize];
    let mut pos = 0;
    while pos < len {
        let want = (len - pos).min(buf.len() as u64) as usize;
        let n = read_full_at(file, &mut buf[..want], pos)?;
        if n < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was hashed",
            ));
        }
        hasher.update_rayon(&buf[..n]);
        pos += n as u64;
    }
    Ok(hasher)
}

/// Adapts a blocking writer — standard output of a command-line tool — to `AsyncWrite`: each
/// write happens in place, in the large blocks the download path hands over, without a round
/// trip through the blocking pool. Meant for a task that owns its thread, like a CLI's
/// `block_on`; a server's tasks should not block like this.
#[derive(Debug)]
pub struct BlockingWriter<W>(pub W);

impl<W: Write + Unpin> futures::AsyncWrite for BlockingWriter<W> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Whether uploads can go out with `sendfile(2)`.
pub(crate) const ZERO_COPY: bool = cfg!(target_os = "linux");

/// Bodies at least this large are sent with `sendfile(2)`.
pub(crate) const SENDFILE_MIN: u64 = 128 * 1024;

/// Sends `file` from `*pos` to `end` with `sendfile(2)`, advancing `*pos`; the socket's
/// readiness comes from the runtime's reactor. `sent` hears of every step.
#[cfg(target_os = "linux")]
pub(crate) async fn sendfile(
    file: &File,
    pos: &mut u64,
    end: u64,
    socket: &async_std::net::TcpStream,
    stall: Option<std::time::Duration>,
    mut sent: impl FnMut(u64),
) -> io::Result<()> {
    use std::os::fd::AsFd;
    // A second handle on the same socket, registered with the reactor for writability.
    let dup = socket.as_fd().try_clone_to_owned()?;
    let sock = async_io::Async::new(std::net::TcpStream::from(dup))?;
    while *pos < end {
        let want = (end - *pos).min(1 << 30) as usize;
        let before = *pos;
        let step = sock.write_with(|s| {
            rustix::fs::sendfile(s, file, Some(&mut *pos), want).map_err(io::Error::from)
        });
        let n = crate::client::with_stall(stall, step).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("it ended {} bytes early (did it shrink?)", end - before),
            ));
        }
        sent(n as u64);
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) async fn sendfile(
    _: &File,
    _: &mut u64,
    _: u64,
    _: &async_std::net::TcpStream,
    _: Option<std::time::Duration>,
    _: impl FnMut(u64),
) -> io::Result<()> {
    unreachable!("ZERO_COPY is false off Linux")
}

/// BLAKE3 on its own task: blocks are fed through a bounded queue and hashed in order, beside
/// whatever the caller does with them meanwhile.
#[derive(Debug)]
pub(crate) struct Hashing {
    queue: async_std::channel::Sender<Vec<u8>>,
    recycled: async_std::channel::Receiver<Vec<u8>>,
    task: JoinHandle<blake3::Hasher>,
}

/// Where a hashing task sends each block once hashed.
enum Then {
    /// On to the next stage (a writer); waits while its queue is full.
    Forward(async_std::channel::Sender<Vec<u8>>),
    /// Back to the producer's pool of buffers, if there is room.
    GiveBack(async_std::channel::Sender<Vec<u8>>),
}

/// A task on the blocking pool that feeds every block from `blocks` to `hasher`, in order, until
/// the queue closes; it returns the hasher.
fn spawn_hasher(
    mut hasher: blake3::Hasher,
    blocks: async_std::channel::Receiver<Vec<u8>>,
    then: Then,
) -> JoinHandle<blake3::Hasher> {
    spawn_blocking(move || {
        while let Ok(block) = futures::executor::block_on(blocks.recv()) {
            hasher.update(&block);
            match &then {
                // A writer that stopped on an error is reported by its own `finish`.
                Then::Forward(next) => drop(futures::executor::block_on(next.send(block))),
                Then::GiveBack(pool) => drop(pool.try_send(block)),
            }
        }
        hasher
    })
}

impl Hashing {
    pub(crate) fn new() -> Hashing {
        let (queue, blocks) = async_std::channel::bounded::<Vec<u8>>(WRITE_QUEUE);
        let (give_back, recycled) = async_std::channel::bounded(WRITE_QUEUE + 1);
        let task = spawn_hasher(blake3::Hasher::new(), blocks, Then::GiveBack(give_back));
        Hashing {
            queue,
            recycled,
            task,
        }
    }

    /// A buffer for the next block (recycled from hashed ones).
    pub(crate) fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Queues a block; waits only while the queue is full.
    pub(crate) async fn feed(&mut self, block: Vec<u8>) {
        // The task ends only when the queue closes, in `finish`.
        let _ = self.queue.send(block).await;
    }

    /// The hash of everything fed.
    pub(crate) async fn finish(self) -> blake3::Hash {
        drop(self.queue);
        self.task.await.finalize()
    }
}
