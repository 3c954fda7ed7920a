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
    /// The server could not be reached (name not resolved, connection refused, unreachable), or
    /// it closed the connection at once, before answering (as it does to an address its
    /// `--allow` list leaves out).
    Connect = 3,
    /// The server refused the request (not found, exists, forbidden, …).
    Refused = 4,
    /// The connection broke or was cut off during a transfer, or the server was busy: a
    /// transient failure, worth trying again (`--retries`).
    CutOff = 5,
    /// The server answered something that is not the sft protocol.
    Protocol = 6,
    /// What arrived does not match its BLAKE3 hash (nothing was stored under the final name).
    Integrity = 7,
    /// The server's TLS certificate was refused: unknown, not for its name, or not the one
    /// pinned (nothing was sent).
    Untrusted = 8,
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
    /// The server closed the connection before it sent a byte: what `sft-server --allow` does
    /// to an address it does not admit (or a server stopping, or one whose idle timeout ran
    /// out before a first request sent late). Not transient: trying again from the same
    /// address cannot help.
    ClosedAtOnce {
        /// What was going on.
        during: String,
    },
    /// The server sent something that is not a valid reply.
    Protocol(String),
    /// The bytes that arrived do not hash to what the sender vouched for.
    Integrity {
        /// The remote path.
        what: String,
        /// The hash the sender vouched for.
        expected: String,
        /// The hash of what arrived.
        actual: String,
    },
    /// The request cannot be sent as given (a malformed verb or arguments, a line over the
    /// header limit, an upload without a body to send).
    Request(String),
    /// The server's TLS certificate was refused (before anything was sent).
    Certificate {
        /// The server as given.
        server: ServerAddr,
        /// What was wrong, and the certificate's fingerprint.
        refusal: Box<crate::tls::Refusal>,
    },
    /// The TLS handshake failed for another reason (the server does not serve TLS, no common
    /// protocol version…).
    Tls {
        /// The server as given.
        server: ServerAddr,
        /// The handshake's error.
        source: io::Error,
    },
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
            Error::Resolve { .. }
            | Error::Connect { .. }
            | Error::Tls { .. }
            | Error::ClosedAtOnce { .. } => ExitCode::Connect,
            Error::Certificate { .. } => ExitCode::Untrusted,
            Error::Remote(e) if e.code == ErrorCode::ChecksumMismatch => ExitCode::Integrity,
            // "Try again later": as transient as a connection cut off.
            Error::Remote(e) if matches!(e.code, ErrorCode::Busy | ErrorCode::Unavailable) => {
                ExitCode::CutOff
            }
            Error::Remote(_) => ExitCode::Refused,
            Error::CutOff { .. } => ExitCode::CutOff,
            Error::Protocol(_) => ExitCode::Protocol,
            Error::Integrity { .. } => ExitCode::Integrity,
            Error::Local { .. } => ExitCode::Local,
            Error::Request(_) => ExitCode::Usage,
        }
    }

    /// Whether trying again later may succeed: the connection was cut off, or the server said
    /// it is busy or its storage did not answer. `--retries` retries these, and they share an
    /// exit code.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::CutOff { .. } => true,
            Error::Remote(e) => matches!(e.code, ErrorCode::Busy | ErrorCode::Unavailable),
            _ => false,
        }
    }

    /// The wire error code, when the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Remote(e) => Some(e.code),
            _ => None,
        }
    }

    /// A stable machine-readable name for this error (`--json` output): the server's code for
    /// refusals, otherwise one of `resolve_failed`, `connect_failed`, `closed_at_once`,
    /// `tls_failed`, `untrusted_certificate`, `cut_off`, `protocol`, `local_io`,
    /// `checksum_mismatch`.
    pub fn code_name(&self) -> &'static str {
        match self {
            Error::Resolve { .. } => "resolve_failed",
            Error::Connect { .. } => "connect_failed",
            Error::ClosedAtOnce { .. } => "closed_at_once",
            Error::Tls { .. } => "tls_failed",
            Error::Certificate { .. } => "untrusted_certificate",
            Error::Remote(e) => e.code.as_str(),
            Error::CutOff { .. } => "cut_off",
            Error::Protocol(_) => "protocol",
            Error::Local { .. } => "local_io",
            Error::Integrity { .. } => "checksum_mismatch",
            Error::Request(_) => "bad_request",
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
                write!(
                    f,
                    "could not resolve {} (port {}): {}",
                    server.host,
                    server.port,
                    innermost(source)
                )
            }
            Error::Connect { server, source }
                if source.kind() == io::ErrorKind::ConnectionRefused =>
            {
                write!(f, "connection refused — is sft-server running on {server}?")
            }
            Error::Connect { server, source } => write!(f, "cannot connect to {server}: {source}"),
            Error::Certificate { server, refusal } => crate::tls::describe(server, refusal, f),
            Error::Tls { server, source } => crate::tls::describe_failure(server, source, f),
            Error::Remote(e) => {
                let what = match e.code {
                    ErrorCode::NotFound => "not found",
                    ErrorCode::Exists => {
                        return write!(f, "exists: {} (use --overwrite to replace it)", e.message)
                    }
                    ErrorCode::Forbidden => "forbidden",
                    ErrorCode::Unauthorized => {
                        return write!(
                            f,
                            "unauthorized: {} (pass --token TOKEN or set SFT_TOKEN)",
                            e.message
                        )
                    }
                    // The server's own sentence says it all ("this server is read-only",
                    // "the server is at its limit of …"): a label before it would stutter.
                    ErrorCode::ReadOnly | ErrorCode::Busy | ErrorCode::TlsRequired => {
                        return f.write_str(&e.message)
                    }
                    ErrorCode::TooLarge => "too large",
                    ErrorCode::BadRequest => "bad request",
                    ErrorCode::UnknownVerb => "unknown verb",
                    ErrorCode::Unsupported => "unsupported",
                    ErrorCode::ChecksumMismatch => "checksum mismatch",
                    ErrorCode::Changed => "changed",
                    ErrorCode::Internal => "server error",
                    ErrorCode::Unavailable => "storage not answering",
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
            Error::ClosedAtOnce { during } => write!(
                f,
                "the server closed the connection at once, before answering {during}: this \
                 address may not be allowed there (sft-server --allow), or the server was stopping"
            ),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Integrity { what, expected, actual } => write!(
                f,
                "checksum mismatch: {what} arrived with BLAKE3 {actual}, expected {expected}; it was not stored"
            ),
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

/// The error at the bottom of `e`'s chain: the resolver's own words, without the wrapping that
/// repeats the address as a Rust value.
fn innermost(e: &io::Error) -> String {
    let mut at: &dyn std::error::Error = e;
    while let Some(next) = at.source() {
        at = next;
    }
    at.to_string()
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        Error::Remote(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolve_error_names_host_and_port_in_plain_text() {
        // How async-std wraps a resolver error: the address as a Rust tuple.
        let inner = io::Error::other("failed to lookup address information");
        let wrapped = io::Error::other(Wrapped(
            inner,
            "could not resolve address `(\"files.example\", 7005)`".into(),
        ));
        let e = Error::Resolve {
            server: ServerAddr {
                host: "files.example".into(),
                port: 7005,
            },
            source: wrapped,
        };
        let text = e.to_string();
        assert_eq!(
            text,
            "could not resolve files.example (port 7005): failed to lookup address information"
        );
    }

    #[test]
    fn unauthorized_is_a_refusal_that_says_how_to_pass_a_token() {
        let e = Error::Remote(WireError::new(
            ErrorCode::Unauthorized,
            "a token is required",
        ));
        assert_eq!(e.exit_code(), ExitCode::Refused);
        assert!(!e.is_transient());
        assert_eq!(e.code_name(), "unauthorized");
        let text = e.to_string();
        assert!(
            text.contains("--token") && text.contains("SFT_TOKEN"),
            "{text}"
        );
    }

    #[test]
    fn busy_is_transient() {
        let e = Error::Remote(WireError::new(ErrorCode::Busy, "try later"));
        assert_eq!(e.exit_code(), ExitCode::CutOff);
    }

    #[test]
    fn a_servers_whole_sentence_is_not_labelled_again() {
        let e = Error::Remote(WireError::new(
            ErrorCode::ReadOnly,
            "this server is read-only",
        ));
        assert_eq!(e.to_string(), "this server is read-only");
        let e = Error::Remote(WireError::new(ErrorCode::NotFound, "no such file: a.txt"));
        assert_eq!(e.to_string(), "not found: no such file: a.txt");
    }

    #[derive(Debug)]
    struct Wrapped(io::Error, String);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.1)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
