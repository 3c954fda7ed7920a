//! Publishing: a staged file renamed into place under its target's folder handle, atomically,
//! replacing what is there only when asked to.

use super::errno;
use crate::locks::Folder;
#[cfg(doc)]
use crate::sandbox::Root;
use crate::sandbox::{exists, io_error, Target};
use rustix::fs::{self as rfs, AtFlags};
use sft_protocol::WireError;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A staged upload: a file in the staging area that is deleted on drop unless committed.
#[derive(Debug)]
pub struct Staged {
    pub(super) dir: Arc<Folder>,
    pub(super) name: Option<String>,
    pub(super) path: PathBuf,
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
    use super::super::testing::*;
    use sft_protocol::ErrorCode;
    use std::{fs, io};

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
}
