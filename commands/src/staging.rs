//! Where uploads are received before they are renamed into place: plain staging files in
//! `.sft/tmp/` (removed if the upload fails) and resumable *partials* in `.sft/partial/` (kept
//! when an upload breaks off, so that it can be continued, until they expire).
//!
//! Partials cost little however many clients abandon uploads: an empty one is never kept, at
//! most `--max-partials` are (together at most `--max-upload-bytes`), and what expiry needs —
//! each kept partial's size and age — is held in memory ([`KeptIndex`]), read from the folder
//! once at start-up and updated as partials are kept, resumed and removed, so keeping one costs
//! `O(log n)`, never a scan of the others.
//!
//! All methods here block on the file system; async callers run them with
//! [`async_std::task::spawn_blocking`].

use crate::body::{stream_to_file, CopyError, Sink};
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

/// The staging area of a served root: its two folders and what is known about them.
#[derive(Debug)]
pub(crate) struct Staging {
    staging: PathBuf,
    pub(crate) staging_fd: Arc<OwnedFd>,
    partial: PathBuf,
    pub(crate) partial_fd: Arc<OwnedFd>,
    counter: AtomicU64,
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
        self.remove(&name);
        self.by_age.insert((at, name.clone()));
        self.entries.insert(name, (at, size));
        self.bytes += size;
    }

    /// Forgets `name` (it is being written again, or it is gone).
    fn remove(&mut self, name: &str) {
        if let Some((at, size)) = self.entries.remove(name) {
            self.by_age.remove(&(at, name.to_owned()));
            self.bytes -= size;
        }
    }

    /// Takes out, oldest first, the partials older than the limits' lifetime and those beyond
    /// their caps, and returns their names.
    fn take_over_limits(&mut self, limits: &PartialLimits, now: SystemTime) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((at, name)) = self.by_age.first() {
            let expired = now.duration_since(*at).is_ok_and(|age| age > limits.ttl);
            let over = self.entries.len() > limits.max_count
                || limits.max_bytes.is_some_and(|max| self.bytes > max);
            if !expired && !over {
                break;
            }
            let name = name.clone();
            self.remove(&name);
            out.push(name);
        }
        out
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
            counter: AtomicU64::new(0),
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
    fn enforce(&self, limits: &PartialLimits) -> usize {
        let victims = self.kept().take_over_limits(limits, SystemTime::now());
        for name in &victims {
            self.remove_partial(name);
        }
        victims.len()
    }
}

/// Reads the partials left in the folder (by an earlier run) into an index, once at start-up,
/// so that they can still be resumed; empty ones, of no use to a resume, are removed.
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
        if st.st_size <= 0 {
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
    /// breaks, and the upload is hashed. With `resume`, an existing partial is continued (the
    /// returned offset says from where) with its hash state; otherwise it is started afresh.
    /// Without a key the upload goes to a plain staging file, removed if anything fails, and is
    /// hashed only if `hash` says so.
    pub fn begin_upload(
        &self,
        rp: &RemotePath,
        size: u64,
        key: Option<&[u8]>,
        hash: bool,
        resume: bool,
    ) -> io::Result<Upload> {
        let Some(key) = key else {
            let (staged, file) = self.stage()?;
            return Ok(Upload {
                staged,
                file: Some(file),
                offset: 0,
                held: 0,
                hasher: hash.then(blake3::Hasher::new),
                claim: None,
            });
        };
        let key = partial_key(rp, size, key);
        let staging = self.reserved()?;
        if staging.active.insert(key.clone(), ()).is_some() {
            // The same upload is already running on another connection: do not share its
            // partial; this one stages separately and is not resumable.
            let (staged, file) = self.stage()?;
            return Ok(Upload {
                staged,
                file: Some(file),
                offset: 0,
                held: 0,
                hasher: Some(blake3::Hasher::new()),
                claim: None,
            });
        }
        let guard = PartialGuard {
            staging: Arc::clone(&staging),
            key: key.clone(),
        };
        // Claimed: it is no longer a kept partial that expiry may remove, but this upload's.
        staging.kept().remove(&key);
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rfs::openat(
            &*staging.partial_fd,
            key.as_str(),
            flags,
            Mode::from_raw_mode(0o600),
        )
        .map_err(errno)?;
        let file = File::from(fd);
        let held = file.metadata()?.len();
        let saved = staging.hashers.remove(&key).map(|(_, state)| state);
        let (offset, hasher) = if resume && held <= size && held > 0 {
            let hasher = match saved {
                Some((len, hasher)) if len == held => hasher,
                // No state in memory (e.g. the server restarted): re-read the partial once.
                _ => {
                    let mut hasher = blake3::Hasher::new();
                    crate::body::hash_prefix(&file, &mut hasher, held)?;
                    hasher
                }
            };
            (held, hasher)
        } else {
            file.set_len(0)?;
            (0, blake3::Hasher::new())
        };
        let mut file = file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(offset))?;
        let staged = Staged {
            dir: Arc::clone(&staging.partial_fd),
            path: staging.partial.join(&key),
            name: Some(key),
        };
        Ok(Upload {
            staged,
            file: Some(file),
            offset,
            held: offset,
            hasher: Some(hasher),
            claim: Some(guard),
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
            let n = staging.counter.fetch_add(1, Ordering::Relaxed);
            let name = format!("{}-{n}.part", std::process::id());
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

/// The name of the partial for an upload of `size` bytes at `rp` identified by `key`.
fn partial_key(rp: &RemotePath, size: u64, key: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(rp.to_string().as_bytes())
        .update(b"\0")
        .update(&size.to_le_bytes())
        .update(key);
    format!("{}.part", &h.finalize().to_hex()[..32])
}

/// Marks a partial as being written; released on drop.
#[derive(Debug)]
struct PartialGuard {
    staging: Arc<Staging>,
    key: String,
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        self.staging.active.remove(&self.key);
    }
}

/// An upload being received into a staging file or a resumable partial, owned from
/// [`Root::begin_upload`] to its end. Its steps are the protocol's on the storage side: it
/// [receives](Upload::receive) the body, then is [committed](Upload::commit) under its name,
/// [kept](Upload::keep) for a resume, or [discarded](Upload::discard). Dropped in any other
/// way, its file is removed.
#[derive(Debug)]
pub struct Upload {
    /// The staging file or partial, removed on drop unless committed or kept.
    staged: Staged,
    /// The open file, positioned at `held`; `None` once storing failed.
    file: Option<File>,
    /// Bytes already held from an interrupted upload when this one began.
    offset: u64,
    /// Bytes in the file now.
    held: u64,
    /// Hash state of the `held` bytes, when the upload is hashed.
    hasher: Option<blake3::Hasher>,
    /// The claim on a resumable partial (none for a plain staging file).
    claim: Option<PartialGuard>,
}

/// Why receiving a body stopped early.
#[derive(Debug)]
pub(crate) enum Interrupted {
    /// The peer vanished, stalled or ended the body early: what arrived is in the file.
    Peer(io::Error),
    /// Storing failed (disk full, quota…): the file is of no more use.
    Storage(io::Error),
}

impl Upload {
    /// Bytes already held when the upload began (from an interrupted one): the body starts here.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Receives the next `len` bytes from `src` into the file, hashing them if the upload is
    /// hashed; `progress` is called with each count of bytes read. After
    /// [`Interrupted::Peer`] the bytes that did arrive are held (and may be kept); after
    /// [`Interrupted::Storage`] nothing more can be stored.
    pub(crate) async fn receive<R>(
        &mut self,
        src: &mut R,
        len: u64,
        pace: &mut Pace,
        mut progress: impl FnMut(u64),
    ) -> Result<(), Interrupted>
    where
        R: futures::AsyncRead + Unpin + ?Sized,
    {
        let Some(file) = self.file.take() else {
            return Err(Interrupted::Storage(io::Error::other(
                "the upload's file failed earlier",
            )));
        };
        let sink = Sink {
            file,
            hasher: self.hasher.take(),
        };
        let mut got = 0;
        let received = stream_to_file(src, sink, len, pace, |n| {
            got += n;
            progress(n);
        })
        .await;
        match received {
            Ok(sink) => {
                (self.file, self.hasher) = (Some(sink.file), sink.hasher);
                self.held += len;
                Ok(())
            }
            Err((CopyError::Read(e), Some(sink))) => {
                (self.file, self.hasher) = (Some(sink.file), sink.hasher);
                self.held += got;
                Err(Interrupted::Peer(e))
            }
            Err((CopyError::Read(e), None)) => Err(Interrupted::Peer(e)),
            Err((CopyError::Write(e), _)) => Err(Interrupted::Storage(e)),
        }
    }

    /// The hash of every byte held, when the upload is hashed.
    pub fn hash(&self) -> Option<blake3::Hash> {
        self.hasher.as_ref().map(blake3::Hasher::finalize)
    }

    /// Moves the file under its name at `target` (blocking); see [`Staged::commit`].
    pub fn commit(mut self, target: &Target, overwrite: bool) -> Result<(), WireError> {
        drop(self.file.take());
        let committed = self.staged.take().commit(target, overwrite);
        // The claim on the partial ends only now, when it is no longer where it was.
        drop(self.claim.take());
        committed
    }

    /// Keeps an interrupted upload for a later resume, with the hash state of what it holds —
    /// when it is a resumable partial that holds anything (an empty one would save a resume
    /// nothing). Keeping one may remove the oldest others, to stay within `limits`. Returns
    /// whether it was kept. Blocking: run it on the blocking pool.
    pub fn keep(mut self, limits: &PartialLimits) -> bool {
        drop(self.file.take());
        let (Some(claim), Some(hasher)) = (self.claim.take(), self.hasher.take()) else {
            return false;
        };
        if self.held == 0 {
            return false;
        }
        self.staged.name = None;
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

/// A staged upload: a file in the staging area that is deleted on drop unless committed.
#[derive(Debug)]
pub struct Staged {
    dir: Arc<OwnedFd>,
    name: Option<String>,
    path: PathBuf,
}

impl Staged {
    /// Moves the claim on the file out of `self` (which then removes nothing on drop).
    fn take(&mut self) -> Staged {
        Staged {
            dir: Arc::clone(&self.dir),
            name: self.name.take(),
            path: std::mem::take(&mut self.path),
        }
    }

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
            // A hard link fails if the target exists, atomically; a rename would replace it.
            match rfs::linkat(
                dir,
                name.as_str(),
                parent,
                target.name.as_str(),
                AtFlags::empty(),
            ) {
                Ok(()) => {
                    let _ = rfs::unlinkat(dir, name.as_str(), AtFlags::empty());
                    Ok(())
                }
                Err(rustix::io::Errno::EXIST) => Err(rustix::io::Errno::EXIST),
                // File systems without hard links: check, then rename (a narrow race remains).
                Err(_) => {
                    match rfs::statat(parent, target.name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(_) => Err(rustix::io::Errno::EXIST),
                        Err(_) => rfs::renameat(dir, name.as_str(), parent, target.name.as_str()),
                    }
                }
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
    fn start_up_finds_kept_partials_and_drops_empty_ones() {
        let (dir, root) = setup();
        drop(root);
        let partials = dir.path().join(".sft/partial");
        fs::create_dir_all(&partials).unwrap();
        fs::write(partials.join("empty.part"), b"").unwrap();
        fs::write(partials.join("held.part"), b"abc").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let none = PartialLimits {
            ttl: Duration::from_secs(3600),
            max_count: 0,
            max_bytes: None,
        };
        assert_eq!(root.expire_partials(&none), 1, "the kept one is known");
        assert!(!partials.join("empty.part").exists());
        assert!(!partials.join("held.part").exists());
    }
}
