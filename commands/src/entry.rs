//! Describing a file-system entry the way `LIST` and `STAT` report it.

use rustix::fs::{FileType, Stat};
use sft_protocol::verbs::{Entry, Kind};

/// The entry `name` with the (not symlink-following) metadata `st`.
#[allow(clippy::unnecessary_cast)] // the field types differ between targets
pub(crate) fn describe(name: String, st: &Stat) -> Entry {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => Kind::Symlink,
        FileType::Directory => Kind::Folder,
        FileType::RegularFile => Kind::File,
        _ => Kind::Other,
    };
    Entry {
        name,
        kind,
        size: if kind == Kind::File {
            st.st_size.max(0) as u64
        } else {
            0
        },
        // Whole seconds since the Unix epoch, rounded down (the nanoseconds are never negative).
        mtime: st.st_mtime as i64,
        blake3: None,
        mode: Some(st.st_mode as u32 & 0o7777),
        error: None,
    }
}

/// The wire's name for what the sandbox found.
pub(crate) fn wire_kind(kind: crate::sandbox::Kind) -> Kind {
    match kind {
        crate::sandbox::Kind::File => Kind::File,
        crate::sandbox::Kind::Folder => Kind::Folder,
        crate::sandbox::Kind::Symlink => Kind::Symlink,
        crate::sandbox::Kind::Other => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::lstat;
    use std::fs;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn kinds_sizes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"12345").unwrap();
        let when = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(when)
            .unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();

        let e = describe("f".into(), &lstat(&file).unwrap());
        assert_eq!((e.kind, e.size, e.mtime), (Kind::File, 5, 1_700_000_000));
        let e = describe("l".into(), &lstat(dir.path().join("l")).unwrap());
        assert_eq!((e.kind, e.size), (Kind::Symlink, 0));
        let e = describe(".".into(), &lstat(dir.path()).unwrap());
        assert_eq!((e.kind, e.size), (Kind::Folder, 0));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((e.mtime - now).abs() < 3600, "{}", e.mtime);

        // Before the epoch, with a fraction: rounded down, as before.
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(UNIX_EPOCH - Duration::from_millis(1500))
            .unwrap();
        assert_eq!(describe("f".into(), &lstat(&file).unwrap()).mtime, -2);
    }
}
