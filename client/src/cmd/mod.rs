//! The `sft` subcommands, one file each, and what they share: the common options, the
//! terminal display ([`ui`]), retries and reports ([`transfer`]), and local file safety
//! ([`local`]).

pub(crate) mod call;
pub(crate) mod get;
mod glob;
pub(crate) mod info;
pub(crate) mod local;
pub(crate) mod ls;
pub(crate) mod mv;
mod plan;
pub(crate) mod rm;
pub(crate) mod send;
pub(crate) mod stat;
mod sync;
pub(crate) mod terminal;
mod time;
pub(crate) mod transfer;
pub(crate) mod ui;

use crate::Failure;
use sft_client::Error;
use std::io;
use std::path::PathBuf;
use structopt::StructOpt;

// Options every subcommand that talks to a server takes. A plain comment, not a doc comment:
// structopt would show a flattened struct's doc as the `about` of every subcommand holding it.
#[derive(Debug, StructOpt)]
pub(crate) struct Common {
    /// Port to use when SERVER names none.
    #[structopt(short, long, default_value = "7005")]
    pub(crate) port: u16,
    /// Print nothing on success: no progress, no summary (errors are still shown).
    #[structopt(short, long)]
    pub(crate) quiet: bool,
    /// Say more: a line per file, connections, retries.
    #[structopt(short, long)]
    pub(crate) verbose: bool,
    /// Print JSON on standard output: the result (for `ls`, one JSON document), or the error.
    #[structopt(long)]
    pub(crate) json: bool,
    /// Give up on connecting (all of the server's addresses together), or on a transfer that
    /// moves nothing, after this many seconds (0: wait as long as the system does). A stalled
    /// transfer counts as cut off: see --retries, -c.
    #[structopt(long, default_value = "60", value_name = "SECS")]
    pub(crate) timeout: u64,
}

impl Common {
    /// `--timeout` as the client library takes it.
    pub(crate) fn stall(&self) -> Option<std::time::Duration> {
        (self.timeout > 0).then(|| std::time::Duration::from_secs(self.timeout))
    }
}

/// Wraps a local I/O error with the path and what was attempted.
pub(crate) fn local_error(
    path: impl Into<PathBuf>,
    action: &'static str,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Local {
        path,
        action,
        source,
    }
}

/// A failed write to standard output (a closed pipe, a full disk) as a local error.
fn stdout_failed(source: io::Error) -> Failure {
    Failure::Client(Error::Local {
        path: PathBuf::from("-"),
        action: "write",
        source,
    })
}
