//! A file received block by block.

use crate::pool::{Job, Pool};
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// Blocks that may wait for the disk or the hash before the network side has to wait: enough
/// to ride out a slow write or a busy core without stalling the socket, few enough that memory
/// stays at 2.5 MiB per transfer (as much as the queues of dedicated threads it replaces).
const DEPTH: usize = 4;

/// A file (and/or a hash) fed with blocks as they arrive from the network.
///
/// Two stages run beside the caller, who goes on receiving: one writes the blocks to the file in
/// order, one hashes them in order. A stage is a queue and, while the queue is not empty, one
/// short task on the blocking pool that works through it and returns as soon as it is empty
/// (the next block queued starts a new one). So no pool thread ever waits for the network —
/// any number of slow peers cost threads only while their bytes are actually written or hashed
/// — each file has one writer at a time, in order, and a block never waits in memory for a
/// later one to arrive. The caller waits only when more than `DEPTH` blocks are queued for a
/// stage. Memory: at most `2 × DEPTH + 2` blocks.
#[derive(Debug)]
pub struct BlockSink {
    write: Option<Stage<File>>,
    hash: Option<Stage<blake3::Hasher>>,
    /// Every block some task may still hold, oldest first, to be recycled once free.
    held: VecDeque<Arc<Vec<u8>>>,
    spare: Vec<Vec<u8>>,
}

/// What a stage's task shares with the caller.
#[derive(Debug)]
struct Shared<T> {
    /// The file or the hasher, while no task holds it.
    state: Option<T>,
    queue: VecDeque<Arc<Vec<u8>>>,
    /// File position of the first queued block.
    at: u64,
    /// The first error; once set, queued blocks are dropped.
    failed: Option<(io::ErrorKind, String)>,
}

/// One stage: its shared state and its latest task.
#[derive(Debug)]
struct Stage<T> {
    shared: Arc<Mutex<Shared<T>>>,
    task: Option<Job<()>>,
    pool: Pool,
    work: fn(&mut T, &[u8], u64) -> io::Result<()>,
}

impl<T: Send + 'static> Stage<T> {
    fn new(
        state: T,
        at: u64,
        work: fn(&mut T, &[u8], u64) -> io::Result<()>,
        pool: &Pool,
    ) -> Stage<T> {
        let shared = Shared {
            state: Some(state),
            queue: VecDeque::new(),
            at,
            failed: None,
        };
        Stage {
            shared: Arc::new(Mutex::new(shared)),
            task: None,
            work,
            pool: pool.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared<T>> {
        // Only short, panic-free steps run under the lock.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `block`, starting a task if none works on the queue.
    fn push(&mut self, block: Arc<Vec<u8>>) {
        let mut shared = self.lock();
        if shared.failed.is_some() {
            return;
        }
        shared.queue.push_back(block);
        let Some(mut state) = shared.state.take() else {
            return; // a task is working through the queue and will take this block too
        };
        drop(shared);
        let (inner, work) = (Arc::clone(&self.shared), self.work);
        self.task = Some(self.pool.spawn(move || loop {
            let (block, at) = {
                let mut shared = inner.lock().unwrap_or_else(|e| e.into_inner());
                match shared.queue.pop_front() {
                    Some(block) => {
                        let at = shared.at;
                        shared.at += block.len() as u64;
                        (block, at)
                    }
                    None => {
                        shared.state = Some(state);
                        return;
                    }
                }
            };
            if let Err(e) = work(&mut state, &block, at) {
                let mut shared = inner.lock().unwrap_or_else(|e| e.into_inner());
                shared.failed.get_or_insert((e.kind(), e.to_string()));
                shared.queue.clear();
                shared.state = Some(state);
                return;
            }
        }));
    }

    fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    fn failed(&self) -> Option<io::Error> {
        self.lock()
            .failed
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    /// Waits until the queue is worked through: the latest task works through every block
    /// queued before it looked, and no block is queued while the caller waits here.
    /// A task the storage stopped answering fails the stage; the file stays with the task.
    async fn drain(&mut self) {
        if let Some(task) = self.task.take() {
            if let Err(hung) = task.await {
                let mut shared = self.lock();
                shared
                    .failed
                    .get_or_insert((io::ErrorKind::TimedOut, hung.to_string()));
                shared.queue.clear();
            }
        }
    }

    /// The file or the hasher, once drained.
    fn into_state(self) -> (Option<T>, Option<io::Error>) {
        let failed = self.failed();
        (self.lock().state.take(), failed)
    }
}

fn write_block(file: &mut File, block: &[u8], at: u64) -> io::Result<()> {
    file.write_all_at(block, at)?;
    crate::pool::progress();
    Ok(())
}

fn hash_block(hasher: &mut blake3::Hasher, block: &[u8], _: u64) -> io::Result<()> {
    hasher.update(block);
    Ok(())
}

impl BlockSink {
    /// Blocks go to `file` (if any) from position `pos` on, and to `hasher` (if any), which
    /// holds whatever the file already contains; the work runs on `pool`.
    pub fn new(
        file: Option<File>,
        pos: u64,
        hasher: Option<blake3::Hasher>,
        pool: &Pool,
    ) -> BlockSink {
        BlockSink {
            write: file.map(|f| Stage::new(f, pos, write_block, pool)),
            hash: hasher.map(|h| Stage::new(h, 0, hash_block, pool)),
            held: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// A buffer of `len` bytes to fill with the next block (recycled when possible).
    pub fn buffer(&mut self, len: usize) -> Vec<u8> {
        self.recycle();
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Queues `block` for writing and hashing; waits only while more than a few blocks are
    /// queued. Fails once a write failed (the same error every time).
    pub async fn write(&mut self, block: Vec<u8>) -> io::Result<()> {
        self.check()?;
        let block = Arc::new(block);
        if let Some(stage) = self.write.as_mut() {
            stage.push(Arc::clone(&block));
            if stage.queued() > DEPTH {
                stage.drain().await;
            }
        }
        if let Some(stage) = self.hash.as_mut() {
            stage.push(Arc::clone(&block));
            if stage.queued() > DEPTH {
                stage.drain().await;
            }
        }
        self.held.push_back(block);
        self.check()
    }

    fn check(&self) -> io::Result<()> {
        match self.write.as_ref().and_then(Stage::failed) {
            Some(e) => Err(e),
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
        let (mut file, mut hasher, mut written) = (None, None, Ok(()));
        if let Some(mut stage) = self.write.take() {
            stage.drain().await;
            let (state, failed) = stage.into_state();
            file = state;
            if let Some(e) = failed {
                written = Err(e);
            }
        }
        if let Some(mut stage) = self.hash.take() {
            stage.drain().await;
            hasher = stage.into_state().0;
        }
        Finished {
            file,
            written,
            hasher,
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
                &crate::Pool::unbounded(),
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
            let mut sink = BlockSink::new(
                None,
                0,
                Some(blake3::Hasher::new()),
                &crate::Pool::new(4, std::time::Duration::from_secs(30)),
            );
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
