//! An upload's file, created only when its first block is written, and the lock a partial is
//! held by: a small state machine (later → created → ended) shared between the upload and the
//! blocking task that creates the file, so that an upload ended at any moment removes exactly
//! what exists.
//!
//! A resumable upload plans to write its partial, but only finds out whether it may when the
//! file is created (its lock taken): two connections, through two servers, may both begin the
//! same upload before either wrote a byte. The one that finds the partial locked does not wait
//! for it, nor fail: it is received apart, from the start, into a fresh staging file of its
//! server's own (not resumable), and published by the usual rules.

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

/// Where an upload's file is, or is to be created.
#[derive(Debug, Clone)]
pub(super) struct Place {
    /// The folder holding it.
    pub(super) dir: Arc<Folder>,
    /// Its name in that folder.
    pub(super) name: String,
    /// Its path, for messages and logs.
    pub(super) path: PathBuf,
    /// A resumable partial: locked while the upload holds it, and created over an older
    /// partial of the same upload (emptied). Otherwise a fresh file in this server's own
    /// staging folder (`O_EXCL`).
    pub(super) partial: bool,
}

impl Place {
    /// A fresh plain staging file in this server's staging folder `dir`, at `path`.
    pub(super) fn staged(dir: &Arc<Folder>, path: &std::path::Path) -> Place {
        let name = super::root::staging_name();
        Place {
            dir: Arc::clone(dir),
            path: path.join(&name),
            name,
            partial: false,
        }
    }
}

/// An upload's file, created when its first block is written. Shared with the blocking task
/// that creates it, so that an upload ended at any moment — even while its file is being
/// created — removes exactly what exists, and nothing is created after it ended.
#[derive(Debug)]
pub(super) struct LazyFile {
    /// Where the file is: fixed once it is created. Locked after `state`, never before.
    place: Mutex<Place>,
    /// For a partial: this server's staging folder (and its path), where the upload goes
    /// instead if another connection is writing the partial when the file is created.
    apart: Option<(Arc<Folder>, PathBuf)>,
    mode: Mode,
    state: Mutex<FileState>,
    /// A partial's lock: a second handle on the file, held from when the upload created or
    /// resumed it until it is committed (after the rename), kept, or removed (after the unlink),
    /// whatever becomes of the handle it writes with.
    lock: Mutex<Option<File>>,
}

impl LazyFile {
    /// A file to be created at `place`; a partial goes to a staging file in `apart` instead if
    /// it is taken by then.
    pub(super) fn new(place: Place, apart: Option<(Arc<Folder>, PathBuf)>, mode: Mode) -> Self {
        LazyFile {
            place: Mutex::new(place),
            apart,
            mode,
            state: Mutex::new(FileState::Later),
            lock: Mutex::new(None),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, FileState> {
        // Only ever set by short, panic-free steps (see `poison.rs`).
        crate::poison::lock(&self.state)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Option<File>> {
        crate::poison::lock(&self.lock)
    }

    /// Where the file is (or would be created now).
    pub(super) fn place(&self) -> Place {
        crate::poison::lock(&self.place).clone()
    }

    pub(super) fn created(&self) -> bool {
        *self.state() == FileState::Created
    }

    /// Whether the upload's file is its partial, created or resumed (not a staging file, nor
    /// none yet).
    pub(super) fn holds_partial(&self) -> bool {
        let state = self.state();
        *state == FileState::Created && crate::poison::lock(&self.place).partial
    }

    /// Creates the file (blocking), unless the upload already ended. A partial that another
    /// upload is writing right now (on this server or another) is left alone: the file is
    /// created apart instead, as a fresh staging file.
    pub(super) fn create(&self) -> io::Result<File> {
        let mut state = self.state();
        if *state == FileState::Ended {
            return Err(io::Error::other(
                "the upload ended before its file was created",
            ));
        }
        let mut place = crate::poison::lock(&self.place);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        if place.partial {
            match locks::open_locked(&*place.dir, &place.name, flags, self.mode)? {
                Claim::Locked(file) => {
                    // Replaces an older partial of the same upload, if there was one. Only
                    // then: a truncation makes ext4 allocate and start writing the whole file
                    // when its last handle closes (its protection for files rewritten in
                    // place), which holds up the end of every large upload.
                    if file.metadata()?.len() > 0 {
                        file.set_len(0)?;
                    }
                    *self.lock() = Some(file.try_clone()?);
                    *state = FileState::Created;
                    return Ok(file);
                }
                Claim::Busy | Claim::Missing => {
                    let (dir, path) = self.apart.as_ref().ok_or_else(|| {
                        io::Error::other("a partial without a staging folder to go apart to")
                    })?;
                    // Nothing was written yet: the upload starts from its first byte here.
                    log::debug!(partial = place.name.as_str(), reason = "another connection began writing its partial first"; "upload staged apart, not resumable");
                    *place = Place::staged(dir, path);
                }
            }
        }
        let fd = rfs::openat(
            &*place.dir,
            place.name.as_str(),
            flags | OFlags::EXCL,
            self.mode,
        )
        .map_err(errno)?;
        *state = FileState::Created;
        Ok(File::from(fd))
    }

    /// Opens the created file again (blocking), to set its attributes.
    pub(super) fn reopen(&self) -> io::Result<File> {
        let place = self.place();
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd =
            rfs::openat(&*place.dir, place.name.as_str(), flags, Mode::empty()).map_err(errno)?;
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
            let place = crate::poison::lock(&self.place);
            let _ = rfs::unlinkat(&*place.dir, place.name.as_str(), AtFlags::empty());
        }
        *state = FileState::Ended;
        drop(self.unlock());
        existed
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::MIN_KEPT_PARTIAL;
    use std::fs;

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
    fn a_partial_another_server_locked_after_this_one_began_is_received_apart() {
        let (dir, a, b) = two_servers();
        let rp = a.check("f.bin").unwrap();
        let data = vec![7; MIN_KEPT_PARTIAL as usize + 10];
        let whole: Vec<u8> = (0..1 << 20).map(|i| i as u8).collect();
        for end in ["committed", "cut off"] {
            // A begins afresh: nothing on disk yet, so its file is only created with its first
            // block.
            let mut on_a = begin(&a, &rp, false);
            // Meanwhile B begins the same upload and writes its partial.
            let mut on_b = begin(&b, &rp, false);
            receive_then_vanish(&mut on_b, &data);
            let writing = partials(&dir);
            // A's first block finds the partial locked: A goes apart, from the start, into a
            // staging file of its own, and the partial is not touched.
            if end == "committed" {
                receive(&mut on_a, &whole, whole.len() as u64).unwrap();
                assert_eq!(fs::read_dir(a.staging_dir()).unwrap().count(), 1);
                assert_eq!(on_a.hash(), hash_of(&whole));
                let target = a.prepare_target(&rp, true).unwrap();
                on_a.commit(&target, true).unwrap();
                assert!(fs::read(dir.path().join("f.bin")).unwrap() == whole);
            } else {
                receive_then_vanish(&mut on_a, &whole[..MIN_KEPT_PARTIAL as usize + 1]);
                assert!(on_a.holds_file());
                assert!(!on_a.keep(&KEEP_ALL), "not resumable");
            }
            assert_eq!(fs::read_dir(a.staging_dir()).unwrap().count(), 0, "{end}");
            assert_eq!(partials(&dir), writing, "{end}: B's partial untouched");
            // B's upload is kept, whole, and A's resume continues it.
            assert!(on_b.keep(&KEEP_ALL));
            assert_eq!(partials(&dir), writing);
            let resumed = begin(&a, &rp, true);
            assert_eq!(resumed.offset(), data.len() as u64, "{end}");
            drop(resumed);
            assert_eq!(partials(&dir), []);
        }
    }
}
