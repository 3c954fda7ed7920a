//! An upload's file, created only when its first block is written, and the lock a partial is
//! held by: a small state machine (later → created → ended) shared between the upload and the
//! blocking task that creates the file, so that an upload ended at any moment removes exactly
//! what exists.

use crate::locks::{self, Claim, Folder};
use crate::sandbox::errno;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Whether an upload's file exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileState {
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
pub(super) struct LazyFile {
    pub(super) dir: Arc<Folder>,
    pub(super) name: String,
    pub(super) path: PathBuf,
    /// A resumable partial: locked while the upload holds it, and created over an older
    /// partial of the same upload (emptied). Otherwise a fresh file in this server's own
    /// staging folder (`O_EXCL`).
    pub(super) partial: bool,
    pub(super) mode: Mode,
    pub(super) state: Mutex<FileState>,
    /// A partial's lock: a second handle on the file, held from when the upload created or
    /// resumed it until it is committed (after the rename), kept, or removed (after the unlink),
    /// whatever becomes of the handle it writes with.
    pub(super) lock: Mutex<Option<File>>,
}

impl LazyFile {
    pub(super) fn state(&self) -> MutexGuard<'_, FileState> {
        // Only ever set by short, panic-free steps (see `poison.rs`).
        crate::poison::lock(&self.state)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Option<File>> {
        crate::poison::lock(&self.lock)
    }

    pub(super) fn created(&self) -> bool {
        *self.state() == FileState::Created
    }

    /// Creates the file (blocking), unless the upload already ended. A partial that another
    /// upload is writing right now (on another server) is left alone: an error.
    pub(super) fn create(&self) -> io::Result<File> {
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
    pub(super) fn reopen(&self) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd =
            rfs::openat(&*self.dir, self.name.as_str(), flags, Mode::empty()).map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Hands the file over (committed or kept): the upload no longer removes it. Returns
    /// whether it exists. Its lock, if any, is held until [`LazyFile::unlock`].
    pub(super) fn release(&self) -> bool {
        std::mem::replace(&mut *self.state(), FileState::Ended) == FileState::Created
    }

    /// Takes the partial's lock out, to be dropped once the file is where it goes.
    pub(super) fn unlock(&self) -> Option<File> {
        self.lock().take()
    }

    /// Removes the file if the upload created it (blocking then), and ends it: nothing is
    /// created after. Returns whether there was a file. A partial's lock goes after its name.
    pub(super) fn remove(&self) -> bool {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Interrupted, MIN_KEPT_PARTIAL};
    use std::fs;
    use std::io;

    #[test]
    fn an_upload_too_small_to_keep_creates_no_file() {
        let (dir, root) = setup();
        let rp = root.check("f.bin").unwrap();
        for data in [&b""[..], b"abc", &[7; MIN_KEPT_PARTIAL as usize - 1]] {
            let mut upload = begin(&root, &rp, false);
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
    fn a_partial_another_server_locked_after_this_one_began_is_not_written() {
        let (dir, a, b) = two_servers();
        let rp = a.check("f.bin").unwrap();
        let data = vec![7; MIN_KEPT_PARTIAL as usize + 10];
        // A begins afresh: nothing on disk yet, so its file is only created with its first block.
        let mut on_a = begin(&a, &rp, false);
        // Meanwhile B begins the same upload and writes its partial.
        let mut on_b = begin(&b, &rp, false);
        receive_then_vanish(&mut on_b, &data);
        // A's first block finds the partial locked: A fails, without writing it.
        match receive(&mut on_a, &[1; 1000], 1000) {
            Err(Interrupted::Storage(e)) => assert_eq!(e.kind(), io::ErrorKind::ResourceBusy),
            other => panic!("{other:?}"),
        }
        drop(on_a);
        assert!(on_b.keep(&KEEP_ALL));
        let kept = partials(&dir);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1, data.len() as u64);
    }
}
