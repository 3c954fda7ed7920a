//! Where uploads are received before they are renamed into place: plain staging files in
//! `.sft/tmp/` (removed if the upload fails) and resumable *partials* in `.sft/partial/` (kept
//! when an upload breaks off, so that it can be continued, until they expire).
//!
//! Abandoned uploads cost little however many clients abandon them. An upload's file is created
//! only when its first block is written, so one that carries nothing costs the file system
//! nothing; a partial holding less than [`MIN_KEPT_PARTIAL`] bytes is never kept (re-sending
//! that costs less than keeping, indexing and later evicting a file); at most `--max-partials`
//! are kept (together at most `--max-upload-bytes`), and what expiry needs —
//! each kept partial's size and age — is held in memory ([`KeptIndex`]), read from the folder
//! once at start-up and updated as partials are kept, resumed and removed, so keeping one costs
//! `O(log n)`, never a scan of the others.
//!
//! All methods here block on the file system; async callers run them with
//! [`async_std::task::spawn_blocking`].

use crate::attributes::{settle, Attributes};
use crate::body::{stream_to_file, CopyError, Dest, Sink, Stopped};
use crate::sandbox::{clean_dir, io_error, Root, Target, PARTIAL_DIR, STAGING_DIR};
use dashmap::DashMap;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use sft_io::Pace;
use sft_protocol::{ErrorCode, RemotePath, WireError};
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Hash states of interrupted uploads kept in memory, at most (beyond: re-hash from disk).
const MAX_SAVED_HASHERS: usize = 1024;

/// The fewest bytes an interrupted upload must hold to be kept for a resume: 64 KiB. Sending
/// that much again costs a client less than the server spends keeping, indexing and later
/// evicting a file, and abandoned uploads below it cost no file-system work at all.
pub const MIN_KEPT_PARTIAL: u64 = 64 * 1024;

/// Names of plain staging files: unique within the process (with its id, among processes).
static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The staging area of a served root: its two folders and what is known about them.
#[derive(Debug)]
pub(crate) struct Staging {
    staging: PathBuf,
    pub(crate) staging_fd: Arc<OwnedFd>,
    partial: PathBuf,
    pub(crate) partial_fd: Arc<OwnedFd>,
    /// Partials being written right now (one writer each).
    active: DashMap<String, ()>,
    /// The hash state of each kept partial, so resuming need not re-read it.
    hashers: DashMap<String, (u64, blake3::Hasher)>,
    /// The partials kept for a resume (not those being written).
    kept: Mutex<KeptIndex>,
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

/// The kept partials' sizes and ages, oldest first: all that expiry and the caps need, so that
/// they never read the folder.
#[derive(Debug, Default)]
struct KeptIndex {
    /// Name → (when it was kept, its size).
    entries: HashMap<String, (SystemTime, u64)>,
    /// (When kept, name), oldest first.
    by_age: BTreeSet<(SystemTime, String)>,
    /// The sum of the sizes.
    bytes: u64,
}

impl KeptIndex {
    fn insert(&mut self, name: String, size: u64, at: SystemTime) {
        self.take(&name);
        self.by_age.insert((at, name.clone()));
        self.entries.insert(name, (at, size));
        self.bytes += size;
    }

    /// Forgets `name` (it is being written again, or it is gone); returns when it was kept
    /// and its size.
    fn take(&mut self, name: &str) -> Option<(SystemTime, u64)> {
        let (at, size) = self.entries.remove(name)?;
        self.by_age.remove(&(at, name.to_owned()));
        self.bytes -= size;
        Some((at, size))
    }

    /// Takes out the oldest partial if it is older than the limits' lifetime or beyond their
    /// caps, and returns its name.
    fn take_one_over_limits(&mut self, limits: &PartialLimits, now: SystemTime) -> Option<String> {
        let (at, name) = self.by_age.first()?;
        let expired = now.duration_since(*at).is_ok_and(|age| age > limits.ttl);
        let over = self.entries.len() > limits.max_count
            || limits.max_bytes.is_some_and(|max| self.bytes > max);
        if !expired && !over {
            return None;
        }
        let name = name.clone();
        self.take(&name);
        Some(name)
    }

    /// Takes out, oldest first, the partials older than the limits' lifetime and those beyond
    /// their caps, and returns their names.
    #[cfg(test)]
    fn take_over_limits(&mut self, limits: &PartialLimits, now: SystemTime) -> Vec<String> {
        std::iter::from_fn(|| self.take_one_over_limits(limits, now)).collect()
    }
}

impl Staging {
    /// The staging folders `staging_fd` and `partial_fd` inside the reserved folder at `path`,
    /// both open: reads what an earlier run kept.
    pub(crate) fn open(
        staging_fd: OwnedFd,
        partial_fd: OwnedFd,
        path: &Path,
    ) -> io::Result<Staging> {
        let kept = Mutex::new(load_kept(&partial_fd)?);
        Ok(Staging {
            staging: path.join(STAGING_DIR),
            staging_fd: Arc::new(staging_fd),
            partial: path.join(PARTIAL_DIR),
            partial_fd: Arc::new(partial_fd),
            active: DashMap::new(),
            hashers: DashMap::new(),
            kept,
        })
    }

    fn kept(&self) -> MutexGuard<'_, KeptIndex> {
        // The index is only ever changed by short, panic-free steps: a poisoned lock still
        // holds a consistent index.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes a partial that is no longer kept.
    fn remove_partial(&self, name: &str) {
        let _ = rfs::unlinkat(&*self.partial_fd, name, AtFlags::empty());
        self.hashers.remove(name);
    }

    /// Removes the partials beyond `limits`, oldest first; returns how many went.
    ///
    /// Each is removed while the index is locked: an upload claiming the same name (which takes
    /// it out of the index under the same lock) either came first, and the partial is its own
    /// now, or comes after, and finds no file.
    fn enforce(&self, limits: &PartialLimits) -> usize {
        let now = SystemTime::now();
        let mut removed = 0;
        loop {
            let mut kept = self.kept();
            let Some(name) = kept.take_one_over_limits(limits, now) else {
                return removed;
            };
            self.remove_partial(&name);
            drop(kept);
            removed += 1;
        }
    }
}

/// Reads the partials left in the folder (by an earlier run) into an index, once at start-up,
/// so that they can still be resumed; those too small to be kept (see [`MIN_KEPT_PARTIAL`]),
/// of little use to a resume, are removed.
fn load_kept(partial_fd: &OwnedFd) -> io::Result<KeptIndex> {
    let mut index = KeptIndex::default();
    for entry in rfs::Dir::read_from(partial_fd).map_err(errno)? {
        let entry = entry.map_err(errno)?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        let Ok(st) = rfs::statat(partial_fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            continue;
        }
        if (st.st_size.max(0) as u64) < MIN_KEPT_PARTIAL {
            let _ = rfs::unlinkat(partial_fd, name, AtFlags::empty());
            continue;
        }
        let mtime = SystemTime::UNIX_EPOCH
            + Duration::new(
                st.st_mtime.max(0) as u64,
                st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
            );
        index.insert(name.to_owned(), st.st_size as u64, mtime);
    }
    Ok(index)
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

fn already_exists(shown: &impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Exists, format!("{shown} already exists"))
}

impl Root {
    /// Removes every file in the staging area (uploads that can no longer complete).
    /// Writes nothing if no upload ever needed the staging area.
    pub fn clean_staging(&self) -> io::Result<usize> {
        match self.handle().loaded() {
            Some(staging) => clean_dir(&staging.staging_fd),
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
        let file = match resume {
            true => open_partial(&staging.partial_fd, &key, size)?,
            false => None,
        };
        let lazy = LazyFile {
            dir: Arc::clone(&staging.partial_fd),
            path: staging.partial.join(&key),
            name: key,
            flags: OFlags::TRUNC,
            mode: Mode::from_raw_mode(0o600),
            state: Mutex::new(FileState::Later),
        };
        let Some((file, held)) = file else {
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
        };
        // Resumed: the partial is this upload's now, with the hash state of what it holds.
        let saved = claim.kept.take().and_then(|kept| kept.hasher);
        *lazy.state() = FileState::Created;
        let hasher = match saved {
            Some((len, hasher)) if len == held => hasher,
            // No state in memory (e.g. the server restarted): re-read the partial once.
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
    /// more are kept than the limits allow. Partials being written are left alone. Returns how
    /// many went. Works from the in-memory index: the cost is that of the removals only.
    ///
    /// Writes nothing where no reserved folder exists yet (a server that never received an
    /// upload); where one does (an earlier run's), loads it, which also removes its staging
    /// debris. Only a writable server calls this.
    pub fn expire_partials(&self, limits: &PartialLimits) -> usize {
        match self.present_reserved() {
            Ok(Some(staging)) => staging.enforce(limits),
            _ => 0,
        }
    }

    /// The folder uploads are staged in before they are renamed into place.
    pub fn staging_dir(&self) -> PathBuf {
        self.dir()
            .join(crate::sandbox::RESERVED_DIR)
            .join(STAGING_DIR)
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

/// Opens the existing partial `name` to be continued, if there is one holding part of an upload
/// of `size` bytes: the file and how much it holds. Creates nothing.
fn open_partial(dir: &OwnedFd, name: &str, size: u64) -> io::Result<Option<(File, u64)>> {
    let flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let file = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(errno(e)),
    };
    let held = file.metadata()?.len();
    Ok((held > 0 && held <= size).then_some((file, held)))
}

/// A kept partial, taken out of the index while an upload of the same key runs.
#[derive(Debug)]
struct Kept {
    at: SystemTime,
    size: u64,
    hasher: Option<(u64, blake3::Hasher)>,
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
    dir: Arc<OwnedFd>,
    name: String,
    path: PathBuf,
    /// Added to the flags it is created with: `EXCL` (a staging file) or `TRUNC` (a partial,
    /// replacing an older one of the same upload).
    flags: OFlags,
    mode: Mode,
    state: Mutex<FileState>,
}

impl LazyFile {
    fn state(&self) -> MutexGuard<'_, FileState> {
        // Only ever set by short, panic-free steps.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn created(&self) -> bool {
        *self.state() == FileState::Created
    }

    /// Creates the file (blocking), unless the upload already ended.
    fn create(&self) -> io::Result<File> {
        let mut state = self.state();
        if *state == FileState::Ended {
            return Err(io::Error::other(
                "the upload ended before its file was created",
            ));
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rfs::openat(
            &*self.dir,
            self.name.as_str(),
            flags | self.flags,
            self.mode,
        )
        .map_err(errno)?;
        *state = FileState::Created;
        Ok(File::from(fd))
    }

    /// Opens the created file again (blocking), to set its attributes.
    fn reopen(&self) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd =
            rfs::openat(&*self.dir, self.name.as_str(), flags, Mode::empty()).map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Hands the file over (committed or kept): the upload no longer removes it. Returns
    /// whether it exists.
    fn release(&self) -> bool {
        std::mem::replace(&mut *self.state(), FileState::Ended) == FileState::Created
    }

    /// Removes the file if the upload created it (blocking then), and ends it: nothing is
    /// created after. Returns whether there was a file.
    fn remove(&self) -> bool {
        let mut state = self.state();
        let existed = *state == FileState::Created;
        if existed {
            let _ = rfs::unlinkat(&*self.dir, self.name.as_str(), AtFlags::empty());
        }
        *state = FileState::Ended;
        existed
    }
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
            flags: OFlags::EXCL,
            mode: Mode::from_raw_mode(0o644),
            state: Mutex::new(FileState::Later),
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
        // The claim on the partial ends only after this, when it is no longer where it was.
        staged.commit(target, overwrite)
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
        // place to restore.
        self.file.release();
        claim.kept = None;
        let staging = &claim.staging;
        let hashers = &staging.hashers;
        if hashers.len() >= MAX_SAVED_HASHERS {
            let victim = hashers.iter().next().map(|e| e.key().clone());
            if let Some(victim) = victim {
                hashers.remove(&victim);
            }
        }
        hashers.insert(claim.key.clone(), (self.held, hasher));
        staging
            .kept()
            .insert(claim.key.clone(), self.held, SystemTime::now());
        staging.enforce(limits);
        let still_kept = staging.kept().entries.contains_key(&claim.key);
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
    dir: Arc<OwnedFd>,
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
        let none = PartialLimits {
            ttl: Duration::from_secs(3600),
            max_count: 0,
            max_bytes: None,
        };
        assert_eq!(root.expire_partials(&none), 1, "the kept one is known");
        assert!(!partials.join("empty.part").exists());
        assert!(!partials.join("small.part").exists());
        assert!(!partials.join("held.part").exists());
    }

    const KEEP_ALL: PartialLimits = PartialLimits {
        ttl: Duration::from_secs(3600),
        max_count: 100,
        max_bytes: None,
    };

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
        let mut first = root
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, false)
            .unwrap();
        receive_then_vanish(&mut first, &big);
        assert!(first.keep(&KEEP_ALL));
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
        let mut first = root
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, false)
            .unwrap();
        receive_then_vanish(&mut first, &big);
        assert!(first.keep(&KEEP_ALL));
        let mut fresh = root
            .begin_upload(&rp, 1 << 20, Some(b"u:1"), true, false)
            .unwrap();
        receive_then_vanish(&mut fresh, &big[..MIN_KEPT_PARTIAL as usize]);
        assert!(fresh.keep(&KEEP_ALL));
        assert_eq!(partials(&dir)[0].1, MIN_KEPT_PARTIAL);
        let none = PartialLimits {
            max_count: 0,
            ..KEEP_ALL
        };
        assert_eq!(root.expire_partials(&none), 1, "indexed once");
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
