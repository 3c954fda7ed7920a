//! Where uploads are received before they are renamed into place: plain staging files in
//! `.sft/tmp/` (removed if the upload fails) and resumable *partials* in `.sft/partial/` (kept
//! when an upload breaks off, so that it can be continued, until they expire).
//!
//! All methods here block on the file system; async callers run them with
//! [`async_std::task::spawn_blocking`].

use crate::sandbox::{io_error, open_or_create_dir, Root, Target};
use dashmap::DashMap;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use sft_protocol::{ErrorCode, RemotePath, WireError};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const STAGING_DIR: &str = "tmp";
const PARTIAL_DIR: &str = "partial";
/// Hash states of interrupted uploads kept in memory, at most (beyond: re-hash from disk).
const MAX_SAVED_HASHERS: usize = 1024;

/// The staging area of a served root: its two folders and what is known about them.
#[derive(Debug)]
pub(crate) struct Staging {
    staging: PathBuf,
    staging_fd: Arc<OwnedFd>,
    partial: PathBuf,
    partial_fd: Arc<OwnedFd>,
    counter: AtomicU64,
    /// Partials being written right now (one writer each).
    active: DashMap<String, ()>,
    /// The hash state of each kept partial, so resuming need not re-read it.
    hashers: DashMap<String, (u64, blake3::Hasher)>,
}

impl Staging {
    /// Opens (creating them if missing) the staging folders inside the reserved folder
    /// `reserved`, whose path is `path`.
    pub(crate) fn open(reserved: &OwnedFd, path: &Path) -> io::Result<Staging> {
        let staging_fd = open_or_create_dir(reserved, STAGING_DIR)?;
        let partial_fd = open_or_create_dir(reserved, PARTIAL_DIR)?;
        Ok(Staging {
            staging: path.join(STAGING_DIR),
            staging_fd: Arc::new(staging_fd),
            partial: path.join(PARTIAL_DIR),
            partial_fd: Arc::new(partial_fd),
            counter: AtomicU64::new(0),
            active: DashMap::new(),
            hashers: DashMap::new(),
        })
    }
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

fn already_exists(shown: &impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Exists, format!("{shown} already exists"))
}

impl Root {
    /// Removes every file in the staging area (uploads that can no longer complete).
    pub fn clean_staging(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in rfs::Dir::read_from(&*self.staging().staging_fd).map_err(errno)? {
            let entry = entry.map_err(errno)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if rfs::unlinkat(
                &*self.staging().staging_fd,
                entry.file_name(),
                AtFlags::empty(),
            )
            .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
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
        if self.staging().active.insert(key.clone(), ()).is_some() {
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
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rfs::openat(
            &*self.staging().partial_fd,
            key.as_str(),
            flags,
            Mode::from_raw_mode(0o600),
        )
        .map_err(errno)?;
        let file = File::from(fd);
        let held = file.metadata()?.len();
        let saved = self.staging().hashers.remove(&key).map(|(_, state)| state);
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
            dir: Arc::clone(&self.staging().partial_fd),
            path: self.staging().partial.join(&key),
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
        let now = std::time::SystemTime::now();
        let mut kept = Vec::new();
        let mut removed = 0;
        for entry in rfs::Dir::read_from(&*self.staging().partial_fd).map_err(errno)? {
            let entry = entry.map_err(errno)?;
            let Ok(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name == "." || name == ".." || self.staging().active.contains_key(&name) {
                continue;
            }
            let Ok(st) = rfs::statat(
                &*self.staging().partial_fd,
                name.as_str(),
                AtFlags::SYMLINK_NOFOLLOW,
            ) else {
                continue;
            };
            let mtime =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(st.st_mtime.max(0) as u64);
            let age = now.duration_since(mtime).unwrap_or_default();
            if age > ttl {
                self.drop_partial(&name);
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
                self.drop_partial(&name);
                total -= size;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn drop_partial(&self, name: &str) {
        let _ = rfs::unlinkat(&*self.staging().partial_fd, name, AtFlags::empty());
        self.staging().hashers.remove(name);
    }

    /// The folder uploads are staged in before they are renamed into place.
    pub fn staging_dir(&self) -> &Path {
        &self.staging().staging
    }

    /// Creates a new, empty staging file. It is removed when the guard drops, unless committed.
    pub fn stage(&self) -> io::Result<(Staged, File)> {
        loop {
            let n = self.staging().counter.fetch_add(1, Ordering::Relaxed);
            let name = format!("{}-{n}.part", std::process::id());
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            match rfs::openat(
                &*self.staging().staging_fd,
                name.as_str(),
                flags,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => {
                    let staged = Staged {
                        dir: Arc::clone(&self.staging().staging_fd),
                        path: self.staging().staging.join(&name),
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
    root: Root,
    key: String,
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        self.root.staging().active.remove(&self.key);
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
        let hashers = &guard.root.staging().hashers;
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
    fn open_cleans_crash_debris() {
        let (dir, root) = setup();
        let (staged, _f) = root.stage().unwrap();
        std::mem::forget(staged);
        assert_eq!(fs::read_dir(root.staging_dir()).unwrap().count(), 1);
        let again = Root::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(again.staging_dir()).unwrap().count(), 0);
    }
}
