//! Client errors, each mapped to a documented exit code of the `sft` command.

use crate::address::ServerAddr;
use sft_protocol::{ErrorCode, WireError};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Exit codes of the `sft` command (also listed in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// A local file could not be read or written.
    Local = 1,
    /// The command line was wrong.
    Usage = 2,
    /// The server could not be reached (name not resolved, connection refused, unreachable).
    Connect = 3,
    /// The server refused the request (not found, exists, forbidden, …).
    Refused = 4,
    /// The connection broke or was cut off during a transfer.
    CutOff = 5,
    /// The server answered something that is not the sft protocol.
    Protocol = 6,
}

/// Everything that can go wrong in a client call.
#[derive(Debug)]
pub enum Error {
    /// The server's name did not resolve.
    Resolve {
        /// The server as given.
        server: ServerAddr,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address of the server accepted the connection.
    Connect {
        /// The server as given.
        server: ServerAddr,
        /// The last connection error.
        source: io::Error,
    },
    /// The server replied with an error.
    Remote(WireError),
    /// The connection broke during a request: cut off, reset, or closed early.
    CutOff {
        /// What was going on.
        during: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The server sent something that is not a valid reply.
    Protocol(String),
    /// The request cannot be sent as given (a malformed verb or arguments, a line over the
    /// header limit, an upload without a body to send).
    Request(String),
    /// A local file or folder could not be used.
    Local {
        /// The local path.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    /// The `sft` exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Resolve { .. } | Error::Connect { .. } => ExitCode::Connect,
            Error::Remote(_) => ExitCode::Refused,
            Error::CutOff { .. } => ExitCode::CutOff,
            Error::Protocol(_) => ExitCode::Protocol,
            Error::Local { .. } => ExitCode::Local,
            Error::Request(_) => ExitCode::Usage,
        }
    }

    /// The wire error code, when the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Remote(e) => Some(e.code),
            _ => None,
        }
    }

    pub(crate) fn cut_off(during: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let during = during.into();
        move |source| Error::CutOff { during, source }
    }

    pub(crate) fn local(
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve { server, source } => {
                write!(f, "cannot resolve {}: {source}", server.host)
            }
            Error::Connect { server, source }
                if source.kind() == io::ErrorKind::ConnectionRefused =>
            {
                write!(f, "connection refused — is sft-server running on {server}?")
            }
            Error::Connect { server, source } => write!(f, "cannot connect to {server}: {source}"),
            Error::Remote(e) => {
                let what = match e.code {
                    ErrorCode::NotFound => "not found",
                    ErrorCode::Exists => {
                        return write!(f, "exists: {} (use --overwrite to replace it)", e.message)
                    }
                    ErrorCode::Forbidden => "forbidden",
                    ErrorCode::ReadOnly => "the server is read-only",
                    ErrorCode::TooLarge => "too large",
                    ErrorCode::Busy => "the server is busy",
                    ErrorCode::BadRequest => "bad request",
                    ErrorCode::UnknownVerb => "unknown verb",
                    ErrorCode::Unsupported => "unsupported",
                    ErrorCode::ChecksumMismatch => "checksum mismatch",
                    ErrorCode::Internal => "server error",
                    ErrorCode::Unknown => "refused",
                };
                write!(f, "{what}: {}", e.message)
            }
            Error::CutOff { during, source } if source.kind() == io::ErrorKind::UnexpectedEof => {
                write!(
                    f,
                    "cut off: the connection closed during {during} ({source})"
                )
            }
            Error::CutOff { during, source } => write!(f, "cut off during {during}: {source}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Request(m) => write!(f, "invalid request: {m}"),
            Error::Local {
                path,
                action,
                source,
            } => {
                write!(f, "cannot {action} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        Error::Remote(e)
    }
}
