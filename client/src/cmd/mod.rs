//! The `sft` subcommands that look at the server's folder or call verbs generically, one file
//! each. (`get` and `send` live in `main.rs`.)

pub(crate) mod call;
pub(crate) mod ls;
pub(crate) mod stat;
mod time;

use crate::Failure;
use sft_client::Error;
use std::io;
use std::path::PathBuf;

/// A failed write to standard output (a closed pipe, a full disk) as a local error.
fn stdout_failed(source: io::Error) -> Failure {
    Failure::Client(Error::Local {
        path: PathBuf::from("-"),
        action: "write",
        source,
    })
}
