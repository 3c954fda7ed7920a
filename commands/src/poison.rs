//! The crate's one lock-poisoning policy.
//!
//! Every std lock in this crate (the root's handle, its staging area, the index of kept
//! partials, an upload's file state) guards state that is changed only by short steps that do
//! not panic. A lock poisoned by a thread that panicked while holding it (elsewhere in that
//! step's caller) therefore still guards consistent state: it is taken as it is. Unwrapping it
//! instead would turn one request's panic into a panic in every later request that takes the
//! lock. Locks are taken only through these functions, so the rule holds everywhere.

use std::sync::TryLockError;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Locks `m` if no other thread holds it, poisoned or not.
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Takes `l` for reading, poisoned or not.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes `l` for writing, poisoned or not.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
