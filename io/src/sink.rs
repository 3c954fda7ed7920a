//! A file received block by block.

use async_std::task::{spawn_blocking, JoinHandle};
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::task::Poll;

/// Blocks that may wait for the disk or the hash before the network side has to wait: enough
/// to ride out a slow write or a busy core without stalling the socket, few enough that memory
/// stays at about a MiB per transfer.
const DEPTH: usize = 3;

/// A file (and/or a hash) fed with blocks as they arrive from the network.
///
/// Each block is written by a short task on the blocking pool (`pwrite` at its offset, so
/// writes of consecutive blocks may overlap), and the blocks are hashed, in order, by short
/// tasks that each take every block received so far. The caller goes on receiving meanwhile and
/// waits only when more than a few blocks are behind. A task only ever works on blocks that
/// have arrived and returns: no pool thread waits for the network, so any number of slow peers
/// cost threads only while their bytes are actually being written or hashed. Memory: at most
/// `DEPTH + 2` blocks.
#[derive(Debug)]
pub struct BlockSink {
    file: Option<Arc<File>>,
    pos: u64,
    /// The hasher, when no hashing task holds it.
    hasher: Option<blake3::Hasher>,
    /// Whether this sink hashes at all.
    hashes: bool,
    hashing: Option<JoinHandle<blake3::Hasher>>,
    /// Blocks received but not yet given to a hashing task, in order.
    unhashed: Vec<Arc<Vec<u8>>>,
    writes: VecDeque<JoinHandle<io::Result<()>>>,
    /// Every block some task may still hold, oldest first, to be recycled once free.
    held: VecDeque<Arc<Vec<u8>>>,
    spare: Vec<Vec<u8>>,
    /// The first write error, kept to be reported by every later call.
    failed: Option<(io::ErrorKind, String)>,
}

impl BlockSink {
    /// Blocks go to `file` (if any) from position `pos` on, and to `hasher` (if any), which
    /// holds whatever the file already contains.
    pub fn new(file: Option<File>, pos: u64, hasher: Option<blake3::Hasher>) -> BlockSink {
        BlockSink {
            file: file.map(Arc::new),
            pos,
            hashes: hasher.is_some(),
            hasher,
            hashing: None,
            unhashed: Vec::new(),
            writes: VecDeque::new(),
            held: VecDeque::new(),
            spare: Vec::new(),
            failed: None,
        }
    }

    /// A buffer of `len` bytes to fill with the next block (recycled when possible).
    pub fn buffer(&mut self, len: usize) -> Vec<u8> {
        self.recycle();
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Starts writing and hashing `block`; waits only while more than a few blocks are behind.
    /// Fails once a write failed (the same error every time).
    pub async fn write(&mut self, block: Vec<u8>) -> io::Result<()> {
        self.check()?;
        let len = block.len() as u64;
        let block = Arc::new(block);
        if let Some(file) = &self.file {
            let (file, b, pos) = (Arc::clone(file), Arc::clone(&block), self.pos);
            self.writes
                .push_back(spawn_blocking(move || file.write_all_at(&b, pos)));
        }
        self.pos += len;
        if self.hashes {
            self.unhashed.push(Arc::clone(&block));
        }
        self.held.push_back(block);
        self.hash_more().await;
        while self.writes.len() > DEPTH {
            let done = self.writes.pop_front().expect("a write in flight").await;
            self.note(done);
        }
        while self.unhashed.len() > DEPTH {
            // The hashing task is behind: wait for it, then hand it what piled up.
            if let Some(task) = self.hashing.take() {
                self.hasher = Some(task.await);
            }
            self.hash_more().await;
        }
        self.check()
    }

    /// Collects a finished hashing task, if any, and gives every waiting block to a new one.
    async fn hash_more(&mut self) {
        if let Some(task) = self.hashing.as_mut() {
            if let Poll::Ready(hasher) = futures::poll!(task) {
                self.hashing = None;
                self.hasher = Some(hasher);
            }
        }
        if self.hashing.is_some() || self.unhashed.is_empty() {
            return;
        }
        if let Some(mut hasher) = self.hasher.take() {
            let blocks = std::mem::take(&mut self.unhashed);
            self.hashing = Some(spawn_blocking(move || {
                for b in &blocks {
                    hasher.update(b);
                }
                hasher
            }));
        }
    }

    fn note(&mut self, written: io::Result<()>) {
        if let Err(e) = written {
            self.failed.get_or_insert((e.kind(), e.to_string()));
        }
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    /// Moves blocks no task holds any more to the spare buffers (two at most).
    fn recycle(&mut self) {
        while self.held.front().is_some_and(|b| Arc::strong_count(b) == 1) {
            let block = self.held.pop_front().expect("checked");
            if let (Ok(buf), true) = (Arc::try_unwrap(block), self.spare.len() < 2) {
                self.spare.push(buf);
            }
        }
    }

    /// Waits for every block to be written and hashed; gives back the file and the hasher, and
    /// whether every write succeeded.
    pub async fn finish(mut self) -> Finished {
        while let Some(task) = self.writes.pop_front() {
            let done = task.await;
            self.note(done);
        }
        if let Some(task) = self.hashing.take() {
            self.hasher = Some(task.await);
        }
        self.hash_more().await;
        if let Some(task) = self.hashing.take() {
            self.hasher = Some(task.await);
        }
        self.held.clear();
        let file = self
            .file
            .take()
            .map(|f| Arc::try_unwrap(f).expect("every write task has ended"));
        Finished {
            file,
            written: self.check(),
            hasher: self.hasher,
        }
    }
}

/// What a [`BlockSink`] hands back when it is finished.
#[derive(Debug)]
pub struct Finished {
    /// The file, if the sink wrote to one.
    pub file: Option<File>,
    /// The first write error, if any.
    pub written: io::Result<()>,
    /// The hasher, if the sink hashed: it covers every block given to the sink.
    pub hasher: Option<blake3::Hasher>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_hashes_every_block_in_order() {
        async_std::task::block_on(async {
            let file = tempfile::tempfile().unwrap();
            let mut sink = BlockSink::new(
                Some(file.try_clone().unwrap()),
                3,
                Some(blake3::Hasher::new()),
            );
            let mut all = Vec::new();
            for i in 0..40u8 {
                let mut b = sink.buffer(1000 + i as usize);
                b.fill(i);
                all.extend_from_slice(&b);
                sink.write(b).await.unwrap();
            }
            let done = sink.finish().await;
            done.written.unwrap();
            assert_eq!(done.hasher.unwrap().finalize(), blake3::hash(&all));
            let mut back = vec![0u8; all.len()];
            file.read_exact_at(&mut back, 3).unwrap();
            assert_eq!(back, all);
        });
    }

    #[test]
    fn hashing_alone_covers_every_block() {
        async_std::task::block_on(async {
            let mut sink = BlockSink::new(None, 0, Some(blake3::Hasher::new()));
            let mut all = Vec::new();
            for i in 0..25u8 {
                let mut b = sink.buffer(300_000);
                b.fill(i);
                all.extend_from_slice(&b);
                sink.write(b).await.unwrap();
            }
            let done = sink.finish().await;
            assert!(done.file.is_none());
            assert_eq!(done.hasher.unwrap().finalize(), blake3::hash(&all));
        });
    }
}
