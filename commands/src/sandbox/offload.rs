//! Where file-system work runs: the one place that decides, for every call on the served root.
//!
//! File-system calls block the thread that makes them, and on a network file system they may
//! block for as long as the server is unreachable. An executor thread blocked that way stalls
//! every connection it serves, so async code never calls the file system itself: it hands the
//! work to [`Root::blocking`], saying what kind of work it is ([`Work`]), and [`run`] decides
//! whether it runs in place or on async-std's blocking pool.
//!
//! The rule: bulk work (reading or hashing a file, walking a folder, changing the tree, removing
//! a file) always runs on the pool. A lookup (resolving a path, opening or describing one entry)
//! and a small store (preparing a target, beginning an upload, storing a small file whole) cost
//! a few metadata calls: on a local file system less than the hop to the pool and back, which
//! would double the work of a 4 KiB `GET` (see BENCHMARKS.md, "Cost of running file-system calls
//! off the executor"). They run in place when the root is on a local file system — and a small
//! store only once the staging area is loaded, since loading it the first time sweeps the
//! folders of servers that are gone. On a network file system (NFS, SMB, Ceph, FUSE…) every
//! call goes to the pool.
//!
//! The pool is the root's [`Pool`]: at most `--storage-jobs` calls at once, each given up on
//! with [`Hung`] after `--storage-timeout` without progress, so that a storage that stops
//! answering fails the requests that need it in bounded time and holds a bounded number of
//! threads, while every other connection, and `HELLO`, go on being answered. Work in place has
//! no deadline: only a local file system runs any, and only lookups and small stores.

use super::Root;
use sft_io::{Hung, Job, Pool};
use std::os::fd::AsFd;

/// What a piece of file-system work costs: how [`Root::blocking`] decides where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Resolving a path, opening or describing one entry: a few metadata calls.
    Lookup,
    /// Preparing a target, beginning an upload, storing a small file whole: a few metadata
    /// calls and a small write in the staging area.
    Store,
    /// Anything else: reading, hashing or removing files, walking folders, changing the tree.
    Bulk,
}

/// Whether work of kind `work` runs in place on the calling (executor) thread: never for bulk
/// work, and only on a local file system; a small store, only once the staging area is loaded.
fn in_place(work: Work, local: bool, staging_loaded: impl FnOnce() -> bool) -> bool {
    match work {
        Work::Bulk => false,
        Work::Lookup => local,
        Work::Store => local && staging_loaded(),
    }
}

/// Runs `f`, file-system work of kind `work`, where the policy says (see the module's comment):
/// in place, or on `pool`. `local` says whether the root is on a local file system.
pub(crate) async fn run<T: Send + 'static>(
    work: Work,
    local: bool,
    staging_loaded: impl FnOnce() -> bool,
    pool: &Pool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Hung> {
    if in_place(work, local, staging_loaded) {
        Ok(f())
    } else {
        pool.spawn(f).await
    }
}

/// Whether the folder `fd` is on a local file system: not one of the network or user-space file
/// systems whose calls may wait on another machine (by the file system's magic number).
pub(crate) fn is_local(fd: impl AsFd) -> bool {
    const REMOTE: &[i64] = &[
        0x6969,                // NFS
        0x517B,                // SMB
        0xFF53_4D42u32 as i64, // CIFS
        0xFE53_4D42u32 as i64, // SMB2
        0x00C3_6400,           // Ceph
        0x6573_5546,           // FUSE (sshfs, s3fs…)
        0x0102_1997,           // 9P
        0x5346_414F,           // AFS
        0x0116_1970,           // GFS2
        0x7461_636F,           // OCFS2
    ];
    #[allow(clippy::unnecessary_cast)] // the field's type differs between targets
    rustix::fs::fstatfs(fd).map_or(true, |st| !REMOTE.contains(&(st.f_type as i64)))
}

impl Root {
    /// Runs `f` — file-system work on this root, of kind `work` — where the root's policy says:
    /// in place or on the root's pool (see `sandbox/offload.rs`); [`Hung`] if the storage
    /// stopped answering. Every async caller of a blocking `Root` method goes through here.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: Work,
        f: impl FnOnce(&Root) -> T + Send + 'static,
    ) -> Result<T, Hung> {
        let root = self.clone();
        self.offload(work, move || f(&root)).await
    }

    /// Runs `f`, file-system work of kind `work` that needs no root (a file already open), where
    /// the root's policy says.
    pub(crate) async fn offload<T: Send + 'static>(
        &self,
        work: Work,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Hung> {
        let loaded = || self.handle().loaded().is_some();
        run(work, self.inner.local, loaded, &self.inner.pool, f).await
    }

    /// Starts `f`, bulk work that needs no root (a file already open, a walk under way), on the
    /// root's pool at once (or as soon as it has a place): the job resolves to its result.
    pub fn bulk<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Job<T> {
        self.inner.pool.spawn(f)
    }

    /// Runs `f`, clean-up work (removing a file no longer needed) on the root's pool, and waits
    /// for it as for any call: within `--storage-timeout`, so that a request that ends has
    /// cleaned up on a storage that answers. Given up on, it is logged; a call already started
    /// still runs to its end.
    pub async fn clean_up(&self, what: &'static str, f: impl FnOnce() + Send + 'static) {
        if let Err(hung) = self.bulk(f).await {
            log::warn!(what = what; "file-system clean-up given up on: {hung}");
        }
    }

    /// Runs `f`, clean-up work whose result nobody waits for (removing a file no longer
    /// needed), on the root's pool in a task of its own: a storage that hangs delays nothing
    /// else. It still runs within the pool's bound; given up on, it is logged.
    pub fn detach(&self, what: &'static str, f: impl FnOnce() + Send + 'static) {
        let job = self.bulk(f);
        async_std::task::spawn(async move {
            if let Err(hung) = job.await {
                log::warn!(what = what; "file-system clean-up given up on: {hung}");
            }
        });
    }

    /// Closes `file`, which a request is done with: at once on a local file system; on a
    /// network file system on the pool (closing may wait on the storage: FUSE and NFS flush
    /// on close), so that a storage that hangs never holds an executor thread.
    pub fn release(&self, file: std::fs::File) {
        if self.inner.local {
            drop(file);
        } else {
            self.detach("closing a file", move || drop(file));
        }
    }

    /// `file`, closed with [`Root::release`] when dropped: for a file several tasks share.
    pub fn closing(&self, file: std::fs::File) -> Closing {
        Closing {
            file: Some(file),
            root: self.clone(),
        }
    }

    /// The pool the root's file-system work runs on (for block pipelines and metrics).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Whether the root is on a local file system (where lookups run in place, and bodies may
    /// go by `sendfile`, which waits on the file in the calling thread).
    pub fn is_local(&self) -> bool {
        self.inner.local
    }
}

/// A file of the root, closed where the root's policy says when dropped ([`Root::release`]):
/// on a network file system never on an executor thread, wherever its last owner drops it.
#[derive(Debug)]
pub struct Closing {
    file: Option<std::fs::File>,
    root: Root,
}

impl std::ops::Deref for Closing {
    type Target = std::fs::File;

    fn deref(&self) -> &std::fs::File {
        self.file.as_ref().expect("taken only on drop")
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            self.root.release(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_work_never_runs_in_place_and_nothing_does_on_a_network_file_system() {
        for local in [true, false] {
            for loaded in [true, false] {
                assert!(!in_place(Work::Bulk, local, || loaded));
                assert_eq!(in_place(Work::Lookup, local, || loaded), local);
                assert_eq!(in_place(Work::Store, local, || loaded), local && loaded);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(is_local(std::fs::File::open(dir.path()).unwrap()));
    }
}
