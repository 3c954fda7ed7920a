//! A bound on uploads in progress.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts uploads in progress against a maximum, server-wide. Each upload holds a [`Slot`]
/// from before its go-ahead until it ends; past the maximum an upload is answered `busy`.
///
/// Uploads cost no thread while they wait for the network, but each one may have a block being
/// written on the blocking pool; the bound keeps that well below the pool's size, so slow disks
/// and many writers can never starve the pool that every other request needs.
#[derive(Debug, Clone)]
pub struct UploadSlots {
    max: usize,
    used: Arc<AtomicUsize>,
}

/// One upload's place among the [`UploadSlots`]; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    used: Arc<AtomicUsize>,
}

impl UploadSlots {
    /// The default bound on concurrent uploads.
    pub const DEFAULT: usize = 128;

    /// At most `max` uploads at once (at least one).
    pub fn new(max: usize) -> UploadSlots {
        UploadSlots {
            max: max.max(1),
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// How many uploads are in progress.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A slot, or `None` if every slot is taken.
    pub fn try_take(&self) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                used: Arc::clone(&self.used),
            })
    }
}

impl Default for UploadSlots {
    fn default() -> Self {
        UploadSlots::new(UploadSlots::DEFAULT)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let slots = UploadSlots::new(2);
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        assert_eq!(slots.in_use(), 1);
        assert!(slots.try_take().is_some());
    }
}
