//! Graceful shutdown on SIGINT and SIGTERM.

use crate::listener::Handle;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io;

/// Watches for SIGINT and SIGTERM on a background thread. The first one stops `handle`'s
/// server gracefully (no new connections, transfers in progress finish within the grace
/// period, then `run` returns); a second one exits the process at once with status 130.
pub fn stop_on_signals(handle: Handle) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("sft-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                if seen == 1 {
                    log::info!(signal = name, sessions = handle.session_count(); "signal received: shutting down gracefully");
                    handle.shutdown();
                } else {
                    log::warn!(signal = name; "second signal: exiting now");
                    std::process::exit(130);
                }
            }
        })?;
    Ok(())
}
