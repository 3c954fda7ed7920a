//! Which version of a file was sent.
//!
//! A file rewritten in place while it is sent would otherwise arrive as the old head and the
//! new tail, hashed and "verified". Every sender records the file's [`Version`] when it opens
//! it and [`confirm`]s it after the last byte left: a change of identity, size, modification or
//! change time fails the transfer before it can be reported complete.
//!
//! Times have a granularity (a clock tick of a few milliseconds, or a whole second on file
//! systems that keep no nanoseconds), so a write in the same tick as the version was taken does
//! not show in the times; nor does the rest of a single long `write(2)` whose time was set
//! when it began. A version that recent is *racy* (the term is git's): for it, `confirm` also
//! hashes the file again and compares with the hash of what was sent.

use crate::blocks::hash_prefix;
use rustix::fs::{fstat, Stat};
use std::fs::File;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Versions whose times are this close to now may hide a later write (nanosecond times).
pub const RACY: Duration = Duration::from_millis(50);

/// The same for times in whole seconds (a file system that keeps no nanoseconds).
pub const RACY_COARSE: Duration = Duration::from_secs(2);

/// A file's identity and the parts of its metadata that change whenever its content can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    /// Device and inode.
    pub id: (u64, u64),
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Status change time (seconds, nanoseconds).
    pub ctime: (i64, i64),
}

impl Version {
    /// The version of the open `file` now.
    pub fn of(file: &File) -> io::Result<Version> {
        Ok(Version::from_stat(&fstat(file)?))
    }

    /// The version described by `st`.
    // The field types of `stat` differ between platforms; the casts are no-ops on Linux x86-64.
    #[allow(clippy::unnecessary_cast)]
    pub fn from_stat(st: &Stat) -> Version {
        Version {
            id: (st.st_dev as u64, st.st_ino as u64),
            size: st.st_size as u64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }

    /// The version described by `meta` (from an open file's `metadata()`: no second `fstat`).
    pub fn from_meta(meta: &std::fs::Metadata) -> Version {
        use std::os::unix::fs::MetadataExt;
        Version {
            id: (meta.dev(), meta.ino()),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether a write in the same clock tick as this version could go unseen in its times.
    pub fn is_racy(&self) -> bool {
        let latest = self.mtime.max(self.ctime);
        let Ok(secs) = u64::try_from(latest.0) else {
            return true;
        };
        let stamp = UNIX_EPOCH + Duration::new(secs, latest.1.clamp(0, 999_999_999) as u32);
        let window = if self.mtime.1 == 0 && self.ctime.1 == 0 {
            RACY_COARSE
        } else {
            RACY
        };
        match SystemTime::now().duration_since(stamp) {
            Ok(age) => age < window,
            // In the future: a clock skew, nothing can be concluded.
            Err(_) => true,
        }
    }
}

/// Checks, after the last byte of `file` was sent, that it is still version `before`. For a
/// racy version, `whole` (the hash of the whole file as sent, if known) is checked against the
/// file's bytes now. Blocking: run it on the pool. Fails with an error that says the file
/// changed.
pub fn confirm(file: &File, before: &Version, whole: Option<&blake3::Hash>) -> io::Result<()> {
    let now = Version::of(file)?;
    if now != *before {
        return Err(changed());
    }
    if let Some(sent) = whole.filter(|_| before.is_racy()) {
        if hash_prefix(file, before.size)?.finalize() != *sent || Version::of(file)? != *before {
            return Err(changed());
        }
    }
    Ok(())
}

/// The error of a file that changed while it was sent.
pub fn changed() -> io::Error {
    io::Error::other("the file changed while it was being sent; nothing was verified")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_rewrite_is_a_new_version_and_a_fresh_file_is_racy() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"hello").unwrap();
        let v = Version::of(&f).unwrap();
        assert!(v.is_racy());
        let whole = blake3::hash(b"hello");
        confirm(&f, &v, Some(&whole)).unwrap();
        // Same size, same tick perhaps, but other bytes: the re-hash of a racy version sees it.
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"HELLO", 0).unwrap();
        assert!(confirm(&f, &v, Some(&whole)).is_err());
        f.write_all(b"!").unwrap();
        assert_ne!(Version::of(&f).unwrap(), v);
    }
}
