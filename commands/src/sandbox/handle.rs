//! The open handle on the served root, the identity of its reserved folder, and what happens
//! when the root vanishes.
//!
//! Opening the root only reads: the reserved folder `.sft/` and its sub-folders are created the
//! first time an upload needs them ([`RootHandle::reserved`]), so a read-only server never
//! writes, and a start-up that fails leaves nothing behind.
//!
//! A root deleted (or replaced) while the server runs is noticed by [`RootHandle::moved`]: the
//! handle's link count drops to zero, or the configured path now names another folder. The
//! caller then opens the folder found at the path, if any, and serves it from then on.

use super::{errno, LOCK_DIR, PARTIAL_DIR, RESERVED_DIR, STAGING_DIR};
use crate::poison::{lock, read, write};
use crate::staging::Staging;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

/// Flags for opening a folder: never through a symlink, never inherited by children.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What makes a file-system object itself, whatever its names: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the object `st` describes.
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    pub(crate) fn of(st: &rfs::Stat) -> FileId {
        FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        }
    }
}

/// One opening of the served root. Replaced as a whole when the root vanishes and returns.
#[derive(Debug)]
pub(crate) struct RootHandle {
    /// The root folder, open.
    pub(crate) fd: Arc<OwnedFd>,
    id: FileId,
    /// The identity of `.sft/` once it is known (it may not exist yet).
    reserved_id: Mutex<Option<FileId>>,
    /// `.sft/` and its sub-folders, once an upload needed them. Read without waiting: loading
    /// it (which sweeps what servers that are gone left) holds `loading`, never this.
    reserved: OnceLock<Arc<Staging>>,
    /// Held while the staging area is loaded, so that it is loaded once. Only file-system work
    /// on the blocking pool ever waits for it (see `offload.rs`: a small store runs in place
    /// only once the staging area is loaded).
    loading: Mutex<()>,
    /// The canonical path of the folder, for log lines and the staging area's paths.
    path: std::path::PathBuf,
}

impl RootHandle {
    /// Opens the folder at `dir` (a canonical path). Reads only.
    pub(crate) fn open(dir: &Path) -> io::Result<RootHandle> {
        let fd = rfs::open(dir, DIR_FLAGS, Mode::empty()).map_err(|e| {
            let e = errno(e);
            io::Error::new(
                e.kind(),
                format!("{} is not an accessible folder: {e}", dir.display()),
            )
        })?;
        let id = FileId::of(&rfs::fstat(&fd).map_err(errno)?);
        let reserved_id = match rfs::statat(&fd, RESERVED_DIR, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                Some(FileId::of(&st))
            }
            _ => None,
        };
        Ok(RootHandle {
            fd: Arc::new(fd),
            id,
            reserved_id: Mutex::new(reserved_id),
            reserved: OnceLock::new(),
            loading: Mutex::new(()),
            path: dir.to_owned(),
        })
    }

    /// Whether `st` describes the reserved folder `.sft/` of this root.
    pub(crate) fn is_reserved(&self, st: &rfs::Stat) -> bool {
        *lock(&self.reserved_id) == Some(FileId::of(st))
    }

    /// The identity of `.sft/`, if it exists.
    pub(crate) fn reserved_id(&self) -> Option<FileId> {
        *lock(&self.reserved_id)
    }

    /// The server's own folders, created if missing (the first time an upload needs them).
    /// The first time, this server claims a staging folder of its own, and what servers that
    /// are gone left in theirs is removed (see `locks.rs`).
    pub(crate) fn reserved(&self) -> io::Result<Arc<Staging>> {
        if let Some(reserved) = self.reserved.get() {
            return Ok(Arc::clone(reserved));
        }
        let _loading = lock(&self.loading);
        if let Some(reserved) = self.reserved.get() {
            return Ok(Arc::clone(reserved));
        }
        let reserved = Arc::new(self.create_reserved()?);
        let _ = self.reserved.set(Arc::clone(&reserved));
        Ok(reserved)
    }

    /// The staging area, if an upload already needed it. Never waits.
    pub(crate) fn loaded(&self) -> Option<Arc<Staging>> {
        self.reserved.get().cloned()
    }

    fn create_reserved(&self) -> io::Result<Staging> {
        let top = open_dir(&self.fd, RESERVED_DIR, true)?.expect("created");
        *lock(&self.reserved_id) = Some(FileId::of(&rfs::fstat(&top).map_err(errno)?));
        let sub = |name| open_dir(&top, name, true).map(|fd| fd.expect("created"));
        Staging::open(
            sub(STAGING_DIR)?,
            sub(LOCK_DIR)?,
            sub(PARTIAL_DIR)?,
            &self.path.join(RESERVED_DIR),
        )
    }

    /// Whether the folder at `dir` is no longer this handle's: the handle's folder was deleted
    /// (no links left) or the path now names another object (or nothing).
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    pub(crate) fn moved(&self, dir: &Path) -> bool {
        let deleted = rfs::fstat(&*self.fd).map_or(true, |st| st.st_nlink as u64 == 0);
        deleted || rfs::stat(dir).map_or(true, |st| FileId::of(&st) != self.id)
    }
}

/// Opens folder `name` in `dir`, creating it first if `create` (owner-only); `None` if it is
/// missing and not to be created. A symlink there is refused.
fn open_dir(dir: &OwnedFd, name: &str, create: bool) -> io::Result<Option<OwnedFd>> {
    if create {
        match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    // A folder another server created through another mount of a replicated file system this
    // very moment may answer EIO while the replicas agree on it (seen on GlusterFS): a few
    // short tries before that counts as a failure.
    let mut opened = rfs::openat(dir, name, DIR_FLAGS, Mode::empty());
    for _ in 0..20 {
        if !(create && matches!(opened, Err(rustix::io::Errno::IO))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        opened = rfs::openat(dir, name, DIR_FLAGS, Mode::empty());
    }
    match opened {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) if !create => Ok(None),
        Err(e) => {
            let e = errno(e);
            Err(io::Error::new(
                e.kind(),
                format!("cannot open the server's folder {name} (is it a symlink?): {e}"),
            ))
        }
    }
}

/// How often, at most, a resolution checks on its own whether the root vanished (a failed
/// lookup checks at once).
const CHECK_EVERY_MS: u64 = 1000;

impl super::Root {
    /// The root as opened, without the periodic check that it is still there: no system call,
    /// for callers that must never wait on the storage.
    pub(crate) fn handle_unchecked(&self) -> Arc<RootHandle> {
        Arc::clone(&read(&self.inner.handle))
    }

    /// The root's current handle; checks now and then whether the root vanished.
    pub(crate) fn handle(&self) -> Arc<RootHandle> {
        let inner = &self.inner;
        let handle = Arc::clone(&read(&inner.handle));
        let now = inner.opened.elapsed().as_millis() as u64;
        let last = inner.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= CHECK_EVERY_MS
            && inner
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && self.recheck(&handle)
        {
            return Arc::clone(&read(&inner.handle));
        }
        handle
    }

    /// Checks whether the root behind `seen` vanished; if a folder is back at the configured
    /// path, serves it from now on. Returns whether a new handle is in place. Logs once when
    /// the root goes and once when it returns.
    pub(crate) fn recheck(&self, seen: &Arc<RootHandle>) -> bool {
        let inner = &self.inner;
        if !seen.moved(&inner.dir) {
            return false;
        }
        match RootHandle::open(&inner.dir) {
            Ok(fresh) if !fresh.moved(&inner.dir) => {
                let mut slot = write(&inner.handle);
                if Arc::ptr_eq(&slot, seen) {
                    *slot = Arc::new(fresh);
                    if inner.vanished.swap(false, Ordering::Relaxed) {
                        log::info!(root:% = inner.dir.display(); "the served folder is back: serving it again");
                    } else {
                        log::warn!(root:% = inner.dir.display(); "the served folder was replaced: serving the folder now at its path");
                    }
                }
                true
            }
            _ => {
                if !inner.vanished.swap(true, Ordering::Relaxed) {
                    log::warn!(root:% = inner.dir.display(); "the served folder vanished: requests fail until a folder is back at its path");
                }
                false
            }
        }
    }

    /// The server's own folders, created on first use (never by a read-only server, which
    /// never stages an upload). Staging debris that a crash left is removed the first time.
    pub(crate) fn reserved(&self) -> io::Result<Arc<Staging>> {
        self.handle().reserved()
    }

    /// The staging area if the reserved folder exists already (loading it if need be, which
    /// may create its sub-folders); never creates `.sft/` itself.
    pub(crate) fn present_reserved(&self) -> io::Result<Option<Arc<Staging>>> {
        let handle = self.handle();
        if let Some(staging) = handle.loaded() {
            return Ok(Some(staging));
        }
        match open_dir(&handle.fd, RESERVED_DIR, false)? {
            Some(_) => handle.reserved().map(Some),
            None => Ok(None),
        }
    }
}
