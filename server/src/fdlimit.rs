//! File descriptors: the server raises its soft limit at start-up and keeps its connection
//! limit within what the descriptors allow, so that a full house gets `busy` replies rather
//! than failed `accept`s and failed opens for everyone.

use rlimit::Resource;
use sft_commands::list::MAX_OPEN_FOLDERS;

/// Descriptors a connection moving a file may hold at once: its socket and the duplicate
/// `sendfile` registers with the reactor (2); the file and a second handle that hashes or
/// checks it (2); the lock held on an upload's staging file (1); a delta's basis (1); the
/// folders held while a path is resolved from the root, the current and the next (2).
pub const FDS_PER_TRANSFER: u64 = 8;

/// Descriptors a connection listing a tree may hold at once: its socket (1), the folders of the
/// walk ([`MAX_OPEN_FOLDERS`], whatever the depth), one more while a folder the walk comes back
/// to is opened again (1), and a file being hashed for its entry (1). (The folders held while
/// the listed path is resolved are closed before the walk starts.)
pub const FDS_PER_LISTING: u64 = 1 + MAX_OPEN_FOLDERS as u64 + 1 + 1;

/// Descriptors one connection may hold at once: as many as its busiest request.
pub const FDS_PER_CONNECTION: u64 = if FDS_PER_TRANSFER > FDS_PER_LISTING {
    FDS_PER_TRANSFER
} else {
    FDS_PER_LISTING
};

/// Descriptors kept for the server itself: standard streams, the listener, the runtime's
/// reactor, the signal pipe, the root and staging folder handles, partial-upload expiry, and
/// up to [`REFUSALS_IN_FLIGHT`] connections being told `busy`, and [`FDS_SPARE`].
pub const FDS_RESERVED: u64 = 64;

/// Descriptors the accept loop keeps open in reserve: when the process runs out, it lets
/// them go to accept the waiting connections and tell them `busy` (rather than leave them
/// waiting until a session ends), then takes them back.
pub const FDS_SPARE: usize = 1;

/// Connections being refused with `busy` at once; past this a refused connection is closed
/// without a reply, so a flood cannot use the descriptors kept for the server.
pub const REFUSALS_IN_FLIGHT: usize = 32;

/// The descriptors the accept loop keeps in reserve ([`FDS_SPARE`]).
#[derive(Debug, Default)]
pub(crate) struct Spare(Vec<std::fs::File>);

impl Spare {
    /// Takes back what is missing of the reserve, as far as descriptors allow.
    pub(crate) fn refill(&mut self) {
        while self.0.len() < FDS_SPARE {
            match std::fs::File::open("/dev/null") {
                Ok(file) => self.0.push(file),
                Err(_) => return,
            }
        }
    }

    /// Lets the reserve go, for the accept loop's own use; `false` if nothing was held.
    pub(crate) fn release(&mut self) -> bool {
        let held = !self.0.is_empty();
        self.0.clear();
        held
    }
}

/// Whether `e` says the process (or the system) has no descriptor left.
pub(crate) fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)
    )
}

/// Raises the soft open-file limit to the hard limit (within what the system allows a
/// process, such as macOS's `kern.maxfilesperproc`) and returns the limit now in force
/// (`None`: unlimited). Failing to raise it is not an error: the current limit is returned.
pub fn raise_open_file_limit() -> Option<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| Resource::NOFILE.get().map(|(soft, _)| soft))
        .unwrap_or(rlimit::INFINITY);
    (limit != rlimit::INFINITY).then_some(limit)
}

/// How many connections `limit` descriptors can serve (at least one); `None` (no limit)
/// serves any number.
pub fn connections_within(limit: Option<u64>) -> usize {
    match limit {
        None => usize::MAX,
        Some(n) => {
            let fit = n.saturating_sub(FDS_RESERVED) / FDS_PER_CONNECTION;
            usize::try_from(fit).unwrap_or(usize::MAX).max(1)
        }
    }
}

/// Raises the open-file limit, logs it, and returns `max_connections` lowered (with a warning)
/// if the descriptors cannot serve that many.
pub fn fit_max_connections(max_connections: usize) -> usize {
    let limit = raise_open_file_limit();
    let fit = connections_within(limit);
    let connections = fit.min(max_connections);
    match limit {
        Some(n) => log::info!(limit = n, max_connections = connections; "file descriptor limit"),
        None => {
            log::info!(limit = "unlimited", max_connections = connections; "file descriptor limit")
        }
    }
    if max_connections > fit {
        log::warn!(
            configured = max_connections, max_connections = fit, fd_limit = limit.unwrap_or(0),
            fds_per_connection = FDS_PER_CONNECTION, fds_reserved = FDS_RESERVED,
            hint = "raise the hard limit (ulimit -Hn, LimitNOFILE= in a systemd unit)";
            "max connections lowered to fit the file descriptor limit"
        );
    }
    connections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_the_descriptors_left_after_the_reserve() {
        assert_eq!(connections_within(None), usize::MAX);
        assert_eq!(FDS_PER_CONNECTION, 8);
        assert_eq!(connections_within(Some(1024)), 120);
        assert_eq!(connections_within(Some(64 + 8 * 1000)), 1000);
        // Even a tiny limit serves one connection.
        assert_eq!(connections_within(Some(20)), 1);
        assert_eq!(connections_within(Some(0)), 1);
    }
}
