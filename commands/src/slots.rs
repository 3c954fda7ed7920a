//! Bounds on uploads in progress and on signatures being computed.

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

/// Bounds the signatures (PROTOCOL.md §8.2) computed at once, server-wide
/// (`--max-signatures`). A `SIGN` that finds every place taken waits for one: computing one
/// reads a whole file, and a few at once keep the disk and the blocking pool for everyone else.
#[derive(Debug, Clone)]
pub struct SignSlots {
    max: usize,
    places: Arc<async_lock::Semaphore>,
}

impl SignSlots {
    /// The default bound on signatures computed at once.
    pub const DEFAULT: usize = 2;

    /// At most `max` at once (at least one).
    pub fn new(max: usize) -> SignSlots {
        let max = max.max(1);
        SignSlots {
            max,
            places: Arc::new(async_lock::Semaphore::new(max)),
        }
    }

    /// The maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place, once one is free (held until dropped).
    pub async fn take(&self) -> async_lock::SemaphoreGuardArc {
        self.places.acquire_arc().await
    }

    /// A place if one is free now.
    pub fn try_take(&self) -> Option<async_lock::SemaphoreGuardArc> {
        self.places.try_acquire_arc()
    }
}

impl Default for SignSlots {
    fn default() -> Self {
        SignSlots::new(SignSlots::DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_slots_wait_their_turn() {
        let slots = SignSlots::new(1);
        let held = async_std::task::block_on(slots.take());
        assert!(slots.try_take().is_none());
        drop(held);
        assert!(slots.try_take().is_some());
        assert_eq!(SignSlots::new(0).max(), 1);
    }

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
