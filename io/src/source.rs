//! A file read one block ahead of the socket.

use crate::blocks::{read_full_at, shrank, CHUNK};
use crate::pool::{Job, Pool};
use crate::version::{confirm, Version};
use std::fs::File;
use std::io;

/// A read in flight: the file and hasher come back with the filled block.
struct Step {
    file: File,
    hasher: Option<blake3::Hasher>,
    buf: Vec<u8>,
    read: io::Result<usize>,
}

/// Reads `len` bytes of a file from `start`, one block ahead of the consumer, each block read
/// (and hashed, while it is hot in cache) by a short task on the blocking pool. The hash covers
/// exactly the bytes handed out. With a [`Version`], the file is [`confirm`]ed after the last
/// block is read, so a file rewritten meanwhile ends in an error, never in a last block.
#[derive(Debug)]
pub struct FileSource {
    next: Option<Job<Step>>,
    /// The file, once every block is read.
    done: Option<File>,
    pool: Pool,
    pos: u64,
    end: u64,
    version: Option<Version>,
    hash: Option<blake3::Hash>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("len", &self.buf.len())
            .finish()
    }
}

impl FileSource {
    /// Reads bytes `start..start + len` of `file` on `pool`, feeding them to `hasher` (if any,
    /// holding the hash of whatever comes before `start`).
    pub fn new(
        file: File,
        start: u64,
        len: u64,
        hasher: Option<blake3::Hasher>,
        version: Option<Version>,
        pool: &Pool,
    ) -> FileSource {
        let mut source = FileSource {
            next: None,
            done: None,
            pool: pool.clone(),
            pos: start,
            end: start + len,
            version,
            hash: None,
        };
        source.schedule(file, hasher, Vec::new());
        source
    }

    fn schedule(&mut self, file: File, hasher: Option<blake3::Hasher>, mut buf: Vec<u8>) {
        let want = (self.end - self.pos).min(CHUNK as u64) as usize;
        if want == 0 {
            self.hash = hasher.map(|h| h.finalize());
            self.done = Some(file);
            return;
        }
        buf.resize(want, 0);
        let (pos, last, version) = (self.pos, self.pos + want as u64 == self.end, self.version);
        self.next = Some(self.pool.spawn(move || {
            let mut step = Step {
                read: read_full_at(&file, &mut buf, pos),
                file,
                hasher,
                buf,
            };
            if let Ok(n) = step.read {
                if let Some(h) = step.hasher.as_mut() {
                    h.update(&step.buf[..n]);
                }
                if let (true, Some(v)) = (last && n == want, version) {
                    let whole = step.hasher.as_ref().map(|h| h.finalize());
                    if let Err(e) = confirm(&step.file, &v, whole.as_ref()) {
                        step.read = Err(e);
                    }
                }
            }
            step
        }));
    }

    /// The file, once [`FileSource::next`] has returned `None` (so that the caller decides
    /// where it is closed: closing a file may wait on a network file system).
    pub fn into_file(self) -> Option<File> {
        self.done
    }

    /// The hash of everything read, once [`FileSource::next`] has returned `None`.
    pub fn hash(&self) -> Option<blake3::Hash> {
        self.hash
    }

    /// The next block, or `None` at the end. A file that ends early is an `UnexpectedEof`; a
    /// file that changed, an error saying so.
    pub async fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        let step = match self.next.take()?.await {
            Ok(step) => step,
            Err(hung) => return Some(Err(hung.into())),
        };
        match step.read {
            Ok(n) if n < step.buf.len() => Some(Err(shrank(self.end - self.pos - n as u64))),
            Ok(n) => {
                self.pos += n as u64;
                self.schedule(step.file, step.hasher, Vec::with_capacity(CHUNK));
                Some(Ok(step.buf))
            }
            Err(e) => Some(Err(e)),
        }
    }
}
