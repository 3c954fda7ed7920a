//! The served root: every path a client names is resolved here, and only here.
//!
//! Two gates guard it. [`sft_protocol::normalize`] refuses absolute paths and `..` that climbs
//! out, lexically. Then [`Root`] resolves what is left **component by component**, from an open
//! handle on the root folder (`openat` with `O_NOFOLLOW`): a symlink is read and its target
//! resolved the same way, so it is followed only while it stays inside the root. The final
//! open, the final rename and every folder created go through the folder handle that resolution
//! produced, never through a path string — so a parent folder swapped for a symlink in the
//! middle of a transfer cannot redirect a read or a write out of the root. The walk is in
//! `sandbox/resolve.rs`; the root's own handle, and what happens when the root vanishes, in
//! `sandbox/handle.rs`.
//!
//! The top-level folder `.sft/` is reserved: uploads are staged in `.sft/tmp/` and renamed into
//! place when complete. Clients can neither read nor write anything in it by any name. It is
//! created when the first upload needs it, never by opening the root.
//!
//! All methods here block on the file system; async callers run them with
//! [`async_std::task::spawn_blocking`].

mod handle;
mod resolve;

use crate::hashes::HashCache;
use dashmap::DashMap;
use handle::RootHandle;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use sft_protocol::{ErrorCode, RemotePath, WireError};
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

pub(crate) use handle::FileId;
pub(crate) use resolve::is_partial_download;
pub use resolve::{Folder, Kind, Target};

/// The name, at the top of the root, of the folder sft keeps its own state in.
pub const RESERVED_DIR: &str = ".sft";
/// The suffix of a client's partial download (`.NAME.sft-part`); such files are not listed.
pub const PARTIAL_SUFFIX: &str = ".sft-part";
pub(crate) const STAGING_DIR: &str = "tmp";
pub(crate) const PARTIAL_DIR: &str = "partial";
/// Hash states of interrupted uploads kept in memory, at most (beyond: re-hash from disk).
const MAX_SAVED_HASHERS: usize = 1024;

/// The served folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Root {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// The root folder as opened; replaced if it vanishes and a folder returns at `dir`.
    handle: RwLock<Arc<RootHandle>>,
    /// When the root was opened, and (milliseconds since then) last checked for vanishing.
    opened: Instant,
    checked_ms: AtomicU64,
    /// Whether the root is known to have vanished (so that it is logged once).
    vanished: AtomicBool,
    staging: PathBuf,
    counter: AtomicU64,
    hashes: HashCache,
    /// Partials being written right now (one writer each).
    active: DashMap<String, ()>,
    /// The hash state of each kept partial, so resuming need not re-read it.
    hashers: DashMap<String, (u64, blake3::Hasher)>,
}

/// Maps an I/O error met while serving `what` to a wire error a person can act on.
pub fn io_error(what: &str, e: &io::Error) -> WireError {
    match e.kind() {
        io::ErrorKind::NotFound => WireError::new(
            ErrorCode::NotFound,
            format!("no such file or folder: {what}"),
        ),
        io::ErrorKind::PermissionDenied => {
            WireError::new(ErrorCode::Forbidden, format!("permission denied: {what}"))
        }
        _ => WireError::internal(format!("{what}: {e}")),
    }
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl Root {
    /// Opens `dir` as the served root. Only reads: the staging area is created, and debris a
    /// crash left in it removed, when the first upload needs it.
    pub fn open(dir: &Path) -> io::Result<Root> {
        let dir = fs::canonicalize(dir)?;
        let handle = RootHandle::open(&dir)?;
        let staging = dir.join(RESERVED_DIR).join(STAGING_DIR);
        Ok(Root {
            inner: Arc::new(Inner {
                dir,
                handle: RwLock::new(Arc::new(handle)),
                opened: Instant::now(),
                checked_ms: AtomicU64::new(0),
                vanished: AtomicBool::new(false),
                staging,
                counter: AtomicU64::new(0),
                hashes: HashCache::default(),
                active: DashMap::new(),
                hashers: DashMap::new(),
            }),
        })
    }

    /// Removes every file in the staging area (uploads that can no longer complete).
    pub fn clean_staging(&self) -> io::Result<usize> {
        match self.existing_reserved(STAGING_DIR)? {
            Some(staging_fd) => clean_dir(&staging_fd),
            None => Ok(0),
        }
    }

    /// The cache of served files' BLAKE3 hashes.
    pub fn hashes(&self) -> &HashCache {
        &self.inner.hashes
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
                file,
                offset: 0,
                hasher: hash.then(blake3::Hasher::new),
                partial: None,
            });
        };
        let key = partial_key(rp, size, key);
        if self.inner.active.insert(key.clone(), ()).is_some() {
            // The same upload is already running on another connection: do not share its
            // partial; this one stages separately and is not resumable.
            let (staged, file) = self.stage()?;
            return Ok(Upload {
                staged,
                file,
                offset: 0,
                hasher: Some(blake3::Hasher::new()),
                partial: None,
            });
        }
        let guard = PartialGuard {
            root: self.clone(),
            key: key.clone(),
        };
        let partial_fd = Arc::clone(&self.reserved()?.partial_fd);
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rfs::openat(
            &*partial_fd,
            key.as_str(),
            flags,
            Mode::from_raw_mode(0o600),
        )
        .map_err(errno)?;
        let file = File::from(fd);
        let held = file.metadata()?.len();
        let saved = self.inner.hashers.remove(&key).map(|(_, state)| state);
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
            dir: partial_fd,
            path: self
                .inner
                .dir
                .join(RESERVED_DIR)
                .join(PARTIAL_DIR)
                .join(&key),
            name: Some(key),
        };
        Ok(Upload {
            staged,
            file,
            offset,
            hasher: Some(hasher),
            partial: Some(guard),
        })
    }

    /// Removes partials older than `ttl`, then the oldest ones until all partials together take
    /// at most `max_total` bytes. Partials being written are left alone. Returns how many went.
    pub fn expire_partials(
        &self,
        ttl: std::time::Duration,
        max_total: Option<u64>,
    ) -> io::Result<usize> {
        let Some(partial_fd) = self.existing_reserved(PARTIAL_DIR)? else {
            return Ok(0);
        };
        let partial_fd = &*partial_fd;
        let now = std::time::SystemTime::now();
        let mut kept = Vec::new();
        let mut removed = 0;
        for entry in rfs::Dir::read_from(partial_fd).map_err(errno)? {
            let entry = entry.map_err(errno)?;
            let Ok(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name == "." || name == ".." || self.inner.active.contains_key(&name) {
                continue;
            }
            let Ok(st) = rfs::statat(partial_fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let mtime =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(st.st_mtime.max(0) as u64);
            let age = now.duration_since(mtime).unwrap_or_default();
            if age > ttl {
                self.drop_partial(partial_fd, &name);
                removed += 1;
            } else {
                kept.push((mtime, st.st_size as u64, name));
            }
        }
        if let Some(max) = max_total {
            kept.sort();
            let mut total: u64 = kept.iter().map(|k| k.1).sum();
            for (_, size, name) in kept {
                if total <= max {
                    break;
                }
                self.drop_partial(partial_fd, &name);
                total -= size;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn drop_partial(&self, partial_fd: &OwnedFd, name: &str) {
        let _ = rfs::unlinkat(partial_fd, name, AtFlags::empty());
        self.inner.hashers.remove(name);
    }

    /// The canonical path of the served folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The folder uploads are staged in before they are renamed into place.
    pub fn staging_dir(&self) -> &Path {
        &self.inner.staging
    }

    /// Creates a new, empty staging file. It is removed when the guard drops, unless committed.
    pub fn stage(&self) -> io::Result<(Staged, File)> {
        let staging_fd = Arc::clone(&self.reserved()?.staging_fd);
        loop {
            let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
            let name = format!("{}-{n}.part", std::process::id());
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            match rfs::openat(
                &*staging_fd,
                name.as_str(),
                flags,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => {
                    let staged = Staged {
                        dir: staging_fd,
                        path: self.inner.staging.join(&name),
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

pub(crate) fn exists(shown: &impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Exists, format!("{shown} already exists"))
}

/// Removes every file in the folder `dir` (the staging area); returns how many went.
fn clean_dir(dir: &OwnedFd) -> io::Result<usize> {
    let mut removed = 0;
    for entry in rfs::Dir::read_from(dir).map_err(errno)? {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if rfs::unlinkat(dir, entry.file_name(), AtFlags::empty()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
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
    root: Root,
    key: String,
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        self.root.inner.active.remove(&self.key);
    }
}

/// An upload being received: where its bytes go and what is known about them.
#[derive(Debug)]
pub struct Upload {
    /// The staging file or partial, removed on drop unless committed or kept.
    pub staged: Staged,
    /// The open file, positioned at `offset`.
    pub file: File,
    /// Bytes already held from an interrupted upload.
    pub offset: u64,
    /// Hash state covering the first `offset` bytes, when the upload is verified.
    pub hasher: Option<blake3::Hasher>,
    partial: Option<PartialGuard>,
}

impl Upload {
    /// Splits off the parts the transfer needs; the returned guard must live until the
    /// upload is committed or kept.
    pub fn into_parts(self) -> (Staged, File, u64, Option<blake3::Hasher>, UploadGuard) {
        let Upload {
            staged,
            file,
            offset,
            hasher,
            partial,
        } = self;
        (staged, file, offset, hasher, UploadGuard { partial })
    }
}

/// Holds an upload's claim on its partial while its parts are in use.
#[derive(Debug)]
pub struct UploadGuard {
    partial: Option<PartialGuard>,
}

impl UploadGuard {
    /// Keeps the interrupted upload in `staged` for a later resume — when it is a resumable
    /// partial — with the hash state of the `len` bytes it holds. Returns whether it was kept.
    pub fn keep(self, staged: Staged, len: u64, hasher: Option<blake3::Hasher>) -> bool {
        let Some(guard) = self.partial else {
            return false;
        };
        let Some(hasher) = hasher else { return false };
        let mut staged = staged;
        staged.name = None;
        let hashers = &guard.root.inner.hashers;
        if hashers.len() >= MAX_SAVED_HASHERS {
            let victim = hashers.iter().next().map(|e| e.key().clone());
            if let Some(victim) = victim {
                hashers.remove(&victim);
            }
        }
        hashers.insert(guard.key.clone(), (len, hasher));
        true
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
        let (dir, parent) = (&*self.dir, &target.parent.fd);
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
                rustix::io::Errno::EXIST => exists(&target.shown),
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
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Root) {
        let root_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(root_dir.path().join("inside.txt"), b"in").unwrap();
        fs::create_dir(root_dir.path().join("sub")).unwrap();
        fs::write(root_dir.path().join("sub/f.txt"), b"f").unwrap();
        fs::write(outside.path().join("secret"), b"secret").unwrap();
        symlink(
            outside.path().join("secret"),
            root_dir.path().join("to_secret"),
        )
        .unwrap();
        symlink(outside.path(), root_dir.path().join("to_outside_dir")).unwrap();
        symlink("sub/f.txt", root_dir.path().join("to_inside")).unwrap();
        symlink("sub", root_dir.path().join("to_sub")).unwrap();
        symlink(".sft/tmp", root_dir.path().join("to_staging")).unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        (root_dir, outside, root)
    }

    #[test]
    fn staged_files_commit_atomically_or_vanish() {
        let (dir, _o, root) = setup();
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
    fn a_parent_swapped_for_a_symlink_cannot_redirect_the_commit() {
        let (dir, outside, root) = setup();
        let rp = root.check("sub/new.txt").unwrap();
        let target = root.prepare_target(&rp, false).unwrap();
        let (staged, mut f) = root.stage().unwrap();
        io::Write::write_all(&mut f, b"payload").unwrap();
        // Mid-transfer, someone replaces sub/ with a symlink to a folder outside the root.
        fs::rename(dir.path().join("sub"), dir.path().join("sub.moved")).unwrap();
        symlink(outside.path(), dir.path().join("sub")).unwrap();
        staged.commit(&target, false).unwrap();
        assert_eq!(
            fs::read(dir.path().join("sub.moved/new.txt")).unwrap(),
            b"payload"
        );
        assert!(
            !outside.path().join("new.txt").exists(),
            "nothing written outside the root"
        );
    }

    #[test]
    fn opening_writes_nothing_and_the_first_upload_cleans_crash_debris() {
        let (dir, _o, root) = setup();
        assert!(
            !dir.path().join(RESERVED_DIR).exists(),
            "opening the root creates nothing"
        );
        assert_eq!(
            root.expire_partials(Default::default(), Some(0)).unwrap(),
            0
        );
        assert_eq!(root.clean_staging().unwrap(), 0);
        assert!(!dir.path().join(RESERVED_DIR).exists(), "nor does expiring");
        let (staged, _f) = root.stage().unwrap();
        std::mem::forget(staged);
        assert_eq!(fs::read_dir(root.staging_dir()).unwrap().count(), 1);
        let again = Root::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(again.staging_dir()).unwrap().count(), 1);
        let (_staged, _f) = again.stage().unwrap();
        assert_eq!(
            fs::read_dir(again.staging_dir()).unwrap().count(),
            1,
            "the debris went when the first upload needed the staging area"
        );
    }
}
