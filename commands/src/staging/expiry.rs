//! Expiry of kept partials: the index (`index.rs`) read again from the folder, counting what
//! every server sharing the root kept, and the partials beyond the limits removed, oldest first
//! — never one an upload is writing, here or on another server (removal takes its lock).

use super::index::{written_at, KeptIndex};
use super::{PartialLimits, Staging, MIN_KEPT_PARTIAL};
use crate::locks::{self, Claim, Folder};
use crate::sandbox::Root;
use dashmap::DashMap;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use sft_io::Version;
use std::io;
use std::time::{Duration, Instant, SystemTime};

/// The index of kept partials is read again from the folder, when a decision is due, once it
/// is this old: it then counts what the other servers sharing the root kept, and forgets what
/// they resumed or removed.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

impl Staging {
    /// Reads the index again from the folder — always, or only if it is older than
    /// [`RESCAN_EVERY`] — unless another thread is reading it right now: then the index as it
    /// is will do.
    fn rescan(&self, always: bool) {
        let Some(mut scanned) = crate::poison::try_lock(&self.scanned) else {
            return;
        };
        if !always && scanned.elapsed() < RESCAN_EVERY {
            return;
        }
        let since = self.kept().inserted;
        if let Ok(fresh) = scan(&self.partial_fd, &self.active) {
            let mut kept = self.kept();
            kept.replace(fresh, since, |name| self.active.contains_key(name));
            // Hash states of partials gone (resumed and finished elsewhere, removed) are of no
            // more use.
            self.hashers
                .retain(|name, _| kept.entries.contains_key(name));
        }
        *scanned = Instant::now();
    }

    /// Removes the partials beyond `limits`, oldest first; returns how many went. The index is
    /// read from the folder first (`rescan`), or only if it is older than [`RESCAN_EVERY`].
    /// Partials an upload is writing — on this server or another — are left alone, and so is
    /// one written again since the index saw it (it is judged again by its new age).
    ///
    /// Each is removed while the index is locked: an upload of this server claiming the same
    /// name (which takes it out of the index under the same lock) either came first, and the
    /// partial is its own now, or comes after, and finds no file. An upload of another server
    /// holds the partial's file lock while it writes it, which removal needs.
    pub(super) fn enforce(&self, limits: &PartialLimits, rescan: bool) -> usize {
        self.rescan(rescan);
        let now = SystemTime::now();
        let mut removed = 0;
        // Each partial is judged at most twice (once more when it changed since it was seen).
        let mut left = 2 * self.kept().entries.len() + 1;
        while left > 0 {
            left -= 1;
            let mut kept = self.kept();
            let Some((name, at, size)) = kept.take_one_over_limits(limits, now) else {
                break;
            };
            if self.active.contains_key(&name) {
                log::debug!(partial = name.as_str(); "partial not expired: an upload is writing it");
                continue;
            }
            let removal = remove_partial(&self.partial_fd, &name, Some((at, size)));
            log::debug!(partial = name.as_str(), bytes = size, result:? = removal; "partial expiry");
            match removal {
                Removal::Removed => {
                    self.hashers.remove(&name);
                    removed += 1;
                }
                Removal::Changed(at, size) => kept.insert(name, size, at),
                // Being written: it is back in the index once kept again (next read).
                Removal::Busy => {}
                Removal::Gone => {
                    self.hashers.remove(&name);
                }
            }
        }
        removed
    }
}

/// Reads the partials in the folder — kept by this server or by any other sharing the root —
/// into an index: their sizes and ages. Names in `active` (this server's uploads in progress)
/// are left out. Those too small to be kept (see [`MIN_KEPT_PARTIAL`]), of little use to a
/// resume, are removed, unless an upload is writing one.
pub(super) fn scan(dir: &Folder, active: &DashMap<String, ()>) -> io::Result<KeptIndex> {
    let mut index = KeptIndex::default();
    for name in locks::names(dir)? {
        if active.contains_key(&name) {
            continue;
        }
        let Ok(st) = rfs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            continue;
        }
        let version = Version::from_stat(&st);
        if version.size >= MIN_KEPT_PARTIAL {
            index.insert(name, version.size, written_at(&version));
        } else if let Removal::Changed(at, size) = remove_partial(dir, &name, None) {
            index.insert(name, size, at);
        }
    }
    Ok(index)
}

/// What became of a partial that was to be removed.
#[derive(Debug)]
enum Removal {
    Removed,
    /// An upload is writing it (its lock is held): left alone.
    Busy,
    /// No longer there.
    Gone,
    /// Not what it was when judged: its age and size now. Left alone.
    Changed(SystemTime, u64),
}

/// Removes the partial `name` in `dir`, unless an upload is writing it or it is no longer what
/// it was judged by: the age and size `seen`, or (without) too small to be kept.
fn remove_partial(dir: &Folder, name: &str, seen: Option<(SystemTime, u64)>) -> Removal {
    // Removal needs the lock: no upload, here or on another server, writes it meanwhile.
    let file = match locks::open_locked(dir, name, OFlags::RDWR, Mode::empty()) {
        Ok(Claim::Locked(file)) => file,
        Ok(Claim::Busy) => return Removal::Busy,
        Ok(Claim::Missing) | Err(_) => return Removal::Gone,
    };
    let Ok(now) = Version::of(&file) else {
        return Removal::Gone;
    };
    let now_seen = (written_at(&now), now.size);
    let same = match seen {
        Some(seen) => seen == now_seen,
        None => now.size < MIN_KEPT_PARTIAL,
    };
    if !same {
        return Removal::Changed(now_seen.0, now_seen.1);
    }
    // Removed while still locked: whoever opened it meanwhile finds its name gone once it holds
    // the lock, and does not use it.
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    drop(file);
    Removal::Removed
}

impl Root {
    /// Removes the kept partials older than the limits' lifetime, then the oldest ones while
    /// more are kept than the limits allow — counting those every server sharing the root
    /// kept. Partials being written, by this server or another, are left alone. Returns how
    /// many went. Reads the folder (names and sizes: no file is read), then works from that
    /// index: meant to run now and then (at start-up, and every `--partial-ttl` / 4).
    ///
    /// Writes nothing where no reserved folder exists yet (a server that never received an
    /// upload); where one does (an earlier run's), loads it, which also removes the staging
    /// debris of servers that are gone. Only a writable server calls this.
    pub fn expire_partials(&self, limits: &PartialLimits) -> usize {
        match self.present_reserved() {
            Ok(Some(staging)) => staging.enforce(limits, true),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use std::fs;

    #[test]
    fn start_up_finds_kept_partials_and_drops_those_too_small() {
        let (dir, root) = setup();
        drop(root);
        let partials = dir.path().join(".sft/partial");
        fs::create_dir_all(&partials).unwrap();
        fs::write(partials.join("empty.part"), b"").unwrap();
        fs::write(partials.join("small.part"), b"abc").unwrap();
        fs::write(
            partials.join("held.part"),
            vec![1; MIN_KEPT_PARTIAL as usize],
        )
        .unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(root.expire_partials(&KEEP_NONE), 1, "the kept one is known");
        assert!(!partials.join("empty.part").exists());
        assert!(!partials.join("small.part").exists());
        assert!(!partials.join("held.part").exists());
    }

    #[test]
    fn expiry_counts_and_ages_the_partials_every_server_kept() {
        let (dir, a, b) = two_servers();
        // B is running (its staging area loaded) before A keeps anything.
        drop(b.stage().unwrap());
        assert_eq!(b.expire_partials(&KEEP_ALL), 0);
        for (name, fill) in [("old.bin", 1), ("new.bin", 2)] {
            let rp = a.check(name).unwrap();
            keep_partial(&a, &rp, &[fill; MIN_KEPT_PARTIAL as usize]);
        }
        let kept = partials(&dir);
        assert_eq!(kept.len(), 2);
        // The first one A kept is a day old.
        let day_old = SystemTime::now() - Duration::from_secs(24 * 3600);
        let files: Vec<_> = fs::read_dir(dir.path().join(".sft/partial"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        let oldest = files
            .iter()
            .min_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
            .unwrap()
            .clone();
        fs::File::options()
            .write(true)
            .open(&oldest)
            .unwrap()
            .set_modified(day_old)
            .unwrap();
        let hour = PartialLimits {
            ttl: Duration::from_secs(3600),
            ..KEEP_ALL
        };
        assert_eq!(b.expire_partials(&hour), 1, "B ages what A kept");
        assert!(!oldest.exists());
        assert_eq!(b.expire_partials(&KEEP_NONE), 1, "B counts what A kept");
        assert_eq!(partials(&dir), []);
    }
}
