//! Describing a file-system entry the way `LIST` and `STAT` report it.

use sft_protocol::verbs::{Entry, Kind};
use std::fs::Metadata;
use std::time::UNIX_EPOCH;

/// The entry `name` with the (not symlink-following) metadata `meta`.
pub(crate) fn describe(name: String, meta: &Metadata) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Folder
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Entry {
        name,
        kind,
        size: if kind == Kind::File { meta.len() } else { 0 },
        mtime: mtime(meta),
        blake3: None,
        error: None,
    }
}

/// Modification time in whole seconds since the Unix epoch, rounded down (`0` if unknown).
fn mtime(meta: &Metadata) -> i64 {
    let Ok(t) = meta.modified() else { return 0 };
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -secs - i64::from(d.subsec_nanos() > 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::{Duration, SystemTime};

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

        let e = describe("f".into(), &fs::symlink_metadata(&file).unwrap());
        assert_eq!((e.kind, e.size, e.mtime), (Kind::File, 5, 1_700_000_000));
        let e = describe(
            "l".into(),
            &fs::symlink_metadata(dir.path().join("l")).unwrap(),
        );
        assert_eq!((e.kind, e.size), (Kind::Symlink, 0));
        let e = describe(".".into(), &fs::symlink_metadata(dir.path()).unwrap());
        assert_eq!((e.kind, e.size), (Kind::Folder, 0));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((e.mtime - now).abs() < 3600, "{}", e.mtime);
    }
}
