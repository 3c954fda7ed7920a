//! Partial downloads (`.NAME.sft-part` beside the target), handled so that nobody else's file
//! is ever written or renamed into place.
//!
//! The download folder may be shared with people who can create names in it. So a partial is
//! opened with `O_NOFOLLOW` (never through a symlink someone planted) and used only if it is a
//! regular file that belongs to this user; a new one is created exclusively (`O_CREAT|O_EXCL`).
//! The open partial is locked (`flock`, exclusive, non-blocking) for the whole download, and
//! after locking it must still be the file under the partial's name: so two downloads of one
//! file never write one partial — the second is refused with a clear error, as a second
//! `rsync --partial-dir` or `wget -c` of one file would trip over the first. Renaming checks
//! the name still holds this very file, before and after, so a symlink swapped in at the last
//! moment is never left under the final name.

use rustix::fs::FlockOperation;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Attempts at opening before giving up on a partial that keeps being replaced.
const ATTEMPTS: usize = 8;

/// An open, locked partial download.
#[derive(Debug)]
pub(crate) struct Partial {
    path: PathBuf,
    /// Holds the lock for as long as it is open (clones share it).
    file: File,
    /// The open file's device and inode, read once: what its name must still lead to.
    id: (u64, u64),
}

impl Partial {
    /// Opens (blocking) the partial download of `local`: with `resume`, the one an earlier
    /// attempt left, if any, else a new empty one; without, always a new empty one (a leftover
    /// is removed first). Missing folders above `local` are created, as `send` creates them on
    /// the server.
    pub(crate) fn open(local: &Path, resume: bool) -> io::Result<Partial> {
        let path = crate::client::partial_path(local);
        let mut parents_made = false;
        for _ in 0..ATTEMPTS {
            match options().create_new(true).open(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && !parents_made => {
                    parents_made = true;
                    make_parents(&path)?;
                    continue;
                }
                Ok(file) => {
                    lock(&file)?;
                    let id = identity(&file)?;
                    if same_file(&path, id)? {
                        return Ok(Partial { path, file, id });
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let file = match options().open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(explain_open(&path, e)),
            };
            let id = check_usable(&file)?;
            lock(&file)?;
            if !same_file(&path, id)? {
                continue;
            }
            if resume {
                return Ok(Partial { path, file, id });
            }
            // A leftover nobody is writing: it goes, and a new file takes its name, created
            // exclusively.
            fs::remove_file(&path)?;
        }
        Err(io::Error::other(
            "it was replaced again and again while it was opened; is another program writing \
             it?",
        ))
    }

    /// Where the partial is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open partial (a second handle on it; the lock stays with this `Partial`).
    pub(crate) fn file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Its current length: what a resume keeps.
    pub(crate) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Renames the partial to `local` (blocking), if its name still holds this file; and makes
    /// sure `local` then holds it (otherwise whatever took its place is removed again).
    pub(crate) fn commit(self, local: &Path) -> io::Result<()> {
        if !same_file(&self.path, self.id)? {
            return Err(replaced());
        }
        fs::rename(&self.path, local)?;
        if !same_file(local, self.id)? {
            let _ = fs::remove_file(local);
            return Err(replaced());
        }
        Ok(())
    }

    /// Removes the partial (blocking), if its name still holds this file.
    pub(crate) fn discard(self) {
        if same_file(&self.path, self.id).unwrap_or(false) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Read and write, never through a symlink in the last component (`O_NOFOLLOW`), and without
/// waiting on a FIFO or device someone put there (`O_NONBLOCK`, no effect on regular files).
/// The standard library adds `O_CLOEXEC`.
fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true)
        .write(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32);
    o
}

/// Creates the folders above `path` that are missing.
fn make_parents(path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    fs::create_dir_all(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create the folder {}: {e}", dir.display()),
        )
    })
}

/// Takes the exclusive lock without waiting; a partial another download holds is refused.
fn lock(file: &File) -> io::Result<()> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "another download is writing it (it is locked); wait for that one to finish, or \
             download to another name",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Only a regular file of this user's is written. Returns its [`identity`].
fn check_usable(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file (a folder, FIFO or device?), so it is no partial download; \
             move it away and download again",
        ));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "it belongs to another user, so it is no partial download of yours; remove it (or \
             have it removed) and download again",
        ));
    }
    Ok((meta.dev(), meta.ino()))
}

/// The device and inode of the open `file`.
fn identity(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// Why an existing partial could not be opened, said so a person can act on it.
fn explain_open(path: &Path, e: io::Error) -> io::Error {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symlink, and sft never writes through one (someone may have planted it to \
             make this download overwrite another file); remove it and download again",
        ),
        _ => e,
    }
}

/// Whether `path` (not followed) names the open file whose [`identity`] is `id`.
fn same_file(path: &Path, id: (u64, u64)) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(named) => Ok((named.dev(), named.ino()) == id),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn replaced() -> io::Error {
    io::Error::other(
        "the partial download was replaced by something else while it was written, so it was \
         not renamed into place; download again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_other_kinds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("plain.txt");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".plain.txt.sft-part")).unwrap();
        for resume in [false, true] {
            let e = Partial::open(&local, resume).unwrap_err();
            assert!(e.to_string().contains("symlink"), "{e}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        fs::remove_file(dir.path().join(".plain.txt.sft-part")).unwrap();
        fs::create_dir(dir.path().join(".plain.txt.sft-part")).unwrap();
        assert!(Partial::open(&local, true).is_err());
    }

    #[test]
    fn one_partial_has_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("a");
        let first = Partial::open(&local, true).unwrap();
        for resume in [false, true] {
            let e = Partial::open(&local, resume).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ResourceBusy, "{e}");
        }
        (&first.file().unwrap()).write_all(b"abc").unwrap();
        drop(first);
        let again = Partial::open(&local, true).unwrap();
        assert_eq!(again.len().unwrap(), 3);
        drop(again);
        let fresh = Partial::open(&local, false).unwrap();
        assert_eq!(fresh.len().unwrap(), 0);
        fresh.commit(&local).unwrap();
        assert!(fs::symlink_metadata(&local).unwrap().is_file());
    }

    use std::io::Write;
}
