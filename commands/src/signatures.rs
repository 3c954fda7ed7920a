//! Level-1 signatures of served files (PROTOCOL.md §8.2), cached so that a file is cut once per
//! version, whichever client asks and in whichever direction.
//!
//! Keyed like [`HashCache`](crate::hashes::HashCache): by the file's identity, valid for one
//! [`Version`] only, never for a racy one. Bounded by the entries held in total (12 bytes each,
//! plus the map's own cost): past [`MAX_CACHED_ENTRIES`], arbitrary old signatures are dropped,
//! and a signature larger than the bound by itself is never kept.

use crate::poison::lock;
use sft_io::Version;
use sft_protocol::delta::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

/// Most entries held by the cache together: 2 Mi entries, 24 MiB of digests, the level-1
/// signatures of about 512 GiB of files.
pub const MAX_CACHED_ENTRIES: usize = 2 * 1024 * 1024;

/// One file version's level-1 signature and whole-file hash.
#[derive(Debug)]
pub struct Signature {
    /// The version it describes.
    pub version: Version,
    /// Its segments, in file order.
    pub entries: Vec<Entry>,
    /// The whole file's BLAKE3 hash.
    pub hash: blake3::Hash,
}

/// The cache; shared by every session of a server (it lives in the [`Root`](crate::Root)).
#[derive(Debug, Default)]
pub struct SignatureCache {
    inner: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    map: HashMap<(u64, u64), Arc<Signature>>,
    entries: usize,
}

impl SignatureCache {
    /// The cached signature of exactly `version`, if there is one.
    pub fn get(&self, version: &Version) -> Option<Arc<Signature>> {
        let held = lock(&self.inner);
        held.map
            .get(&version.id)
            .filter(|s| s.version == *version)
            .cloned()
    }

    /// Keeps `sig`, computed from `file`, if the file is still that version now and not racy,
    /// and the signature fits the bound. Blocking (one `fstat`).
    pub fn insert(&self, file: &File, sig: Signature) {
        let Ok(now) = Version::of(file) else { return };
        if now != sig.version || now.is_racy() || sig.entries.len() > MAX_CACHED_ENTRIES {
            return;
        }
        let mut held = lock(&self.inner);
        if let Some(old) = held.map.remove(&now.id) {
            held.entries -= old.entries.len();
        }
        while held.entries + sig.entries.len() > MAX_CACHED_ENTRIES {
            let Some(victim) = held.map.keys().next().copied() else {
                break;
            };
            let gone = held.map.remove(&victim).map_or(0, |s| s.entries.len());
            held.entries -= gone;
        }
        held.entries += sig.entries.len();
        held.map.insert(now.id, Arc::new(sig));
    }

    /// Entries held in total.
    pub fn entries(&self) -> usize {
        lock(&self.inner).entries
    }

    /// Signatures held.
    pub fn len(&self) -> usize {
        lock(&self.inner).map.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entries(n: usize) -> Vec<Entry> {
        vec![
            Entry {
                len: 1,
                digest: [0; 8]
            };
            n
        ]
    }

    #[test]
    fn one_version_only_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        std::thread::sleep(sft_io::RACY * 2);
        let cache = SignatureCache::default();
        let file = File::open(&path).unwrap();
        let version = Version::of(&file).unwrap();
        let sig = |n| Signature {
            version,
            entries: entries(n),
            hash: blake3::hash(b"one"),
        };
        cache.insert(&file, sig(MAX_CACHED_ENTRIES + 1));
        assert!(cache.is_empty(), "a signature over the bound is not kept");
        cache.insert(&file, sig(3));
        assert_eq!(cache.get(&version).unwrap().entries.len(), 3);
        cache.insert(&file, sig(5));
        assert_eq!((cache.len(), cache.entries()), (1, 5));

        // Another file fills the rest: the first is dropped to make room.
        let other = dir.path().join("g");
        std::fs::write(&other, b"two").unwrap();
        std::thread::sleep(sft_io::RACY * 2);
        let file2 = File::open(&other).unwrap();
        let version2 = Version::of(&file2).unwrap();
        cache.insert(
            &file2,
            Signature {
                version: version2,
                entries: entries(MAX_CACHED_ENTRIES - 1),
                hash: blake3::hash(b"two"),
            },
        );
        assert!(cache.get(&version).is_none());
        assert!(cache.entries() <= MAX_CACHED_ENTRIES);

        // A write makes the entry stale.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&other)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        let now = Version::of(&File::open(&other).unwrap()).unwrap();
        assert!(cache.get(&now).is_none());
    }

    #[test]
    fn a_file_changed_since_it_was_signed_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"before").unwrap();
        let file = File::open(&path).unwrap();
        let version = Version::of(&file).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let cache = SignatureCache::default();
        cache.insert(
            &file,
            Signature {
                version,
                entries: entries(1),
                hash: blake3::hash(b"before"),
            },
        );
        assert!(cache.is_empty());
    }
}
