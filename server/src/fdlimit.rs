//! File descriptors: the server raises its soft limit at start-up and keeps its connection
//! limit within what the descriptors allow, so that a full house gets `busy` replies rather
//! than failed `accept`s and failed opens for everyone.

use rlimit::Resource;

/// Descriptors one connection may hold at once, counted for a busy one:
///
/// - its socket (1), and the duplicate `sendfile` registers with the reactor (1);
/// - the file it sends or receives (1) and a second handle that hashes it meanwhile (1);
/// - folder handles while a path is resolved from the root, the current and the next (2);
/// - a recursive `LIST` holds one open folder per level it is inside: 10 levels counted.
///
/// A walk deeper than 10 levels (the protocol allows 32) can hold more; 10 covers real trees,
/// and a connection over budget meets a failed open (an error line), not a stuck server.
pub const FDS_PER_CONNECTION: u64 = 16;

/// Descriptors kept for the server itself: standard streams, the listener, the runtime's
/// reactor, the signal pipe, the root and staging folder handles, partial-upload expiry, and
/// up to [`REFUSALS_IN_FLIGHT`] connections being told `busy`.
pub const FDS_RESERVED: u64 = 64;

/// Connections being refused with `busy` at once; past this a refused connection is closed
/// without a reply, so a flood cannot use the descriptors kept for the server.
pub const REFUSALS_IN_FLIGHT: usize = 32;

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
        assert_eq!(connections_within(Some(1024)), 60);
        assert_eq!(connections_within(Some(64 + 16 * 1000)), 1000);
        // Even a tiny limit serves one connection.
        assert_eq!(connections_within(Some(20)), 1);
        assert_eq!(connections_within(Some(0)), 1);
    }
}
