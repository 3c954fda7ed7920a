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
//! size and age — is held in memory ([`KeptIndex`]), updated as partials are kept, resumed and
//! removed, so keeping one costs `O(log n)`; the index is read again from the folder at most once
//! a second when a decision is due, so that it counts the partials every server sharing the root
//! kept.
//!
//! Several servers may serve one root at once (see `locks.rs` and DEPLOY.md): a partial is
//! locked while an upload writes it, so no two uploads ever write one partial, and expiry never
//! removes one being written; a partial another server kept is resumed from what it holds (its
//! hash state re-read from disk unless this server saved it for that very version of the file).
//!
//! All methods here block on the file system; async callers run them with
//! [`async_std::task::spawn_blocking`].

use crate::attributes::{settle, Attributes};
use crate::body::{stream_to_file, CopyError, Dest, Sink, Stopped};
use crate::locks::{self, Claim, Folder};
use crate::sandbox::{io_error, Root, Target, PARTIAL_DIR, STAGING_DIR};
use dashmap::DashMap;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use sft_io::{Pace, Version};
use sft_protocol::{ErrorCode, RemotePath, WireError};
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Hash states of interrupted uploads kept in memory, at most (beyond: re-hash from disk).
const MAX_SAVED_HASHERS: usize = 1024;

/// The fewest bytes an interrupted upload must hold to be kept for a resume: 64 KiB. Sending
/// that much again costs a client less than the server spends keeping, indexing and later
/// evicting a file, and abandoned uploads below it cost no file-system work at all.
pub const MIN_KEPT_PARTIAL: u64 = 64 * 1024;

/// Names of plain staging files: unique within the process (and its folder is its own).
static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The index of kept partials is read again from the folder, when a decision is due, once it
/// is this old: it then counts what the other servers sharing the root kept, and forgets what
/// they resumed or removed.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

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

/// The kept partials' sizes and ages (their files' modification times), oldest first: all that
/// expiry and the caps need, so that most decisions need not read the folder.
#[derive(Debug, Default)]
struct KeptIndex {
    /// Name → (when it was last written, its size, the insertion that put it here).
    entries: HashMap<String, (SystemTime, u64, u64)>,
    /// (When last written, name), oldest first.
    by_age: BTreeSet<(SystemTime, String)>,
    /// The sum of the sizes.
    bytes: u64,
    /// Insertions so far: what was inserted while the folder was being read is known by it.
    inserted: u64,
}

impl KeptIndex {
    fn insert(&mut self, name: String, size: u64, at: SystemTime) {
        self.take(&name);
        self.inserted += 1;
        self.by_age.insert((at, name.clone()));
        self.entries.insert(name, (at, size, self.inserted));
        self.bytes += size;
    }

    /// Forgets `name` (it is being written again, or it is gone); returns when it was kept
    /// and its size.
    fn take(&mut self, name: &str) -> Option<(SystemTime, u64)> {
        let (at, size, _) = self.entries.remove(name)?;
        self.by_age.remove(&(at, name.to_owned()));
        self.bytes -= size;
        Some((at, size))
    }

    /// Becomes `fresh`, what was just read from the folder, but for what `claimed` says this
    /// server's uploads hold now, and with what was inserted here after insertion `since` (kept
    /// while the folder was being read: newer than what the reading saw, if it saw it at all).
    fn replace(&mut self, fresh: KeptIndex, since: u64, claimed: impl Fn(&str) -> bool) {
        let newer: Vec<(String, SystemTime, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.2 > since)
            .map(|(name, e)| (name.clone(), e.0, e.1))
            .collect();
        let inserted = self.inserted;
        *self = KeptIndex {
            inserted,
            ..KeptIndex::default()
        };
        for (name, (at, size, _)) in fresh.entries {
            if !claimed(&name) {
                self.insert(name, size, at);
            }
        }
        for (name, at, size) in newer {
            if !claimed(&name) {
                self.insert(name, size, at);
            }
        }
    }

    /// Takes out the oldest partial if it is older than the limits' lifetime or beyond their
    /// caps, and returns its name, age and size.
    fn take_one_over_limits(
        &mut self,
        limits: &PartialLimits,
        now: SystemTime,
    ) -> Option<(String, SystemTime, u64)> {
        let (at, name) = self.by_age.first()?;
        let expired = now.duration_since(*at).is_ok_and(|age| age > limits.ttl);
        let over = self.entries.len() > limits.max_count
            || limits.max_bytes.is_some_and(|max| self.bytes > max);
        if !expired && !over {
            return None;
        }
        let name = name.clone();
        let (at, size) = self.take(&name)?;
        Some((name, at, size))
    }

    /// Takes out, oldest first, the partials older than the limits' lifetime and those beyond
    /// their caps, and returns their names.
    #[cfg(test)]
    fn take_over_limits(&mut self, limits: &PartialLimits, now: SystemTime) -> Vec<String> {
        std::iter::from_fn(|| self.take_one_over_limits(limits, now))
            .map(|(name, _, _)| name)
            .collect()
    }
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
        let kept = scan(&partial_fd, &active)?;
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
        // The index is only ever changed by short, panic-free steps: a poisoned lock still
        // holds a consistent index.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the index again from the folder — always, or only if it is older than
    /// [`RESCAN_EVERY`] — unless another thread is reading it right now: then the index as it
    /// is will do.
    fn rescan(&self, always: bool) {
        let Ok(mut scanned) = self.scanned.try_lock() else {
            return;
        };
        if !always && scanned.elapsed() < RESCAN_EVERY {
            return;
        }
        let since = self.kept().inserted;
        if let Ok(fresh) = scan(&self.partial_fd, &self.active) {
            let mut kept = self.kept();
            kept.replace(fresh, since, |name| self.active.contains_key(name));
            // Hash states of partials gone (resumed and finished elsewhere, removed) are of no
            // more use.
            self.hashers
                .retain(|name, _| kept.entries.contains_key(name));
        }
        *scanned = Instant::now();
    }

    /// Removes the partials beyond `limits`, oldest first; returns how many went. The index is
    /// read from the folder first (`rescan`), or only if it is older than [`RESCAN_EVERY`].
    /// Partials an upload is writing — on this server or another — are left alone, and so is
    /// one written again since the index saw it (it is judged again by its new age).
    ///
    /// Each is removed while the index is locked: an upload of this server claiming the same
    /// name (which takes it out of the index under the same lock) either came first, and the
    /// partial is its own now, or comes after, and finds no file. An upload of another server
    /// holds the partial's file lock while it writes it, which removal needs.
    fn enforce(&self, limits: &PartialLimits, rescan: bool) -> usize {
        self.rescan(rescan);
        let now = SystemTime::now();
        let mut removed = 0;
        // Each partial is judged at most twice (once more when it changed since it was seen).
        let mut left = 2 * self.kept().entries.len() + 1;
        while left > 0 {
            left -= 1;
            let mut kept = self.kept();
            let Some((name, at, size)) = kept.take_one_over_limits(limits, now) else {
                break;
            };
            if self.active.contains_key(&name) {
                continue;
            }
            match remove_partial(&self.partial_fd, &name, Some((at, size))) {
                Removal::Removed => {
                    self.hashers.remove(&name);
                    removed += 1;
                }
                Removal::Changed(at, size) => kept.insert(name, size, at),
                // Being written: it is back in the index once kept again (next read).
                Removal::Busy => {}
                Removal::Gone => {
                    self.hashers.remove(&name);
                }
            }
        }
        removed
    }
}

/// When the file of `version` was last written.
fn written_at(version: &Version) -> SystemTime {
    let (secs, nanos) = version.mtime;
    SystemTime::UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
}

/// Reads the partials in the folder — kept by this server or by any other sharing the root —
/// into an index: their sizes and ages. Names in `active` (this server's uploads in progress)
/// are left out. Those too small to be kept (see [`MIN_KEPT_PARTIAL`]), of little use to a
/// resume, are removed, unless an upload is writing one.
fn scan(dir: &Folder, active: &DashMap<String, ()>) -> io::Result<KeptIndex> {
    let mut index = KeptIndex::default();
    for name in locks::names(dir)? {
        if active.contains_key(&name) {
            continue;
        }
        let Ok(st) = rfs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            continue;
        }
        let version = Version::from_stat(&st);
        if version.size >= MIN_KEPT_PARTIAL {
            index.insert(name, version.size, written_at(&version));
        } else if let Removal::Changed(at, size) = remove_partial(dir, &name, None) {
            index.insert(name, size, at);
        }
    }
    Ok(index)
}

/// What became of a partial that was to be removed.
#[derive(Debug)]
enum Removal {
    Removed,
    /// An upload is writing it (its lock is held): left alone.
    Busy,
    /// No longer there.
    Gone,
    /// Not what it was when judged: its age and size now. Left alone.
    Changed(SystemTime, u64),
}

/// Removes the partial `name` in `dir`, unless an upload is writing it or it is no longer what
/// it was judged by: the age and size `seen`, or (without) too small to be kept.
fn remove_partial(dir: &Folder, name: &str, seen: Option<(SystemTime, u64)>) -> Removal {
    // Removal needs the lock: no upload, here or on another server, writes it meanwhile.
    let file = match locks::open_locked(dir, name, OFlags::RDWR, Mode::empty()) {
        Ok(Claim::Locked(file)) => file,
        Ok(Claim::Busy) => return Removal::Busy,
        Ok(Claim::Missing) | Err(_) => return Removal::Gone,
    };
    let Ok(now) = Version::of(&file) else {
        return Removal::Gone;
    };
    let now_seen = (written_at(&now), now.size);
    let same = match seen {
        Some(seen) => seen == now_seen,
        None => now.size < MIN_KEPT_PARTIAL,
    };
    if !same {
        return Removal::Changed(now_seen.0, now_seen.1);
    }
    // Removed while still locked: whoever opened it meanwhile finds its name gone once it holds
    // the lock, and does not use it.
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    drop(file);
    Removal::Removed
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

fn already_exists(shown: &impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Exists, format!("{shown} already exists"))
}

impl Root {
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
    /// not touch its partial: it stages separately, from the start, and is not resumable.
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
        let lazy = LazyFile {
            dir: Arc::clone(&staging.partial_fd),
            path: staging.partial.join(&key),
            name: key,
            partial: true,
            mode: Mode::from_raw_mode(0o600),
            state: Mutex::new(FileState::Later),
            lock: Mutex::new(None),
        };
        let (file, version) = match found {
            Found::Held(file, version) => (file, version),
            Found::Nothing => {
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
                })
            }
            Found::Busy => {
                // Another server is receiving the same upload into this partial right now.
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

    /// Removes the kept partials older than the limits' lifetime, then the oldest ones while
    /// more are kept than the limits allow — counting those every server sharing the root
    /// kept. Partials being written, by this server or another, are left alone. Returns how
    /// many went. Reads the folder (names and sizes: no file is read), then works from that
    /// index: meant to run now and then (at start-up, and every `--partial-ttl` / 4).
    ///
    /// Writes nothing where no reserved folder exists yet (a server that never received an
    /// upload); where one does (an earlier run's), loads it, which also removes the staging
    /// debris of servers that are gone. Only a writable server calls this.
    pub fn expire_partials(&self, limits: &PartialLimits) -> usize {
        match self.present_reserved() {
            Ok(Some(staging)) => staging.enforce(limits, true),
            _ => 0,
        }
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
}

impl Root {
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

/// The name of the partial for an upload of `size` bytes at `rp` identified by `key`.
fn partial_key(rp: &RemotePath, size: u64, key: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(rp.to_string().as_bytes())
        .update(b"\0")
        .update(&size.to_le_bytes())
        .update(key);
    format!("{}.part", &h.finalize().to_hex()[..32])
}

/// A fresh name for a plain staging file.
fn staging_name() -> String {
    /// The process id, asked for once (`getpid` is a system call each time).
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}.part", PID.get_or_init(std::process::id))
}

/// What [`open_partial`] found.
#[derive(Debug)]
enum Found {
    /// A partial to continue, locked: the file and its version (its size is what it holds).
    Held(File, Version),
    /// Nothing to continue.
    Nothing,
    /// An upload (on another server) is writing it right now.
    Busy,
}

/// Opens the existing partial `name` to be continued, if there is one holding part of an upload
/// of `size` bytes, and locks it. Creates nothing.
fn open_partial(dir: &Folder, name: &str, size: u64) -> io::Result<Found> {
    let file = match locks::open_locked(dir, name, OFlags::RDWR, Mode::empty())? {
        Claim::Locked(file) => file,
        Claim::Busy => return Ok(Found::Busy),
        Claim::Missing => return Ok(Found::Nothing),
    };
    let version = Version::of(&file)?;
    Ok(match version.size > 0 && version.size <= size {
        true => Found::Held(file, version),
        false => Found::Nothing,
    })
}

/// A kept partial, taken out of the index while an upload of the same key runs.
#[derive(Debug)]
struct Kept {
    at: SystemTime,
    size: u64,
    hasher: Option<(Version, blake3::Hasher)>,
}

/// Marks a partial as being written; released on drop. A kept partial it took out of the index
/// and that is still there untouched (the upload wrote no file of its own) is put back then.
#[derive(Debug)]
struct PartialGuard {
    staging: Arc<Staging>,
    key: String,
    kept: Option<Kept>,
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        if let Some(kept) = self.kept.take() {
            if let Some(state) = kept.hasher {
                self.staging.hashers.insert(self.key.clone(), state);
            }
            self.staging
                .kept()
                .insert(self.key.clone(), kept.size, kept.at);
        }
        self.staging.active.remove(&self.key);
    }
}

/// Whether an upload's file exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    /// Not created (yet).
    Later,
    /// Created: removed when the upload ends, unless committed or kept.
    Created,
    /// No longer the upload's: removed, committed or kept. Never created again.
    Ended,
}

/// An upload's file, created when its first block is written. Shared with the blocking task
/// that creates it, so that an upload ended at any moment — even while its file is being
/// created — removes exactly what exists, and nothing is created after it ended.
#[derive(Debug)]
struct LazyFile {
    dir: Arc<Folder>,
    name: String,
    path: PathBuf,
    /// A resumable partial: locked while the upload holds it, and created over an older
    /// partial of the same upload (emptied). Otherwise a fresh file in this server's own
    /// staging folder (`O_EXCL`).
    partial: bool,
    mode: Mode,
    state: Mutex<FileState>,
    /// A partial's lock: a second handle on the file, held from when the upload created or
    /// resumed it until it is committed (after the rename), kept, or removed (after the unlink),
    /// whatever becomes of the handle it writes with.
    lock: Mutex<Option<File>>,
}

impl LazyFile {
    fn state(&self) -> MutexGuard<'_, FileState> {
        // Only ever set by short, panic-free steps.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, Option<File>> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn created(&self) -> bool {
        *self.state() == FileState::Created
    }

    /// Creates the file (blocking), unless the upload already ended. A partial that another
    /// upload is writing right now (on another server) is left alone: an error.
    fn create(&self) -> io::Result<File> {
        let mut state = self.state();
        if *state == FileState::Ended {
            return Err(io::Error::other(
                "the upload ended before its file was created",
            ));
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let file = if self.partial {
            match locks::open_locked(&*self.dir, &self.name, flags, self.mode)? {
                Claim::Locked(file) => {
                    // Replaces an older partial of the same upload, if there was one. Only
                    // then: a truncation makes ext4 allocate and start writing the whole file
                    // when its last handle closes (its protection for files rewritten in
                    // place), which holds up the end of every large upload.
                    if file.metadata()?.len() > 0 {
                        file.set_len(0)?;
                    }
                    *self.lock() = Some(file.try_clone()?);
                    file
                }
                Claim::Busy | Claim::Missing => return Err(busy_partial()),
            }
        } else {
            let fd = rfs::openat(
                &*self.dir,
                self.name.as_str(),
                flags | OFlags::EXCL,
                self.mode,
            )
            .map_err(errno)?;
            File::from(fd)
        };
        *state = FileState::Created;
        Ok(file)
    }

    /// Opens the created file again (blocking), to set its attributes.
    fn reopen(&self) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd =
            rfs::openat(&*self.dir, self.name.as_str(), flags, Mode::empty()).map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Hands the file over (committed or kept): the upload no longer removes it. Returns
    /// whether it exists. Its lock, if any, is held until [`LazyFile::unlock`].
    fn release(&self) -> bool {
        std::mem::replace(&mut *self.state(), FileState::Ended) == FileState::Created
    }

    /// Takes the partial's lock out, to be dropped once the file is where it goes.
    fn unlock(&self) -> Option<File> {
        self.lock().take()
    }

    /// Removes the file if the upload created it (blocking then), and ends it: nothing is
    /// created after. Returns whether there was a file. A partial's lock goes after its name.
    fn remove(&self) -> bool {
        let mut state = self.state();
        let existed = *state == FileState::Created;
        if existed {
            let _ = rfs::unlinkat(&*self.dir, self.name.as_str(), AtFlags::empty());
        }
        *state = FileState::Ended;
        drop(self.unlock());
        existed
    }
}

/// The error of an upload whose partial another upload is writing.
fn busy_partial() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "the same upload is being received on another connection (to this server or another \
         one sharing its folder); try again once it ended",
    )
}

/// An upload being received into a staging file or a resumable partial, owned from
/// [`Root::begin_upload`] to its end. Its steps are the protocol's on the storage side: it
/// [receives](Upload::receive) the body, then is [committed](Upload::commit) under its name,
/// [kept](Upload::keep) for a resume, or [discarded](Upload::discard). Dropped in any other
/// way, its file is removed (a blocking step, when the file was created).
#[derive(Debug)]
pub struct Upload {
    /// The staging file or partial, created with the first block written.
    file: Arc<LazyFile>,
    /// The open file, when created (or resumed) and not failed.
    open: Option<File>,
    /// Storing failed: the file is of no more use.
    failed: bool,
    /// Bytes already held from an interrupted upload when this one began.
    offset: u64,
    /// Bytes in the file now.
    held: u64,
    /// Hash state of the `held` bytes, when the upload is hashed.
    hasher: Option<blake3::Hasher>,
    /// The fewest bytes worth keeping for a resume (`u64::MAX`: never kept).
    keep_from: u64,
    /// The claim on a resumable partial (none for a plain staging file).
    claim: Option<PartialGuard>,
    /// What the stored file's permission bits and modification time are set to at commit.
    attrs: Attributes,
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
    fn staged(staging: &Staging, hasher: Option<blake3::Hasher>) -> Upload {
        let name = staging_name();
        let file = LazyFile {
            dir: Arc::clone(&staging.staging_fd),
            path: staging.staging.join(&name),
            name,
            partial: false,
            mode: Mode::from_raw_mode(0o644),
            state: Mutex::new(FileState::Later),
            lock: Mutex::new(None),
        };
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
        };
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
        self.file.release();
        if let Some(claim) = &mut self.claim {
            // Whatever partial was kept under this name is replaced by this upload's file.
            claim.kept = None;
        }
        let staged = Staged {
            dir: Arc::clone(&self.file.dir),
            name: Some(self.file.name.clone()),
            path: self.file.path.clone(),
        };
        // The claim on the partial, and its lock, end only after this, when it is no longer
        // where it was: no other upload can open it under its name meanwhile.
        let lock = self.file.unlock();
        let committed = staged.commit(target, overwrite);
        drop(lock);
        committed
    }

    /// Keeps an interrupted upload for a later resume, with the hash state of what it holds —
    /// when it is a resumable partial that holds at least [`MIN_KEPT_PARTIAL`] bytes (less
    /// would save a resume too little). Keeping one may remove the oldest others, to stay
    /// within `limits`. Returns whether it was kept; if not, its file is removed. Blocking: run
    /// it on the blocking pool.
    pub fn keep(mut self, limits: &PartialLimits) -> bool {
        drop(self.open.take());
        if self.failed || self.held < self.keep_from || !self.file.created() {
            return false;
        }
        let (Some(mut claim), Some(hasher)) = (self.claim.take(), self.hasher.take()) else {
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
        if self.file.remove() {
            if let Some(claim) = &mut self.claim {
                // This upload's file replaced any partial kept under the same name.
                claim.kept = None;
            }
        }
        // The claim drops after this: it puts back a kept partial this upload left untouched.
    }
}

/// A staged upload: a file in the staging area that is deleted on drop unless committed.
#[derive(Debug)]
pub struct Staged {
    dir: Arc<Folder>,
    name: Option<String>,
    path: PathBuf,
}

impl Staged {
    /// The staging file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the staged file to `target` atomically. Without `overwrite` an existing target is
    /// never replaced, even one created after [`Root::prepare_target`] checked (`exists`).
    pub fn commit(mut self, target: &Target, overwrite: bool) -> Result<(), WireError> {
        let name = self.name.take().expect("committed once");
        let (dir, parent) = (&*self.dir, target.parent.fd());
        let result = if overwrite {
            rfs::renameat(dir, name.as_str(), parent, target.name.as_str())
        } else {
            // A rename that refuses to replace (`renameat2` with `RENAME_NOREPLACE`): one call,
            // atomic. Where the file system does not offer it, a hard link, which fails if the
            // target exists, atomically too, then the staging name is removed.
            match rfs::renameat_with(
                dir,
                name.as_str(),
                parent,
                target.name.as_str(),
                rfs::RenameFlags::NOREPLACE,
            ) {
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                    no_replace_by_link(dir, name.as_str(), parent, target.name.as_str())
                }
                other => other,
            }
        };
        result.map_err(|e| {
            let _ = rfs::unlinkat(dir, name.as_str(), AtFlags::empty());
            match e {
                rustix::io::Errno::EXIST => already_exists(&target.shown),
                rustix::io::Errno::XDEV => WireError::internal(format!(
                    "{}: the destination folder is on another file system than the served root",
                    target.shown
                )),
                e => io_error(&target.shown, &errno(e)),
            }
        })
    }
}

/// Moves `name` in `dir` to `to` in `parent` unless something is there, where `renameat2` with
/// `RENAME_NOREPLACE` is not available: a hard link fails if the target exists, atomically; a
/// rename would replace it.
fn no_replace_by_link(
    dir: &OwnedFd,
    name: &str,
    parent: &OwnedFd,
    to: &str,
) -> Result<(), rustix::io::Errno> {
    match rfs::linkat(dir, name, parent, to, AtFlags::empty()) {
        Ok(()) => {
            let _ = rfs::unlinkat(dir, name, AtFlags::empty());
            Ok(())
        }
        Err(rustix::io::Errno::EXIST) => Err(rustix::io::Errno::EXIST),
        // File systems without hard links: check, then rename (a narrow race remains).
        Err(_) => match rfs::statat(parent, to, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Err(rustix::io::Errno::EXIST),
            Err(_) => rfs::renameat(dir, name, parent, to),
        },
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = rfs::unlinkat(&*self.dir, name.as_str(), AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn setup() -> (tempfile::TempDir, Root) {
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        (root_dir, root)
    }

    #[test]
    fn staged_files_commit_atomically_or_vanish() {
        let (dir, root) = setup();
        let rp = root.check("new/deep/file.bin").unwrap();
        let target = root.prepare_target(&rp, false).unwrap();
        assert!(dir.path().join("new/deep").is_dir());
        let (staged, mut f) = root.stage().unwrap();
        io::Write::write_all(&mut f, b"data").unwrap();
        staged.commit(&target, false).unwrap();
        assert_eq!(fs::read(target.path()).unwrap(), b"data");

        // Without overwrite an existing file wins, and the staging file is removed.
        let (staged, _f) = root.stage().unwrap();
        let err = staged.commit(&target, false).unwrap_err();
        assert_eq!(err.code, ErrorCode::Exists);
        assert_eq!(fs::read(target.path()).unwrap(), b"data");

        // Dropped without commit: gone.
        let (staged, _f) = root.stage().unwrap();
        let p = staged.path().to_owned();
        drop(staged);
        assert!(!p.exists());
        assert_eq!(fs::read_dir(root.staging_dir()).unwrap().count(), 0);
    }

    #[test]
    fn the_index_takes_out_the_oldest_beyond_the_caps() {
        let mut index = KeptIndex::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for i in 0..5 {
            index.insert(format!("p{i}"), 10, t0 + Duration::from_secs(i));
        }
        let limits = PartialLimits {
            ttl: Duration::from_secs(100),
            max_count: 3,
            max_bytes: Some(25),
        };
        // Two over the count, then one more over the bytes.
        let now = t0 + Duration::from_secs(10);
        assert_eq!(index.take_over_limits(&limits, now), ["p0", "p1", "p2"]);
        assert_eq!((index.entries.len(), index.bytes), (2, 20));
        let later = t0 + Duration::from_millis(103_500);
        assert_eq!(index.take_over_limits(&limits, later), ["p3"], "expired");
        assert_eq!((index.entries.len(), index.bytes), (1, 10));
    }

    #[test]
    fn reading_the_folder_again_keeps_what_was_kept_meanwhile() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut index = KeptIndex::default();
        index.insert("gone".into(), 10, t0);
        index.insert("seen".into(), 10, t0);
        let since = index.inserted;
        // While the folder is read: one partial is kept here, another is claimed.
        index.insert("kept meanwhile".into(), 20, t0);
        let mut fresh = KeptIndex::default();
        fresh.insert("seen".into(), 10, t0);
        fresh.insert("claimed".into(), 10, t0);
        fresh.insert("other server's".into(), 30, t0);
        index.replace(fresh, since, |name| name == "claimed");
        let mut names: Vec<_> = index.entries.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["kept meanwhile", "other server's", "seen"]);
        assert_eq!(index.bytes, 60);
    }

    #[test]
    fn start_up_finds_kept_partials_and_drops_those_too_small() {
        let (dir, root) = setup();
        drop(root);
        let partials = dir.path().join(".sft/partial");
        fs::create_dir_all(&partials).unwrap();
        fs::write(partials.join("empty.part"), b"").unwrap();
        fs::write(partials.join("small.part"), b"abc").unwrap();
        fs::write(
            partials.join("held.part"),
            vec![1; MIN_KEPT_PARTIAL as usize],
        )
        .unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(root.expire_partials(&KEEP_NONE), 1, "the kept one is known");
        assert!(!partials.join("empty.part").exists());
        assert!(!partials.join("small.part").exists());
        assert!(!partials.join("held.part").exists());
    }

    const KEEP_ALL: PartialLimits = PartialLimits {
        ttl: Duration::from_secs(3600),
        max_count: 100,
        max_bytes: None,
    };

    const KEEP_NONE: PartialLimits = PartialLimits {
        max_count: 0,
        ..KEEP_ALL
    };

    /// Begins a fresh upload of `rp` (id `u:1`) on `root`, receives `data`, loses the peer and
    /// keeps the partial.
    fn keep_partial(root: &Root, rp: &RemotePath, data: &[u8]) {
        let mut up = root
            .begin_upload(rp, 1 << 20, Some(b"u:1"), true, false)
            .unwrap();
        receive_then_vanish(&mut up, data);
        assert!(up.keep(&KEEP_ALL));
    }

    /// Receives `data` into `upload`, then the source ends early (the peer went away).
    fn receive_then_vanish(upload: &mut Upload, data: &[u8]) {
        let mut src = futures::io::Cursor::new(data.to_vec());
        let mut pace = Pace::new(sft_io::PaceRule::stall(Duration::from_secs(5)));
        let len = data.len() as u64 + 1;
        let got = async_std::task::block_on(upload.receive(&mut src, len, &mut pace, |_| {}));
        assert!(matches!(got, Err(Interrupted::Peer(_))), "{got:?}");
    }

    fn partials(dir: &tempfile::TempDir) -> Vec<(String, u64)> {
        let mut out: Vec<_> = fs::read_dir(dir.path().join(".sft/partial"))
            .unwrap()
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, e.metadata().unwrap().len())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn an_upload_too_small_to_keep_creates_no_file() {
        let (dir, root) = setup();
        let rp = root.check("f.bin").unwrap();
        for data in [&b""[..], b"abc", &[7; MIN_KEPT_PARTIAL as usize - 1]] {
            let mut upload = root
                .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, false)
                .unwrap();
            receive_then_vanish(&mut upload, data);
            assert!(!upload.holds_file(), "{} bytes", data.len());
            assert!(!upload.keep(&KEEP_ALL));
            assert_eq!(partials(&dir), [], "{} bytes", data.len());
        }
        let mut plain = root.begin_upload(&rp, 10, None, false, false).unwrap();
        receive_then_vanish(&mut plain, b"abc");
        assert!(!plain.holds_file());
        assert_eq!(fs::read_dir(root.staging_dir()).unwrap().count(), 0);
    }

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
        let mut again = root
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, false)
            .unwrap();
        receive_then_vanish(&mut again, b"");
        assert!(!again.keep(&KEEP_ALL));
        assert_eq!(partials(&dir), kept);
        let resumed = root
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, true)
            .unwrap();
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

    /// Two servers over one root: two openings of it, each with its staging area (locks are
    /// per open file, so they exclude each other as two processes do).
    fn two_servers() -> (tempfile::TempDir, Root, Root) {
        let dir = tempfile::tempdir().unwrap();
        let a = Root::open(dir.path()).unwrap();
        let b = Root::open(dir.path()).unwrap();
        (dir, a, b)
    }

    fn hash_of(data: &[u8]) -> Option<blake3::Hash> {
        Some(blake3::hash(data))
    }

    #[test]
    fn two_servers_never_write_one_partial_at_once() {
        let (dir, a, b) = two_servers();
        let rp = a.check("f.bin").unwrap();
        let data = vec![7; MIN_KEPT_PARTIAL as usize + 10];
        // A receives part of the upload: its partial exists, locked, not kept yet.
        let mut on_a = a
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, false)
            .unwrap();
        receive_then_vanish(&mut on_a, &data);
        assert!(on_a.holds_file());
        let writing = partials(&dir);
        assert_eq!(writing.len(), 1);

        // The same upload on B, resumed or afresh, stages separately from the start, and
        // completes.
        let whole = vec![7; 1 << 20];
        for resume in [true, false] {
            let mut on_b = b
                .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, resume)
                .unwrap();
            assert_eq!(on_b.offset(), 0, "resume: {resume}");
            let mut src = futures::io::Cursor::new(whole.clone());
            let mut pace = Pace::new(sft_io::PaceRule::stall(Duration::from_secs(5)));
            let got = on_b.receive(&mut src, whole.len() as u64, &mut pace, |_| {});
            async_std::task::block_on(got).unwrap();
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
        let on_b = b
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, true)
            .unwrap();
        assert_eq!(on_b.offset(), data.len() as u64);
        assert_eq!(on_b.hash(), hash_of(&data));
        // …and holds it now: A's expiry leaves it alone.
        assert_eq!(a.expire_partials(&none), 0);
        assert_eq!(partials(&dir), writing);
        drop(on_b);
        assert_eq!(partials(&dir), [], "dropped unkept, it is removed");
    }

    #[test]
    fn a_partial_another_server_locked_after_this_one_began_is_not_written() {
        let (dir, a, b) = two_servers();
        let rp = a.check("f.bin").unwrap();
        let data = vec![7; MIN_KEPT_PARTIAL as usize + 10];
        // A begins afresh: nothing on disk yet, so its file is only created with its first block.
        let mut on_a = a
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, false)
            .unwrap();
        // Meanwhile B begins the same upload and writes its partial.
        let mut on_b = b
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, false)
            .unwrap();
        receive_then_vanish(&mut on_b, &data);
        // A's first block finds the partial locked: A fails, without writing it.
        let mut src = futures::io::Cursor::new(vec![1u8; 1000]);
        let mut pace = Pace::new(sft_io::PaceRule::stall(Duration::from_secs(5)));
        let got = async_std::task::block_on(on_a.receive(&mut src, 1000, &mut pace, |_| {}));
        match got {
            Err(Interrupted::Storage(e)) => assert_eq!(e.kind(), io::ErrorKind::ResourceBusy),
            other => panic!("{other:?}"),
        }
        drop(on_a);
        assert!(on_b.keep(&KEEP_ALL));
        let kept = partials(&dir);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1, data.len() as u64);
    }

    #[test]
    fn expiry_counts_and_ages_the_partials_every_server_kept() {
        let (dir, a, b) = two_servers();
        // B is running (its staging area loaded) before A keeps anything.
        drop(b.stage().unwrap());
        assert_eq!(b.expire_partials(&KEEP_ALL), 0);
        for (name, fill) in [("old.bin", 1), ("new.bin", 2)] {
            let rp = a.check(name).unwrap();
            keep_partial(&a, &rp, &[fill; MIN_KEPT_PARTIAL as usize]);
        }
        let kept = partials(&dir);
        assert_eq!(kept.len(), 2);
        // The first one A kept is a day old.
        let day_old = SystemTime::now() - Duration::from_secs(24 * 3600);
        let files: Vec<_> = fs::read_dir(dir.path().join(".sft/partial"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        let oldest = files
            .iter()
            .min_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
            .unwrap()
            .clone();
        fs::File::options()
            .write(true)
            .open(&oldest)
            .unwrap()
            .set_modified(day_old)
            .unwrap();
        let hour = PartialLimits {
            ttl: Duration::from_secs(3600),
            ..KEEP_ALL
        };
        assert_eq!(b.expire_partials(&hour), 1, "B ages what A kept");
        assert!(!oldest.exists());
        assert_eq!(b.expire_partials(&KEEP_NONE), 1, "B counts what A kept");
        assert_eq!(partials(&dir), []);
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
        let resumed = b
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, true)
            .unwrap();
        assert_eq!(resumed.offset(), second.len() as u64);
        assert_eq!(resumed.hash(), hash_of(&second));
    }
}
