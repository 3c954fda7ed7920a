//! The permission bits and modification time an upload is stored with.
//!
//! An upload is received into a private file (`0600` while it is a partial or staged), then
//! given its final attributes just before it is renamed into place, so that readers never see
//! the file with other bits or with the time of the upload:
//!
//! - permission bits: the request's `mode` (masked with `0o777`: never set-id or sticky); else,
//!   when it replaces a regular file, that file's bits (masked the same way); else `0o666` less
//!   the server's umask, as any program creating a file would get;
//! - modification time: the request's `mtime`, when given (the access time is left alone).

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, StatxFlags, Timespec, Timestamps, UTIME_OMIT,
};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::OnceLock;

/// The attributes a request asked an upload to be stored with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Whole seconds since the epoch, for the stored file's modification time.
    pub mtime: Option<i64>,
    /// Permission bits (only `0o777` of them are used).
    pub mode: Option<u32>,
}

/// The process's file-creation mask, read once.
static UMASK: OnceLock<u32> = OnceLock::new();

/// Records the process's umask, read by the server at start-up (before any thread exists, where
/// reading it means setting it and setting it back). Later calls change nothing. Without it, the
/// first upload reads it from `/proc/self/status` (`022` if that cannot be read).
pub fn set_umask(mask: u32) {
    let _ = UMASK.set(mask & 0o777);
}

/// The process's umask.
pub fn umask() -> u32 {
    *UMASK.get_or_init(|| read_umask().unwrap_or(0o022))
}

/// The `Umask:` line of `/proc/self/status` (Linux 4.7 and later): reads it without changing it.
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// The permission bits a new file gets: `0o666` less the umask.
pub fn new_file_mode() -> u32 {
    0o666 & !umask()
}

/// Gives `file` (the received upload, still private) its final attributes before it replaces
/// or becomes `name` in `parent`. Blocking.
pub(crate) fn settle(
    file: &File,
    parent: impl AsFd,
    name: &str,
    overwrite: bool,
    attrs: Attributes,
) -> io::Result<()> {
    let mode = match attrs.mode {
        Some(mode) => mode & 0o777,
        None => overwrite
            .then(|| replaced_bits(parent.as_fd(), name))
            .flatten()
            .unwrap_or_else(new_file_mode),
    };
    rfs::fchmod(file, Mode::from_raw_mode(mode))?;
    if let Some(secs) = attrs.mtime {
        rfs::futimens(file, &modified_at(secs))?;
    }
    Ok(())
}

/// The permission bits (`0o777` of them) of the regular file `name` in `parent`, if one is
/// there, as the file system holds them now, not as this machine cached them.
///
/// On a shared file system a plain `stat` may be answered from attributes cached before
/// another server changed the file: FUSE caches them for a second, NFS for seconds. An upload
/// published by another server a moment ago was a partial (`0600`) until just before, so a
/// cached look can take a partial's bits for the replaced file's. `AT_STATX_FORCE_SYNC` makes
/// the kernel ask the file system's server (a plain `stat` where `statx` is missing). Blocking.
pub(crate) fn replaced_bits(parent: impl AsFd, name: &str) -> Option<u32> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_FORCE_SYNC;
    match rfs::statx(&parent, name, flags, StatxFlags::TYPE | StatxFlags::MODE) {
        Ok(st) => {
            let mode = u32::from(st.stx_mode);
            (FileType::from_raw_mode(mode) == FileType::RegularFile).then_some(mode & 0o777)
        }
        Err(Errno::NOSYS) => match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            #[allow(clippy::unnecessary_cast)] // the field types differ between targets
            Ok(st) if FileType::from_raw_mode(st.st_mode as u32) == FileType::RegularFile => {
                Some(st.st_mode as u32 & 0o777)
            }
            _ => None,
        },
        Err(_) => None,
    }
}

/// Times that set the modification time to `secs` (whole seconds since the epoch) and leave
/// the access time as it is.
pub(crate) fn modified_at(secs: i64) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn the_umask_is_read_without_changing_it() {
        let mask = read_umask().expect("/proc/self/status has a Umask line");
        assert!(mask <= 0o777);
        assert_eq!(read_umask(), Some(mask));
    }

    #[test]
    fn modes_come_from_the_request_the_replaced_file_or_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let parent = File::open(dir.path()).unwrap();
        let staged = dir.path().join("staged");
        std::fs::write(&staged, b"x").unwrap();
        let file = File::open(&staged).unwrap();
        let mode = || std::fs::metadata(&staged).unwrap().permissions().mode() & 0o7777;

        settle(&file, &parent, "new", false, Attributes::default()).unwrap();
        assert_eq!(mode(), new_file_mode());

        let old = dir.path().join("old");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o4640)).unwrap();
        settle(&file, &parent, "old", true, Attributes::default()).unwrap();
        assert_eq!(mode(), 0o640, "the replaced file's bits, without set-id");
        settle(&file, &parent, "old", false, Attributes::default()).unwrap();
        assert_eq!(mode(), new_file_mode(), "not replacing: a new file's bits");

        let asked = Attributes {
            mode: Some(0o7755),
            mtime: Some(1_000_000_000),
        };
        settle(&file, &parent, "old", true, asked).unwrap();
        assert_eq!(mode(), 0o755, "never set-id or sticky");
        assert_eq!(std::fs::metadata(&staged).unwrap().mtime(), 1_000_000_000);
    }
}
