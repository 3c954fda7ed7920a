//! The log line that says a long transfer began.
//!
//! Every request is logged when it ends, with its bytes and time. A transfer that may take long
//! — a body of at least [`LARGE_TRANSFER`] bytes, or a chunked upload, whose length is not known
//! — is also logged when its body starts, so that an operator sees what a server is busy with
//! (and who started it) while it runs.

use crate::context::Context;

/// Bodies of at least this many bytes (64 MiB) are logged when they start, not only when they
/// end.
pub const LARGE_TRANSFER: u64 = 64 * 1024 * 1024;

/// Logs that the body of a `verb` request began: `bytes` of it (`None`: not known, as for a
/// chunked upload), if that is large or not known.
pub(crate) fn log_start(ctx: &Context<'_>, verb: &str, bytes: Option<u64>) {
    if bytes.is_some_and(|n| n < LARGE_TRANSFER) || !log::log_enabled!(log::Level::Info) {
        return;
    }
    // The server's logger escapes control and bidirectional characters in values.
    let path = ctx.stats.path.as_deref().unwrap_or_default();
    match bytes {
        Some(bytes) => log::info!(
            session = ctx.session, peer:% = ctx.peer, verb = verb, path = path, bytes = bytes;
            "transfer started"
        ),
        None => log::info!(
            session = ctx.session, peer:% = ctx.peer, verb = verb, path = path, body = "chunked";
            "transfer started"
        ),
    }
}
