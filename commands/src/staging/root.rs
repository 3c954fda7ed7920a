//! What the served [`Root`] offers for uploads: beginning one ([`Root::begin_upload`]), a plain
//! staging file ([`Root::stage`]), a small body stored in one step ([`Root::store_whole`]), and
//! this server's staging folder ([`Root::staging_dir`], [`Root::clean_staging`]).

use super::claim::{open_partial, partial_key, Found, Kept, PartialGuard};
use super::lazy::{FileState, LazyFile, Place};
use super::{Staged, Upload, MIN_KEPT_PARTIAL};
use crate::attributes::{settle, Attributes};
use crate::locks;
use crate::sandbox::errno;
use crate::sandbox::{io_error, Root, Target, STAGING_DIR};
use rustix::fs::{self as rfs, Mode, OFlags};
use sft_protocol::{RemotePath, WireError};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Names of plain staging files: unique within the process (and its folder is its own).
static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Root {
    /// The interrupted uploads kept for a resume, as this server knows them: how many, and
    /// their bytes (those this server kept, and those the others sharing the root kept as of
    /// the last reading of the folder). Touches no file; `(0, 0)` until an upload or the
    /// expiry of partials first opens the staging area.
    pub fn partials_kept(&self) -> (usize, u64) {
        match self.handle_unchecked().loaded() {
            Some(staging) => {
                let kept = staging.kept();
                (kept.entries.len(), kept.bytes)
            }
            None => (0, 0),
        }
    }

    /// Removes every file in this server's staging folder (uploads that can no longer
    /// complete); those of other servers sharing the root are theirs. Writes nothing if no
    /// upload ever needed the staging area.
    pub fn clean_staging(&self) -> io::Result<usize> {
        match self.handle().loaded() {
            Some(staging) => locks::clean_dir(&*staging.staging_fd),
            None => Ok(0),
        }
    }

    /// Starts receiving an upload of `size` bytes for `rp`.
    ///
    /// With a `key` — what identifies this upload: its declared hash, or an id the client
    /// chose — the upload goes to a *partial* in `.sft/partial/`, named after the path, the size
    /// and the key, so that only the same upload can continue it; it is kept if the transfer
    /// breaks holding at least [`MIN_KEPT_PARTIAL`] bytes, and the upload is hashed. With
    /// `resume`, an existing partial is continued (the returned offset says from where) with its
    /// hash state; otherwise it is started afresh — and an older partial of the same upload is
    /// replaced only once this one writes its first block. Without a key the upload goes to a
    /// plain staging file, removed if anything fails, and is hashed only if `hash` says so.
    ///
    /// A partial is locked while an upload writes it. When another connection — on this server
    /// or on another sharing the root — is receiving the same upload right now, this one does
    /// not touch its partial: it stages separately, from the start, and is not resumable. That
    /// is decided here when the other is seen already, otherwise when this one's file is created
    /// (both may begin before either wrote a byte).
    ///
    /// No file is created here: only when the first block is written (or an empty upload is
    /// committed). Resuming opens the existing partial.
    pub fn begin_upload(
        &self,
        rp: &RemotePath,
        size: u64,
        key: Option<&[u8]>,
        hash: bool,
        resume: bool,
    ) -> io::Result<Upload> {
        let staging = self.reserved()?;
        let Some(key) = key else {
            return Ok(Upload::staged(&staging, hash.then(blake3::Hasher::new)));
        };
        let key = partial_key(rp, size, key);
        if staging.active.insert(key.clone(), ()).is_some() {
            log::debug!(path:% = rp, reason = "the same upload runs on another connection"; "upload staged apart, not resumable");
            // The same upload is already running on another connection: do not share its
            // partial; this one stages separately and is not resumable.
            return Ok(Upload::staged(&staging, Some(blake3::Hasher::new())));
        }
        // Claimed: no longer a kept partial that expiry may remove, but this upload's — until
        // it ends, when it is put back if this upload never wrote a file of its own.
        let saved = staging.hashers.remove(&key).map(|(_, state)| state);
        let kept = staging.kept().take(&key).map(|(at, size)| Kept {
            at,
            size,
            hasher: saved,
        });
        let mut claim = PartialGuard {
            staging: Arc::clone(&staging),
            key: key.clone(),
            kept,
        };
        let found = match resume {
            true => open_partial(&staging.partial_fd, &key, size)?,
            false if locks::is_locked(&*staging.partial_fd, &key)? => Found::Busy,
            false => Found::Nothing,
        };
        let place = Place {
            dir: Arc::clone(&staging.partial_fd),
            path: staging.partial.join(&key),
            name: key,
            partial: true,
        };
        let name = place.name.clone();
        let apart = (Arc::clone(&staging.staging_fd), staging.staging.clone());
        let lazy = LazyFile::new(place, Some(apart), Mode::from_raw_mode(0o600));
        let (file, version) = match found {
            Found::Held(file, version) => {
                log::debug!(path:% = rp, partial = name.as_str(), bytes = version.size; "partial resumed");
                (file, version)
            }
            Found::Nothing => {
                log::debug!(path:% = rp, partial = name.as_str(), resume = resume; "no partial to resume: starting afresh");
                return Ok(Upload {
                    file: Arc::new(lazy),
                    open: None,
                    failed: false,
                    offset: 0,
                    held: 0,
                    hasher: Some(blake3::Hasher::new()),
                    keep_from: MIN_KEPT_PARTIAL,
                    claim: Some(claim),
                    attrs: Attributes::default(),
                });
            }
            Found::Busy => {
                // Another server is receiving the same upload into this partial right now.
                log::debug!(path:% = rp, reason = "another server is writing its partial"; "upload staged apart, not resumable");
                drop(claim);
                return Ok(Upload::staged(&staging, Some(blake3::Hasher::new())));
            }
        };
        // Resumed: the partial is this upload's now (locked), with the hash state of what it
        // holds.
        let held = version.size;
        let saved = claim.kept.take().and_then(|kept| kept.hasher);
        *lazy.lock() = Some(file.try_clone()?);
        *lazy.state() = FileState::Created;
        let hasher = match saved {
            // Saved for this very file as it is: nobody wrote it since.
            Some((seen, hasher)) if seen == version => hasher,
            // No state in memory (the server restarted, or another server kept the partial):
            // re-read the partial once.
            _ => {
                log::debug!(partial = name.as_str(), bytes = held; "partial's hash state not in memory: reading it again");
                let mut hasher = blake3::Hasher::new();
                crate::body::hash_prefix(&file, &mut hasher, held)?;
                hasher
            }
        };
        Ok(Upload {
            file: Arc::new(lazy),
            open: Some(file),
            failed: false,
            offset: held,
            held,
            hasher: Some(hasher),
            keep_from: MIN_KEPT_PARTIAL,
            claim: Some(claim),
            attrs: Attributes::default(),
        })
    }

    /// The folder this server stages uploads in before they are renamed into place: its own,
    /// `.sft/tmp/ID/`, once an upload needed it; `.sft/tmp/`, which holds one such folder per
    /// running server, before.
    pub fn staging_dir(&self) -> PathBuf {
        match self.handle().loaded() {
            Some(staging) => staging.staging.clone(),
            None => self
                .dir()
                .join(crate::sandbox::RESERVED_DIR)
                .join(STAGING_DIR),
        }
    }

    /// Creates a new, empty staging file. It is removed when the guard drops, unless committed.
    pub fn stage(&self) -> io::Result<(Staged, File)> {
        let staging = self.reserved()?;
        loop {
            let name = staging_name();
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            match rfs::openat(
                &*staging.staging_fd,
                name.as_str(),
                flags,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => {
                    let staged = Staged {
                        dir: Arc::clone(&staging.staging_fd),
                        path: staging.staging.join(&name),
                        name: Some(name),
                    };
                    return Ok((staged, File::from(fd)));
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(errno(e)),
            }
        }
    }

    /// Stores an upload received whole (and verified) in memory, in one step: a fresh staging
    /// file is created, written, given its attributes (see [`crate::attributes`]) and renamed
    /// into place under `target`, atomically, as [`Upload::commit`] does. Nothing is created
    /// before every byte has arrived, and on any failure nothing is left under either name.
    /// Blocking: a few system calls, meant for small files (see `SEND`'s small path).
    pub(crate) fn store_whole(
        &self,
        target: &Target,
        body: &[u8],
        attrs: Attributes,
        overwrite: bool,
    ) -> Result<(), WireError> {
        let failed = |e: io::Error| io_error(&target.shown, &e);
        // Dropped on any early return, the staging file is removed.
        let (staged, file) = self.stage().map_err(failed)?;
        std::os::unix::fs::FileExt::write_all_at(&file, body, 0).map_err(failed)?;
        // The bits of the file it replaces are those seen when the target was resolved, a
        // moment ago: not looked up again.
        let mode = attrs
            .mode
            .unwrap_or_else(|| match (overwrite, target.replaced_mode) {
                (true, Some(bits)) => bits,
                _ => crate::attributes::new_file_mode(),
            });
        let attrs = Attributes {
            mode: Some(mode),
            ..attrs
        };
        let (parent, name) = (target.parent.fd(), target.name.as_str());
        settle(&file, parent, name, overwrite, attrs).map_err(failed)?;
        drop(file);
        staged.commit(target, overwrite)
    }
}

/// A fresh name for a plain staging file.
pub(super) fn staging_name() -> String {
    /// The process id, asked for once (`getpid` is a system call each time).
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}.part", PID.get_or_init(std::process::id))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{PartialLimits, MIN_KEPT_PARTIAL};
    use std::fs;
    use std::time::Duration;

    #[test]
    fn two_servers_never_write_one_partial_at_once() {
        let (dir, a, b) = two_servers();
        let rp = a.check("f.bin").unwrap();
        let data = vec![7; MIN_KEPT_PARTIAL as usize + 10];
        // A receives part of the upload: its partial exists, locked, not kept yet.
        let mut on_a = begin(&a, &rp, false);
        receive_then_vanish(&mut on_a, &data);
        assert!(on_a.holds_file());
        let writing = partials(&dir);
        assert_eq!(writing.len(), 1);

        // The same upload on B, resumed or afresh, stages separately from the start, and
        // completes.
        let whole = vec![7; 1 << 20];
        for resume in [true, false] {
            let mut on_b = begin(&b, &rp, resume);
            assert_eq!(on_b.offset(), 0, "resume: {resume}");
            receive(&mut on_b, &whole, whole.len() as u64).unwrap();
            assert!(on_b.holds_file());
            assert_eq!(partials(&dir), writing, "A's partial untouched");
            assert_eq!(fs::read_dir(b.staging_dir()).unwrap().count(), 1);
            let target = b.prepare_target(&rp, true).unwrap();
            on_b.commit(&target, true).unwrap();
            assert!(fs::read(dir.path().join("f.bin")).unwrap() == whole);
        }
        // B's expiry leaves it alone, however far over the caps.
        let none = PartialLimits {
            max_count: 0,
            max_bytes: Some(0),
            ttl: Duration::ZERO,
        };
        assert_eq!(b.expire_partials(&none), 0);
        assert_eq!(partials(&dir), writing);

        // Kept by A: B continues it from what it holds, re-reading its hash state.
        assert!(on_a.keep(&KEEP_ALL));
        let on_b = begin(&b, &rp, true);
        assert_eq!(on_b.offset(), data.len() as u64);
        assert_eq!(on_b.hash(), hash_of(&data));
        // …and holds it now: A's expiry leaves it alone.
        assert_eq!(a.expire_partials(&none), 0);
        assert_eq!(partials(&dir), writing);
        drop(on_b);
        assert_eq!(partials(&dir), [], "dropped unkept, it is removed");
    }

    #[test]
    fn a_hash_state_saved_for_a_partial_another_server_rewrote_is_not_used() {
        let (_dir, a, b) = two_servers();
        let rp = a.check("f.bin").unwrap();
        let first = vec![1; MIN_KEPT_PARTIAL as usize];
        let second = vec![2; MIN_KEPT_PARTIAL as usize];
        // B keeps the upload (saving its hash state), then A starts it afresh and keeps it.
        keep_partial(&b, &rp, &first);
        keep_partial(&a, &rp, &second);
        // Resumed on B: the hash is of what the file holds now, not of what B saw.
        let resumed = begin(&b, &rp, true);
        assert_eq!(resumed.offset(), second.len() as u64);
        assert_eq!(resumed.hash(), hash_of(&second));
    }
}
