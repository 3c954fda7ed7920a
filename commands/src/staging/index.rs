//! The index of kept partials: each one's size and age, in memory, oldest first. Keeping,
//! resuming or removing a partial updates it in `O(log n)`, and expiry decides from it without
//! reading the folder (`expiry.rs` reads the folder into it now and then). No I/O here.

use super::PartialLimits;
use sft_io::Version;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

/// The kept partials' sizes and ages (their files' modification times), oldest first: all that
/// expiry and the caps need, so that most decisions need not read the folder.
#[derive(Debug, Default)]
pub(super) struct KeptIndex {
    /// Name → (when it was last written, its size, the insertion that put it here).
    pub(super) entries: HashMap<String, (SystemTime, u64, u64)>,
    /// (When last written, name), oldest first.
    pub(super) by_age: BTreeSet<(SystemTime, String)>,
    /// The sum of the sizes.
    pub(super) bytes: u64,
    /// Insertions so far: what was inserted while the folder was being read is known by it.
    pub(super) inserted: u64,
}

impl KeptIndex {
    pub(super) fn insert(&mut self, name: String, size: u64, at: SystemTime) {
        self.take(&name);
        self.inserted += 1;
        self.by_age.insert((at, name.clone()));
        self.entries.insert(name, (at, size, self.inserted));
        self.bytes += size;
    }

    /// Forgets `name` (it is being written again, or it is gone); returns when it was kept
    /// and its size.
    pub(super) fn take(&mut self, name: &str) -> Option<(SystemTime, u64)> {
        let (at, size, _) = self.entries.remove(name)?;
        self.by_age.remove(&(at, name.to_owned()));
        self.bytes -= size;
        Some((at, size))
    }

    /// Becomes `fresh`, what was just read from the folder, but for what `claimed` says this
    /// server's uploads hold now, and with what was inserted here after insertion `since` (kept
    /// while the folder was being read: newer than what the reading saw, if it saw it at all).
    pub(super) fn replace(&mut self, fresh: KeptIndex, since: u64, claimed: impl Fn(&str) -> bool) {
        let newer: Vec<(String, SystemTime, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.2 > since)
            .map(|(name, e)| (name.clone(), e.0, e.1))
            .collect();
        let inserted = self.inserted;
        *self = KeptIndex {
            inserted,
            ..KeptIndex::default()
        };
        for (name, (at, size, _)) in fresh.entries {
            if !claimed(&name) {
                self.insert(name, size, at);
            }
        }
        for (name, at, size) in newer {
            if !claimed(&name) {
                self.insert(name, size, at);
            }
        }
    }

    /// Takes out the oldest partial if it is older than the limits' lifetime or beyond their
    /// caps, and returns its name, age and size.
    pub(super) fn take_one_over_limits(
        &mut self,
        limits: &PartialLimits,
        now: SystemTime,
    ) -> Option<(String, SystemTime, u64)> {
        let (at, name) = self.by_age.first()?;
        let expired = now.duration_since(*at).is_ok_and(|age| age > limits.ttl);
        let over = self.entries.len() > limits.max_count
            || limits.max_bytes.is_some_and(|max| self.bytes > max);
        if !expired && !over {
            return None;
        }
        log::debug!(partial = name.as_str(), reason = if expired { "older than --partial-ttl" } else { "over the partials' count or size cap" }; "partial to expire");
        let name = name.clone();
        let (at, size) = self.take(&name)?;
        Some((name, at, size))
    }

    /// Takes out, oldest first, the partials older than the limits' lifetime and those beyond
    /// their caps, and returns their names.
    #[cfg(test)]
    fn take_over_limits(&mut self, limits: &PartialLimits, now: SystemTime) -> Vec<String> {
        std::iter::from_fn(|| self.take_one_over_limits(limits, now))
            .map(|(name, _, _)| name)
            .collect()
    }
}

/// When the file of `version` was last written.
pub(super) fn written_at(version: &Version) -> SystemTime {
    let (secs, nanos) = version.mtime;
    SystemTime::UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_takes_out_the_oldest_beyond_the_caps() {
        let mut index = KeptIndex::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for i in 0..5 {
            index.insert(format!("p{i}"), 10, t0 + Duration::from_secs(i));
        }
        let limits = PartialLimits {
            ttl: Duration::from_secs(100),
            max_count: 3,
            max_bytes: Some(25),
        };
        // Two over the count, then one more over the bytes.
        let now = t0 + Duration::from_secs(10);
        assert_eq!(index.take_over_limits(&limits, now), ["p0", "p1", "p2"]);
        assert_eq!((index.entries.len(), index.bytes), (2, 20));
        let later = t0 + Duration::from_millis(103_500);
        assert_eq!(index.take_over_limits(&limits, later), ["p3"], "expired");
        assert_eq!((index.entries.len(), index.bytes), (1, 10));
    }

    #[test]
    fn reading_the_folder_again_keeps_what_was_kept_meanwhile() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut index = KeptIndex::default();
        index.insert("gone".into(), 10, t0);
        index.insert("seen".into(), 10, t0);
        let since = index.inserted;
        // While the folder is read: one partial is kept here, another is claimed.
        index.insert("kept meanwhile".into(), 20, t0);
        let mut fresh = KeptIndex::default();
        fresh.insert("seen".into(), 10, t0);
        fresh.insert("claimed".into(), 10, t0);
        fresh.insert("other server's".into(), 30, t0);
        index.replace(fresh, since, |name| name == "claimed");
        let mut names: Vec<_> = index.entries.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["kept meanwhile", "other server's", "seen"]);
        assert_eq!(index.bytes, 60);
    }
}
