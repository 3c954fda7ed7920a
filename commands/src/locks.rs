//! What lets several servers share one root (on one machine, or over a shared file system):
//! advisory locks (`flock`) on the files that only one of them may write at a time, and a
//! staging folder of its own for each running server.
//!
//! - A resumable partial (`.sft/partial/NAME`) is locked, exclusively, by the upload writing
//!   it, from the moment it opens or creates the file until the file is committed, kept or
//!   removed. Another upload of it, on any server, finds it locked and does not touch it;
//!   expiry never removes a locked partial.
//! - Each server stages plain uploads in `.sft/tmp/ID/`, where `ID` names one running server:
//!   it holds the lock on `.sft/lock/ID` for as long as it runs. At start-up a server removes
//!   the staging folders of servers that are gone (their lock is free, or their lock file is
//!   missing) and leaves the others alone.
//!
//! A lock is taken without waiting, and only trusted once the name is seen to still hold the
//! file that was locked ([`open_locked`]): a file removed or replaced between the open and the
//! lock (committed, expired, swept) is opened again. A name is only ever removed or replaced by
//! whoever holds its lock, so a lock taken and checked this way stays on the file the name holds.
//!
//! Locks are per open file (`flock` semantics): within one process two opens of a file exclude
//! each other as two processes do. Where the file system refuses locks altogether (`ENOLCK`,
//! `EOPNOTSUPP`), a warning is logged once and the server carries on unlocked: safe for one
//! server, not for several (DEPLOY.md says what a shared file system must provide).
//!
//! Everything here blocks on the file system.

use crate::sandbox::FileId;
use rustix::fs::{self as rfs, AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

/// How many times a lock is tried on a name whose file keeps being replaced under it.
const ATTEMPTS: usize = 8;

/// What [`open_locked`] found.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The file the name holds, open and locked by this handle.
    Locked(File),
    /// Someone else holds the lock: the file is being written (or its server is alive).
    Busy,
    /// No file by that name (and none was to be created).
    Missing,
}

/// Takes the exclusive lock on the open file `fd` without waiting: whether it was taken.
pub(crate) fn try_lock(fd: impl AsFd) -> io::Result<bool> {
    match rfs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(Errno::WOULDBLOCK) => Ok(false),
        Err(e @ (Errno::NOLCK | Errno::OPNOTSUPP | Errno::NOSYS)) => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!(error:% = e; "the file system refuses file locks: serve this root with one server only");
            }
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens `name` in `dir` (with `flags`, and `mode` if it creates it) and locks it without
/// waiting, making sure the lock is on the file the name holds now. Exclusive locks need a file
/// open for writing on some shared file systems (NFS): `flags` should say `WRONLY` or `RDWR`.
pub(crate) fn open_locked(
    dir: impl AsFd,
    name: &str,
    flags: OFlags,
    mode: Mode,
) -> io::Result<Claim> {
    let dir = dir.as_fd();
    for _ in 0..ATTEMPTS {
        let fd = match rfs::openat(dir, name, flags | OFlags::CLOEXEC | OFlags::NOFOLLOW, mode) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Claim::Missing),
            Err(e) => return Err(e.into()),
        };
        if !try_lock(&fd)? {
            return Ok(Claim::Busy);
        }
        if still_named(dir, name, &fd)? {
            return Ok(Claim::Locked(File::from(fd)));
        }
        // Removed or replaced between the open and the lock: the lock is on a file no longer
        // there. Dropping it unlocks; try the name again.
    }
    Ok(Claim::Busy)
}

/// Whether `name` in `dir` still holds the file open as `fd`. The name is opened again rather
/// than looked up, so that a network file system checks it with its server (close-to-open)
/// instead of answering from a cache.
fn still_named(dir: BorrowedFd<'_>, name: &str, fd: &OwnedFd) -> io::Result<bool> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let again = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(again) => again,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    Ok(FileId::of(&rfs::fstat(&again)?) == FileId::of(&rfs::fstat(fd)?))
}

/// Whether an upload is writing the file `name` in `dir` right now (its lock is held). Takes
/// the lock for a moment when it is free.
pub(crate) fn is_locked(dir: impl AsFd, name: &str) -> io::Result<bool> {
    let flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(!try_lock(&fd)?),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A folder of the reserved area, open for `*at` calls. A server's own staging folder also
/// holds what claims it: when the last handle on it drops (the server stops), what is left in
/// it, the folder and its lock file go.
#[derive(Debug)]
pub(crate) struct Folder {
    fd: OwnedFd,
    owner: Option<Owner>,
}

/// The claim on a server's own staging folder.
#[derive(Debug)]
struct Owner {
    /// `.sft/tmp/`, holding the folder.
    tmp: OwnedFd,
    /// `.sft/lock/`, holding the lock file.
    locks: OwnedFd,
    /// The folder's (and the lock file's) name.
    id: String,
    /// The lock file, locked.
    lock: File,
}

impl Folder {
    /// A folder that nobody claims (`.sft/partial/`).
    pub(crate) fn plain(fd: OwnedFd) -> Folder {
        Folder { fd, owner: None }
    }

    /// The name of this server's staging folder, if this is one.
    pub(crate) fn id(&self) -> Option<&str> {
        self.owner.as_ref().map(|o| o.id.as_str())
    }
}

impl Deref for Folder {
    type Target = OwnedFd;

    fn deref(&self) -> &OwnedFd {
        &self.fd
    }
}

impl AsFd for Folder {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        // No upload is left to use the folder (each holds a handle on it): what is in it can
        // no longer be committed. The lock file goes last, while still locked, so that the
        // folder is never without its lock while it exists.
        let _ = clean_dir(&self.fd);
        let _ = rfs::unlinkat(&owner.tmp, owner.id.as_str(), AtFlags::REMOVEDIR);
        let _ = rfs::unlinkat(&owner.locks, owner.id.as_str(), AtFlags::empty());
        drop(owner.lock);
    }
}

/// Claims a staging folder of this server's own in `tmp` (`.sft/tmp/`), locked through a file
/// of the same name in `locks` (`.sft/lock/`): first the lock file, created, locked and checked,
/// then the folder, so that a folder whose lock file is missing is never a live server's.
pub(crate) fn claim_folder(tmp: OwnedFd, locks: OwnedFd) -> io::Result<Folder> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let mut last = None;
    for _ in 0..ATTEMPTS * 4 {
        let id = fresh_id();
        let fd = match rfs::openat(&locks, id.as_str(), flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        };
        // A server sweeping at this very moment may have taken it for a dead one's and removed
        // it: then take another name.
        if !try_lock(&fd)? || !still_named(locks.as_fd(), &id, &fd)? {
            last = Some(id);
            continue;
        }
        match rfs::mkdirat(&tmp, id.as_str(), Mode::from_raw_mode(0o700)) {
            // A dead server's folder under the very same name: ours now, as its lock is.
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                let _ = rfs::unlinkat(&locks, id.as_str(), AtFlags::empty());
                return Err(e.into());
            }
        }
        let dir = rfs::openat(&tmp, id.as_str(), crate::sandbox::DIR_FLAGS, Mode::empty())?;
        clean_dir(&dir)?;
        return Ok(Folder {
            fd: dir,
            owner: Some(Owner {
                tmp,
                locks,
                id,
                lock: File::from(fd),
            }),
        });
    }
    Err(io::Error::other(format!(
        "cannot claim a staging folder (last tried {}): another server keeps removing it",
        last.unwrap_or_default()
    )))
}

/// A name for a running server's staging folder: unique among the servers sharing the root
/// (the process id, the time and a counter; creating its lock file with `O_EXCL` settles ties).
fn fresh_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// Removes what servers that are gone left in `.sft/tmp/` — their staging folders, and loose
/// files of the layout before per-server folders — and their lock files in `.sft/lock/`;
/// leaves the folders of servers that run (their lock is held) and `own`. Returns how many
/// staging files went.
pub(crate) fn sweep(own: &Folder) -> io::Result<usize> {
    let Some(owner) = &own.owner else {
        return Ok(0);
    };
    let mut removed = 0;
    // Lock files first: a free one is a gone server's. Its folder goes before it, while it is
    // locked, so that no folder of a live server is ever without its lock file.
    for name in names(&owner.locks)? {
        if name == owner.id {
            continue;
        }
        let flags = OFlags::RDWR;
        if let Claim::Locked(lock) = open_locked(&owner.locks, &name, flags, Mode::empty())? {
            removed += remove_folder(&owner.tmp, &name);
            let _ = rfs::unlinkat(&owner.locks, name.as_str(), AtFlags::empty());
            drop(lock);
        }
    }
    // Then what has no lock file at all: folders of servers gone before their lock file was
    // removed, and loose files of the old layout. A live server creates its lock file before
    // its folder, and only a holder of the lock removes the file.
    for name in names(&owner.tmp)? {
        if name == owner.id {
            continue;
        }
        let Ok(st) = rfs::statat(&owner.tmp, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let locked = rfs::statat(&owner.locks, name.as_str(), AtFlags::SYMLINK_NOFOLLOW);
            if matches!(locked, Err(Errno::NOENT)) {
                removed += remove_folder(&owner.tmp, &name);
            }
        } else if rfs::unlinkat(&owner.tmp, name.as_str(), AtFlags::empty()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes the staging folder `name` in `tmp` and the files in it; returns how many files went.
fn remove_folder(tmp: &OwnedFd, name: &str) -> usize {
    let removed = match rfs::openat(tmp, name, crate::sandbox::DIR_FLAGS, Mode::empty()) {
        Ok(dir) => clean_dir(&dir).unwrap_or(0),
        Err(_) => 0,
    };
    let _ = rfs::unlinkat(tmp, name, AtFlags::REMOVEDIR);
    removed
}

/// The names in the folder `dir`, but `.`, `..` and hidden ones (such as the `.nfs…` files a
/// network file system keeps for a removed file that is still open); those not UTF-8 are
/// never sft's.
pub(crate) fn names(dir: impl AsFd) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        if let Ok(name) = entry.file_name().to_str() {
            if !name.starts_with('.') {
                out.push(name.to_owned());
            }
        }
    }
    Ok(out)
}

/// Removes every file in the folder `dir` (a staging folder); returns how many went.
pub(crate) fn clean_dir(dir: impl AsFd) -> io::Result<usize> {
    let dir = dir.as_fd();
    let mut removed = 0;
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn open(path: &Path) -> OwnedFd {
        fs::create_dir_all(path).unwrap();
        rfs::open(path, crate::sandbox::DIR_FLAGS, Mode::empty()).unwrap()
    }

    fn folders(dir: &Path) -> (OwnedFd, OwnedFd) {
        (open(&dir.join("tmp")), open(&dir.join("lock")))
    }

    #[test]
    fn a_lock_excludes_a_second_opening_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let d = open(dir.path());
        let create = OFlags::RDWR | OFlags::CREATE;
        let Claim::Locked(first) =
            open_locked(&d, "p", create, Mode::from_raw_mode(0o600)).unwrap()
        else {
            panic!("a new file is free");
        };
        assert!(matches!(
            open_locked(&d, "p", OFlags::RDWR, Mode::empty()).unwrap(),
            Claim::Busy
        ));
        assert!(is_locked(&d, "p").unwrap());
        drop(first);
        assert!(!is_locked(&d, "p").unwrap());
        assert!(matches!(
            open_locked(&d, "p", OFlags::RDWR, Mode::empty()).unwrap(),
            Claim::Locked(_)
        ));
        assert!(matches!(
            open_locked(&d, "q", OFlags::RDWR, Mode::empty()).unwrap(),
            Claim::Missing
        ));
    }

    #[test]
    fn a_lock_on_a_file_no_longer_under_its_name_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let d = open(dir.path());
        fs::write(dir.path().join("p"), b"old").unwrap();
        // Someone opened the old file, then it was replaced: the name holds another file now.
        let stale = rfs::openat(&d, "p", OFlags::RDWR, Mode::empty()).unwrap();
        fs::write(dir.path().join("p.new"), b"new").unwrap();
        fs::rename(dir.path().join("p.new"), dir.path().join("p")).unwrap();
        assert!(try_lock(&stale).unwrap());
        assert!(!still_named(d.as_fd(), "p", &stale).unwrap());
        let Claim::Locked(mut f) = open_locked(&d, "p", OFlags::RDWR, Mode::empty()).unwrap()
        else {
            panic!("the new file is free");
        };
        let mut got = String::new();
        io::Read::read_to_string(&mut f, &mut got).unwrap();
        assert_eq!(got, "new");
    }

    #[test]
    fn a_sweep_removes_what_gone_servers_left_and_nothing_of_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, locks) = folders(dir.path());
        let p = |rel: &str| dir.path().join(rel);
        // A live server: its lock file is held, its folder holds an upload in progress.
        let live = claim_folder(tmp.try_clone().unwrap(), locks.try_clone().unwrap()).unwrap();
        let live_id = live.id().unwrap().to_owned();
        fs::write(p(&format!("tmp/{live_id}/upload")), b"in progress").unwrap();
        // A gone server with its lock file; one gone without; a loose file of the old layout.
        fs::create_dir(p("tmp/gone")).unwrap();
        fs::write(p("tmp/gone/x"), b"debris").unwrap();
        fs::write(p("lock/gone"), b"").unwrap();
        fs::create_dir(p("tmp/lockless")).unwrap();
        fs::write(p("tmp/lockless/y"), b"debris").unwrap();
        fs::write(p("tmp/123-0.part"), b"half an upload").unwrap();

        let own = claim_folder(tmp, locks).unwrap();
        let own_id = own.id().unwrap().to_owned();
        assert_ne!(own_id, live_id);
        assert_eq!(sweep(&own).unwrap(), 3);
        let mut left = names(open(&p("tmp"))).unwrap();
        left.sort();
        let mut want = vec![live_id.clone(), own_id.clone()];
        want.sort();
        assert_eq!(left, want);
        assert_eq!(
            fs::read(p(&format!("tmp/{live_id}/upload"))).unwrap(),
            b"in progress"
        );
        let mut locks_left = names(open(&p("lock"))).unwrap();
        locks_left.sort();
        assert_eq!(locks_left, want);

        // Stopped: its folder and lock go with it; a sweep after it finds nothing.
        drop(live);
        assert!(!p(&format!("tmp/{live_id}")).exists());
        assert!(!p(&format!("lock/{live_id}")).exists());
        assert_eq!(sweep(&own).unwrap(), 0);
    }

    #[test]
    fn a_killed_servers_folder_is_swept_once_its_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, locks) = folders(dir.path());
        let killed = claim_folder(tmp.try_clone().unwrap(), locks.try_clone().unwrap()).unwrap();
        let id = killed.id().unwrap().to_owned();
        fs::write(dir.path().join(format!("tmp/{id}/upload")), b"cut off").unwrap();
        // Killed: the process's files close (the lock goes), nothing else runs.
        let mut killed = killed;
        drop(killed.owner.take().map(|o| o.lock));
        drop(killed);
        let own = claim_folder(tmp, locks).unwrap();
        assert_eq!(sweep(&own).unwrap(), 1);
        assert!(!dir.path().join(format!("tmp/{id}")).exists());
        assert!(!dir.path().join(format!("lock/{id}")).exists());
    }
}
