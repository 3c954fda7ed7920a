//! BLAKE3 hashes of served files, cached so that a popular file is hashed once.
//!
//! An entry is keyed by the file's identity (device and inode) and valid only for the version it
//! was computed on (size, modification time and change time, to the nanosecond): any write to
//! the file, a `touch`, or a replacement by rename makes the entry stale, and it is recomputed.

use dashmap::DashMap;
use rustix::fs::{fstat, Stat};
use std::fs::File;

/// Most entries kept; beyond it, arbitrary old entries are dropped (they are only a cache).
const MAX_ENTRIES: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
}

/// The parts of a file's metadata that change whenever its content can have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    // The field types of `stat` differ between platforms; the casts are no-ops on Linux x86-64.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &Stat) -> (FileId, Version) {
        let id = FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        };
        let version = Version {
            size: st.st_size as u64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        };
        (id, version)
    }
}

/// The cache. Shared by every session of a server (it lives in the [`Root`](crate::Root)).
#[derive(Debug, Default)]
pub struct HashCache {
    map: DashMap<FileId, (Version, blake3::Hash)>,
}

/// What [`HashCache::lookup`] found for an open file.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    id: FileId,
    version: Version,
    /// The cached hash, if the cache holds one for this exact version.
    pub hash: Option<blake3::Hash>,
}

impl HashCache {
    /// Looks up the open `file`'s current version.
    pub fn lookup(&self, file: &File) -> std::io::Result<Lookup> {
        Ok(self.lookup_stat(&fstat(file)?))
    }

    /// Looks up the version of a file described by `st` (metadata already at hand).
    pub fn lookup_stat(&self, st: &Stat) -> Lookup {
        let (id, version) = Version::of(st);
        let hash = self.map.get(&id).filter(|e| e.0 == version).map(|e| e.1);
        Lookup { id, version, hash }
    }

    /// Records `hash`, computed from `file` as it was at `before`, if the file is still that
    /// version now (a file written to while it was hashed is not cached).
    pub fn insert(&self, before: &Lookup, file: &File, hash: blake3::Hash) {
        let Ok(st) = fstat(file) else { return };
        let (id, now) = Version::of(&st);
        if id != before.id || now != before.version {
            return;
        }
        if self.map.len() >= MAX_ENTRIES {
            let victim = self.map.iter().next().map(|e| *e.key());
            if let Some(victim) = victim {
                self.map.remove(&victim);
            }
        }
        self.map.insert(id, (now, hash));
    }

    /// How many hashes are cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn entries_are_valid_for_one_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let cache = HashCache::default();
        let file = File::open(&path).unwrap();
        let first = cache.lookup(&file).unwrap();
        assert!(first.hash.is_none());
        cache.insert(&first, &file, blake3::hash(b"one"));
        assert_eq!(
            cache.lookup(&file).unwrap().hash,
            Some(blake3::hash(b"one"))
        );

        // Same size, new content: the change time moves, the entry is stale.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(b"two")
            .unwrap();
        let reopened = File::open(&path).unwrap();
        assert!(cache.lookup(&reopened).unwrap().hash.is_none());
    }

    #[test]
    fn a_file_changed_while_hashing_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"before").unwrap();
        let cache = HashCache::default();
        let file = File::open(&path).unwrap();
        let before = cache.lookup(&file).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        cache.insert(&before, &file, blake3::hash(b"before"));
        assert!(cache.is_empty());
    }
}
