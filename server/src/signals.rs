//! What signals do to a running server: SIGINT and SIGTERM stop it gracefully; SIGHUP reloads
//! the tokens file and never stops it.

use crate::listener::Handle;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
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

/// SIGHUP, caught: from [`Hangups::catch`] on, a SIGHUP no longer has its default action
/// (ending the process). `systemctl reload` sends one whenever an operator asks, with or
/// without `--tokens`, and possibly while the server is still starting: those that arrive
/// before the server runs wait, and are handled once [`Hangups::reload`] is called.
#[derive(Debug)]
pub struct Hangups {
    signals: Signals,
}

impl Hangups {
    /// Catches SIGHUP from now on. Called first thing in `main`, before anything slow (parsing,
    /// binding, loading tokens or certificates).
    pub fn catch() -> io::Result<Hangups> {
        Ok(Hangups {
            signals: Signals::new([SIGHUP])?,
        })
    }

    /// Answers every SIGHUP caught so far and from now on, on a background thread: reloads the
    /// tokens file of `handle`'s server (`--tokens`), or logs that there is nothing to reload.
    pub fn reload(mut self, handle: Handle) -> io::Result<()> {
        std::thread::Builder::new()
            .name("sft-reload".into())
            .spawn(move || {
                let tokens = handle.has_tokens();
                if tokens {
                    log::debug!("SIGHUP reloads the tokens file");
                }
                for _ in self.signals.forever() {
                    if tokens {
                        log::info!(signal = "SIGHUP"; "signal received: reloading the tokens file");
                        let _ = handle.reload_tokens();
                    } else {
                        log::info!(signal = "SIGHUP"; "signal received: nothing to reload (no --tokens)");
                    }
                }
            })?;
        Ok(())
    }
}
