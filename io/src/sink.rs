//! A file received block by block.

use async_std::task::{spawn_blocking, JoinHandle};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A file (and/or a hash) fed with blocks as they arrive from the network.
///
/// Each block is hashed by one short task and written by another, both on the blocking pool
/// and side by side, while the caller receives the next block. A task only ever works on its
/// block and returns: no pool thread waits for the network, so any number of slow peers costs
/// threads only while their bytes are actually being written. Memory: at most three blocks
/// (one being received, one being hashed and written, one spare).
#[derive(Debug)]
pub struct BlockSink {
    file: Option<File>,
    pos: u64,
    hasher: Option<blake3::Hasher>,
    /// The block in flight, kept to be recycled once both tasks are done with it.
    block: Option<Arc<Vec<u8>>>,
    hashing: Option<JoinHandle<blake3::Hasher>>,
    writing: Option<JoinHandle<(File, io::Result<()>)>>,
    spare: Vec<u8>,
    /// The first write error, kept to be reported by every later call.
    failed: Option<(io::ErrorKind, String)>,
}

impl BlockSink {
    /// Blocks go to `file` (if any) from position `pos` on, and to `hasher` (if any), which
    /// holds whatever the file already contains.
    pub fn new(file: Option<File>, pos: u64, hasher: Option<blake3::Hasher>) -> BlockSink {
        BlockSink {
            file,
            pos,
            hasher,
            block: None,
            hashing: None,
            writing: None,
            spare: Vec::new(),
            failed: None,
        }
    }

    /// A buffer of `len` bytes to fill with the next block (recycled when possible).
    pub fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.spare);
        buf.resize(len, 0);
        buf
    }

    /// Waits for the block in flight, then starts hashing and writing `block`. Fails once a
    /// write failed (the same error every time).
    pub async fn write(&mut self, block: Vec<u8>) -> io::Result<()> {
        self.settle().await?;
        let block = Arc::new(block);
        if let Some(mut hasher) = self.hasher.take() {
            let b = Arc::clone(&block);
            self.hashing = Some(spawn_blocking(move || {
                hasher.update(&b);
                hasher
            }));
        }
        if let Some(file) = self.file.take() {
            let (b, pos) = (Arc::clone(&block), self.pos);
            self.writing = Some(spawn_blocking(move || {
                let written = file.write_all_at(&b, pos);
                (file, written)
            }));
        }
        self.pos += block.len() as u64;
        self.block = Some(block);
        Ok(())
    }

    /// Waits for the tasks of the block in flight.
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(task) = self.hashing.take() {
            self.hasher = Some(task.await);
        }
        if let Some(task) = self.writing.take() {
            let (file, written) = task.await;
            self.file = Some(file);
            if let Err(e) = written {
                self.failed.get_or_insert((e.kind(), e.to_string()));
            }
        }
        if let Some(block) = self.block.take() {
            if let Ok(buf) = Arc::try_unwrap(block) {
                self.spare = buf;
            }
        }
        match &self.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    /// Waits for every block; gives back the file and the hasher, and whether every write
    /// succeeded.
    pub async fn finish(mut self) -> Finished {
        let written = self.settle().await;
        Finished {
            file: self.file,
            written,
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
            for i in 0..20u8 {
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
}
