use crate::context::Context;
use sft_protocol::{Request, WireError};
use std::future::Future;
use std::pin::Pin;

/// A boxed future borrowed for `'a`, the return type of [`Command::run`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A verb's server-side handler.
///
/// `run` gets the decoded request header and the connection's [`Context`]. It decodes its typed
/// arguments with [`Request::args`], does the work, and writes its reply (and any body) through
/// the context. It returns:
/// - `Ok(())` once its whole reply is written (the session flushes it);
/// - `Err(CommandError::Reply(e))` if it failed *before writing anything*: the session sends `e`
///   as an error reply and the connection stays usable;
/// - `Err(CommandError::Abort(e))` if the connection is out of step (a body was cut off, or a
///   reply was half written): the session closes it.
pub trait Command: Send + Sync + 'static {
    /// The verb this handler answers, upper case (`"GET"`).
    fn verb(&self) -> &'static str;

    /// One line saying what the verb does, for clients that discover a server's verbs.
    fn summary(&self) -> &'static str {
        ""
    }

    /// Whether the verb changes the served tree: a read-only server refuses it with
    /// `read_only` before it runs (and access control treats it as a write).
    fn writes(&self) -> bool {
        false
    }

    /// Handles one request.
    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>>;
}

/// How a handler failed; see [`Command::run`].
#[derive(Debug)]
pub enum CommandError {
    /// Nothing was written: reply with this error and go on with the next request.
    Reply(WireError),
    /// The connection is out of step: close it.
    Abort(std::io::Error),
}

impl From<WireError> for CommandError {
    fn from(e: WireError) -> Self {
        CommandError::Reply(e)
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Reply(e) => write!(f, "{e}"),
            CommandError::Abort(e) => write!(f, "connection aborted: {e}"),
        }
    }
}
