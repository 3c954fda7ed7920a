//! Where uploads are received before they are renamed into place: plain staging files in this
//! server's own folder `.sft/tmp/ID/` (removed if the upload fails) and resumable *partials* in
//! `.sft/partial/` (kept when an upload breaks off, so that it can be continued, until they
//! expire).
//!
//! Abandoned uploads cost little however many clients abandon them. An upload's file is created
//! only when its first block is written, so one that carries nothing costs the file system
//! nothing; a partial holding less than [`MIN_KEPT_PARTIAL`] bytes is never kept (re-sending
//! that costs less than keeping, indexing and later evicting a file); at most `--max-partials`
//! are kept (together at most `--max-upload-bytes`). What expiry needs — each kept partial's
//! size and age — is held in memory (`KeptIndex`), updated as partials are kept, resumed and
//! removed, so keeping one costs `O(log n)`; the index is read again from the folder at most once
//! a second when a decision is due, so that it counts the partials every server sharing the root
//! kept.
//!
//! Several servers may serve one root at once (see `locks.rs` and DEPLOY.md): a partial is
//! locked while an upload writes it, so no two uploads ever write one partial, and expiry never
//! removes one being written; a partial another server kept is resumed from what it holds (its
//! hash state re-read from disk unless this server saved it for that very version of the file).
//!
//! All methods here block on the file system; async callers run them through
//! [`Root::blocking`].
//!
//! One concern a file, each readable alone:
//! - `root.rs`: what [`Root`] offers: [`Root::begin_upload`], [`Root::stage`],
//!   `Root::store_whole`, [`Root::clean_staging`], [`Root::staging_dir`];
//! - `claim.rs`: which partial an upload owns: its name, finding one to resume, the claim that
//!   keeps two uploads of this server off one partial;
//! - `lazy.rs`: an upload's file, created with its first block, and its lock (a small state
//!   machine shared with the blocking task that creates it);
//! - `upload.rs`: an [`Upload`] from its first byte to its end: received, committed, kept or
//!   discarded;
//! - `publish.rs`: a [`Staged`] file renamed into place, atomically;
//! - `index.rs`: the in-memory index of kept partials, their sizes and ages (`KeptIndex`);
//! - `expiry.rs`: reading that index from the folder, and removing partials beyond the limits
//!   ([`Root::expire_partials`]).

mod claim;
mod expiry;
mod index;
mod lazy;
mod publish;
mod root;
#[cfg(test)]
mod testing;
mod upload;

pub use publish::Staged;
pub(crate) use upload::Interrupted;
pub use upload::Upload;

use crate::locks::{self, Folder};
#[cfg(doc)]
use crate::sandbox::Root;
use crate::sandbox::{PARTIAL_DIR, STAGING_DIR};
use dashmap::DashMap;
use index::KeptIndex;
use sft_io::Version;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Abandoned uploads below it cost no file-system work at all.
pub use sft_protocol::limits::MIN_KEPT_PARTIAL;

/// The staging area of a served root: its folders and what is known about them.
#[derive(Debug)]
pub(crate) struct Staging {
    /// This server's own staging folder, `.sft/tmp/ID/`.
    staging: PathBuf,
    pub(crate) staging_fd: Arc<Folder>,
    partial: PathBuf,
    pub(crate) partial_fd: Arc<Folder>,
    /// Partials being written by this server right now (one writer each).
    active: DashMap<String, ()>,
    /// The hash state of each kept partial, for the version of the file it was saved with, so
    /// that resuming need not re-read it.
    hashers: DashMap<String, (Version, blake3::Hasher)>,
    /// The partials kept for a resume (not those this server is writing).
    kept: Mutex<KeptIndex>,
    /// When `kept` was last read from the folder.
    scanned: Mutex<Instant>,
}

/// How many interrupted uploads are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialLimits {
    /// A partial not resumed for this long is removed.
    pub ttl: Duration,
    /// Most partials kept; beyond it the oldest go first.
    pub max_count: usize,
    /// Most bytes all partials together hold; beyond it the oldest go first.
    pub max_bytes: Option<u64>,
}

impl Staging {
    /// The staging area in the reserved folder at `path`, from its folders `tmp`, `locks` and
    /// `partial`, open: claims a staging folder of this server's own in `tmp`, removes what
    /// servers that are gone left there, and reads the partials kept so far.
    pub(crate) fn open(
        tmp: OwnedFd,
        locks: OwnedFd,
        partial: OwnedFd,
        path: &Path,
    ) -> io::Result<Staging> {
        let own = locks::claim_folder(tmp, locks)?;
        let swept = locks::sweep(&own)?;
        if swept > 0 {
            log::info!(files = swept; "removed the staging files of servers no longer running");
        }
        let staging = path.join(STAGING_DIR).join(own.id().unwrap_or_default());
        let partial_fd = Folder::plain(partial);
        let active = DashMap::new();
        let kept = expiry::scan(&partial_fd, &active)?;
        Ok(Staging {
            staging,
            staging_fd: Arc::new(own),
            partial: path.join(PARTIAL_DIR),
            partial_fd: Arc::new(partial_fd),
            active,
            hashers: DashMap::new(),
            kept: Mutex::new(kept),
            scanned: Mutex::new(Instant::now()),
        })
    }

    fn kept(&self) -> MutexGuard<'_, KeptIndex> {
        // The index is only ever changed by short, panic-free steps (see `poison.rs`).
        crate::poison::lock(&self.kept)
    }
}
