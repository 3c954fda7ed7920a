//! BLAKE3 hashes of served files, cached so that a popular file is hashed once.
//!
//! An entry is keyed by the file's identity (device and inode) and valid only for the version it
//! was computed on (size, modification time and change time, to the nanosecond): any write to
//! the file, a `touch`, or a replacement by rename makes the entry stale, and it is recomputed.
//! A version so recent that a write in the same clock tick would not show in its times (a
//! *racy* one, see [`Version::is_racy`]) is never cached.

use dashmap::DashMap;
use rustix::fs::Stat;
use sft_io::Version;
use std::fs::File;

/// Most entries kept; beyond it, arbitrary old entries are dropped (they are only a cache).
const MAX_ENTRIES: usize = 65_536;

/// The cache. Shared by every session of a server (it lives in the [`Root`](crate::Root)).
#[derive(Debug, Default)]
pub struct HashCache {
    map: DashMap<(u64, u64), (Version, blake3::Hash)>,
}

/// What [`HashCache::lookup`] found for an open file.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// The version looked up.
    pub version: Version,
    /// The cached hash, if the cache holds one for this exact version.
    pub hash: Option<blake3::Hash>,
}

impl HashCache {
    /// Looks up the open `file`'s current version.
    pub fn lookup(&self, file: &File) -> std::io::Result<Lookup> {
        Ok(self.lookup_version(Version::of(file)?))
    }

    /// Looks up the version of a file described by `st` (metadata already at hand).
    pub fn lookup_stat(&self, st: &Stat) -> Lookup {
        self.lookup_version(Version::from_stat(st))
    }

    /// Looks up `version`.
    pub fn lookup_version(&self, version: Version) -> Lookup {
        let hash = self
            .map
            .get(&version.id)
            .filter(|e| e.0 == version)
            .map(|e| e.1);
        Lookup { version, hash }
    }

    /// Records `hash`, computed from `file` as it was at `before`, if the file is still that
    /// version now (a file written to while it was hashed is not cached).
    pub fn insert(&self, before: &Lookup, file: &File, hash: blake3::Hash) {
        let Ok(now) = Version::of(file) else { return };
        if now != before.version || now.is_racy() {
            return;
        }
        let id = now.id;
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
        // A version younger than the racy window is never cached: let it age.
        std::thread::sleep(sft_io::RACY * 2);
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
