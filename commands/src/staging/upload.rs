//! An upload from its first byte to its end: received into its lazily created file, then
//! committed under its name, kept for a resume, or discarded.

use super::claim::PartialGuard;
use super::index::written_at;
use super::lazy::{LazyFile, Place};
use super::{PartialLimits, Staged, Staging};
use crate::attributes::{settle, Attributes};
use crate::body::{stream_to_file, CopyError, Dest, Sink, Stopped};
#[cfg(doc)]
use crate::sandbox::Root;
use crate::sandbox::{io_error, Target};
use rustix::fs::Mode;
use sft_io::{Pace, Pool, Version};
use sft_protocol::WireError;
use std::fs::File;
use std::io;
use std::sync::Arc;

/// Hash states of interrupted uploads kept in memory, at most (beyond: re-hash from disk).
const MAX_SAVED_HASHERS: usize = 1024;

/// An upload being received into a staging file or a resumable partial, owned from
/// [`Root::begin_upload`] to its end. Its steps are the protocol's on the storage side: it
/// receives the body, then is [committed](Upload::commit) under its name,
/// [kept](Upload::keep) for a resume, or [discarded](Upload::discard). Dropped in any other
/// way, its file is removed (a blocking step, when the file was created).
#[derive(Debug)]
pub struct Upload {
    /// The staging file or partial, created with the first block written.
    pub(super) file: Arc<LazyFile>,
    /// The open file, when created (or resumed) and not failed.
    pub(super) open: Option<File>,
    /// Storing failed: the file is of no more use.
    pub(super) failed: bool,
    /// Bytes already held from an interrupted upload when this one began.
    pub(super) offset: u64,
    /// Bytes in the file now.
    pub(super) held: u64,
    /// Hash state of the `held` bytes, when the upload is hashed.
    pub(super) hasher: Option<blake3::Hasher>,
    /// The fewest bytes worth keeping for a resume (`u64::MAX`: never kept).
    pub(super) keep_from: u64,
    /// The claim on a resumable partial (none for a plain staging file).
    pub(super) claim: Option<PartialGuard>,
    /// What the stored file's permission bits and modification time are set to at commit.
    pub(super) attrs: Attributes,
}

/// Why receiving a body stopped early.
#[derive(Debug)]
pub(crate) enum Interrupted {
    /// The peer vanished, stalled or ended the body early: what arrived is in the file (when
    /// worth keeping, see [`stream_to_file`]).
    Peer(io::Error),
    /// Storing failed (disk full, quota…): the file is of no more use.
    Storage(io::Error),
}

impl Upload {
    /// An upload to a fresh plain staging file (created with the first block written).
    pub(super) fn staged(staging: &Staging, hasher: Option<blake3::Hasher>) -> Upload {
        let place = Place::staged(&staging.staging_fd, &staging.staging);
        let file = LazyFile::new(place, None, Mode::from_raw_mode(0o644));
        Upload {
            file: Arc::new(file),
            open: None,
            failed: false,
            offset: 0,
            held: 0,
            hasher,
            keep_from: u64::MAX,
            claim: None,
            attrs: Attributes::default(),
        }
    }

    /// Sets the permission bits and modification time the file is stored with (see
    /// [`crate::attributes`]); without it, those of a new file (or of the file it replaces).
    pub fn set_attributes(&mut self, attrs: Attributes) {
        self.attrs = attrs;
    }

    /// Bytes already held when the upload began (from an interrupted one): the body starts here.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Whether the upload has a file in the staging area (so ending it is file-system work).
    pub fn holds_file(&self) -> bool {
        self.file.created()
    }

    /// Receives the next `len` bytes from `src` into the file, hashing them if the upload is
    /// hashed; `progress` is called with each count of bytes read. The file is created when
    /// the first block is written. After [`Interrupted::Peer`] the bytes that did arrive are
    /// held (and may be kept) if there are enough to be worth keeping; after
    /// [`Interrupted::Storage`] nothing more can be stored.
    pub(crate) async fn receive<R>(
        &mut self,
        src: &mut R,
        len: u64,
        pace: &mut Pace,
        pool: Pool,
        progress: impl FnMut(u64),
    ) -> Result<(), Interrupted>
    where
        R: futures::AsyncRead + Unpin + ?Sized,
    {
        let dest = match self.open.take() {
            Some(file) => Dest::Open(file),
            None if self.failed => {
                return Err(Interrupted::Storage(io::Error::other(
                    "the upload's file failed earlier",
                )))
            }
            None => {
                let file = Arc::clone(&self.file);
                Dest::Later(Box::new(move || file.create()))
            }
        };
        let sink = Sink {
            dest,
            hasher: self.hasher.take(),
            pool,
        };
        log::trace!(from = self.held, bytes = len, created = self.file.created(); "upload: receiving a stretch of the body");
        let received =
            stream_to_file(src, sink, self.held, len, self.keep_from, pace, progress).await;
        match received {
            Ok(sink) => {
                self.restore(sink);
                self.held += len;
                Ok(())
            }
            Err(Stopped {
                error: CopyError::Read(e),
                sink: Some(sink),
                stored,
            }) => {
                self.restore(sink);
                self.held += stored;
                Err(Interrupted::Peer(e))
            }
            Err(Stopped {
                error: CopyError::Read(e),
                sink: None,
                ..
            }) => {
                self.failed = true;
                Err(Interrupted::Peer(e))
            }
            Err(Stopped {
                error: CopyError::Write(e),
                ..
            }) => {
                self.failed = true;
                Err(Interrupted::Storage(e))
            }
        }
    }

    /// Takes back the file (if created) and the hash state after receiving.
    fn restore(&mut self, sink: Sink) {
        self.hasher = sink.hasher;
        self.open = match sink.dest {
            Dest::Open(file) => Some(file),
            Dest::Later(_) => None,
        };
    }

    /// The hash of every byte held, when the upload is hashed.
    pub fn hash(&self) -> Option<blake3::Hash> {
        self.hasher.as_ref().map(blake3::Hasher::finalize)
    }

    /// Moves the file under its name at `target` (blocking); see [`Staged::commit`]. An
    /// upload that wrote nothing (an empty file) creates its file now.
    /// Before that, the file gets its final permission bits and modification time (see
    /// [`crate::attributes`]), so that the rename publishes it complete.
    pub fn commit(mut self, target: &Target, overwrite: bool) -> Result<(), WireError> {
        let file = match self.open.take() {
            Some(file) => Ok(file),
            None if !self.file.created() => self.file.create(),
            None => self.file.reopen(),
        }
        .map_err(|e| io_error(&target.shown, &e))?;
        let (parent, name) = (target.parent.fd(), target.name.as_str());
        settle(&file, parent, name, overwrite, self.attrs)
            .map_err(|e| io_error(&target.shown, &e))?;
        drop(file);
        let partial = self.file.holds_partial();
        self.file.release();
        if let Some(claim) = self.claim.as_mut().filter(|_| partial) {
            // Whatever partial was kept under this name is replaced by this upload's file.
            claim.kept = None;
        }
        let place = self.file.place();
        let staged = Staged {
            dir: place.dir,
            name: Some(place.name),
            path: place.path,
        };
        // The claim on the partial, and its lock, end only after this, when it is no longer
        // where it was: no other upload can open it under its name meanwhile.
        let lock = self.file.unlock();
        let committed = staged.commit(target, overwrite);
        drop(lock);
        committed
    }

    /// Keeps an interrupted upload for a later resume, with the hash state of what it holds —
    /// when it is a resumable partial that holds at least [`MIN_KEPT_PARTIAL`](super::MIN_KEPT_PARTIAL) bytes (less
    /// would save a resume too little). Keeping one may remove the oldest others, to stay
    /// within `limits`. Returns whether it was kept; if not, its file is removed. Blocking: run
    /// it on the blocking pool.
    pub fn keep(mut self, limits: &PartialLimits) -> bool {
        drop(self.open.take());
        if self.failed || self.held < self.keep_from || !self.file.holds_partial() {
            let why = if self.failed {
                "writing it failed"
            } else if self.keep_from == u64::MAX || self.held >= self.keep_from {
                "not resumable (no key, or staged apart)"
            } else {
                "too small to be worth a resume"
            };
            log::debug!(bytes = self.held, reason = why; "partial not kept");
            return false;
        }
        let (Some(mut claim), Some(hasher)) = (self.claim.take(), self.hasher.take()) else {
            log::debug!(bytes = self.held, reason = "not resumable"; "partial not kept");
            return false;
        };
        // Kept under its own name: no longer the upload's to remove, nor the older partial's
        // place to restore. The version it is kept as (while still locked: nobody else wrote
        // it) goes with its hash state.
        let lock = self.file.unlock();
        let version = lock.as_ref().and_then(|file| Version::of(file).ok());
        self.file.release();
        claim.kept = None;
        let (staging, key) = (Arc::clone(&claim.staging), claim.key.clone());
        // The claim ends before the partial is indexed, so that the index never holds one this
        // server is writing; then its lock: any upload, on any server, may resume it.
        drop(claim);
        drop(lock);
        let Some(version) = version else {
            // Kept, but not indexed: the next read of the folder finds it.
            return true;
        };
        let hashers = &staging.hashers;
        if hashers.len() >= MAX_SAVED_HASHERS {
            let victim = hashers.iter().next().map(|e| e.key().clone());
            if let Some(victim) = victim {
                hashers.remove(&victim);
            }
        }
        hashers.insert(key.clone(), (version, hasher));
        staging
            .kept()
            .insert(key.clone(), version.size, written_at(&version));
        staging.enforce(limits, false);
        let still_kept = staging.kept().entries.contains_key(&key);
        log::debug!(partial = key.as_str(), bytes = version.size, kept = still_kept; "partial kept for a resume (unless over the caps)");
        still_kept
    }

    /// Removes the file now (blocking): the upload was refused or failed.
    pub fn discard(self) {
        drop(self);
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        drop(self.open.take());
        let partial = self.file.holds_partial();
        if self.file.remove() && partial {
            if let Some(claim) = &mut self.claim {
                // This upload's file replaced any partial kept under the same name.
                claim.kept = None;
            }
        }
        // The claim drops after this: it puts back a kept partial this upload left untouched.
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::MIN_KEPT_PARTIAL;
    use std::fs;

    #[test]
    fn a_kept_partial_survives_a_new_upload_that_writes_nothing_and_is_replaced_by_one_that_does() {
        let (dir, root) = setup();
        let rp = root.check("f.bin").unwrap();
        let big = vec![7; MIN_KEPT_PARTIAL as usize + 10];
        keep_partial(&root, &rp, &big);
        let kept = partials(&dir);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1, big.len() as u64);

        // Started afresh, it sends nothing: the older partial stays, still indexed and resumable.
        let mut again = begin(&root, &rp, false);
        receive_then_vanish(&mut again, b"");
        assert!(!again.keep(&KEEP_ALL));
        assert_eq!(partials(&dir), kept);
        let resumed = begin(&root, &rp, true);
        assert_eq!(resumed.offset(), big.len() as u64);
        let mut want = blake3::Hasher::new();
        want.update(&big);
        assert_eq!(resumed.hash(), Some(want.finalize()));
        drop(resumed);
        assert_eq!(
            partials(&dir),
            [],
            "a resumed partial dropped unkept is removed"
        );

        // Kept again, then replaced by a fresh upload once that one writes.
        keep_partial(&root, &rp, &big);
        keep_partial(&root, &rp, &big[..MIN_KEPT_PARTIAL as usize]);
        assert_eq!(partials(&dir)[0].1, MIN_KEPT_PARTIAL);
        assert_eq!(root.expire_partials(&KEEP_NONE), 1, "indexed once");
        assert_eq!(partials(&dir), []);
    }

    #[test]
    fn an_empty_upload_creates_its_file_when_committed() {
        let (dir, root) = setup();
        let rp = root.check("empty").unwrap();
        let target = root.prepare_target(&rp, false).unwrap();
        let upload = root
            .begin_upload(&rp, 0, Some(b"u:2"), true, false)
            .unwrap();
        upload.commit(&target, false).unwrap();
        assert_eq!(fs::read(dir.path().join("empty")).unwrap(), b"");
        assert_eq!(partials(&dir), []);
    }
}
