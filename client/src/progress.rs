//! Watching transfers as their bytes move, for progress displays.

use std::fmt;

/// Told about each transfer a [`Client`](crate::Client) makes, as it makes it
/// ([`Client::set_progress`](crate::Client::set_progress)).
///
/// Calls come from the task doing the transfer, between network reads or writes: keep them
/// cheap (a progress bar's counter update is).
pub trait Progress: Send + Sync + fmt::Debug {
    /// A transfer of `remote` starts moving bytes: `total` bytes in all (`None`: not known in
    /// advance, a stream), of which `done` are already in place (a resumed transfer).
    fn start(&self, remote: &str, total: Option<u64>, done: u64);

    /// `n` more bytes of the current transfer moved.
    fn advance(&self, n: u64);
}
