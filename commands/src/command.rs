use crate::context::Context;
use sft_protocol::body::Upload;
use sft_protocol::{Request, WireError};
use std::future::Future;
use std::pin::Pin;

/// A boxed future borrowed for `'a`, the return type of [`Command::run`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a request to a verb may carry after its header (PROTOCOL.md §3.1), as the verb
/// declares it with [`Command::accepts`].
///
/// Admission ([`admit`](crate::admit)) enforces it before the handler runs: a request whose header declares a body
/// (a `size` or a `body` field) the verb does not take is answered `bad_request`, and no body
/// is sent, since the client waits for a go-ahead. A verb that takes a body still decides
/// itself whether one is *required*, and sends the go-ahead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Accepts {
    /// Nothing: the header is the whole request (`GET`, `STAT`, `LIST`, `MKDIR`). The default.
    #[default]
    Nothing,
    /// A body of declared length: `"size":N` in the header.
    Sized,
    /// A chunked body (PROTOCOL.md §3.3): `"body":"chunked"` in the header.
    Chunked,
    /// Either of the two (`SEND`).
    SizedOrChunked,
}

impl Accepts {
    /// Whether a request declaring `upload` may go on to this verb.
    pub fn allows(self, upload: Upload) -> bool {
        matches!(
            (self, upload),
            (Accepts::Sized | Accepts::SizedOrChunked, Upload::Sized(_))
                | (Accepts::Chunked | Accepts::SizedOrChunked, Upload::Chunked)
        )
    }
}

/// A verb's server-side handler.
///
/// `run` gets the decoded request header and the connection's [`Context`]. The session has
/// already admitted it by what the verb declares (see [`admit`](crate::admit): token,
/// [`Command::writes`], [`Command::accepts`]), so a handler never sees a body it did not
/// declare, nor runs on a read-only server if it writes.
/// It decodes its typed arguments with [`Request::args`], does the work, and writes its reply
/// (and any body) through the context. It returns:
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

    /// Whether the verb answers a connection that has not authenticated, on a server that
    /// requires a token (`HELLO` and `AUTH` do): the session refuses every other verb with
    /// `unauthorized` until then. Such a verb must reveal nothing of the served folder.
    fn public(&self) -> bool {
        false
    }

    /// Whether the verb is a health check, sent by a load balancer every few seconds (`HELLO`
    /// is): a connection that makes only such requests, all answered `ok`, and closes is
    /// logged at `debug` rather than `info`, so the checks do not fill the log.
    fn health_check(&self) -> bool {
        false
    }

    /// What a request may carry after its header; [`Accepts::Nothing`] unless overridden. The
    /// session refuses any other body with `bad_request` before the handler runs, so a verb that
    /// takes none need not look for one.
    fn accepts(&self) -> Accepts {
        Accepts::Nothing
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

impl From<sft_io::Hung> for CommandError {
    fn from(hung: sft_io::Hung) -> Self {
        CommandError::Reply(hung.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_takes_nothing() {
        assert_eq!(Accepts::default(), Accepts::Nothing);
        assert!(!Accepts::Nothing.allows(Upload::Sized(0)));
        assert!(!Accepts::Nothing.allows(Upload::Chunked));
    }
}
