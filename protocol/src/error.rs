use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable error class carried in every error reply.
///
/// Codes are part of the protocol: they never change meaning. A peer that receives a code it does
/// not know decodes it as [`ErrorCode::Unknown`] and still has the message to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The named file or folder does not exist.
    NotFound,
    /// The header is not valid JSON, lacks a field, has a field of the wrong type, or names
    /// something that is not a regular file where one is needed.
    BadRequest,
    /// No handler is registered for the verb.
    UnknownVerb,
    /// The target exists and the request did not ask to overwrite it.
    Exists,
    /// The path is absolute, leaves the served root, or names a reserved location; or the
    /// connection's token does not allow the request (a `read` token asking to write).
    Forbidden,
    /// The server requires a token (`AUTH`) and the connection has not given a valid one.
    Unauthorized,
    /// The server serves only TLS and the connection is plaintext (sent once, before the
    /// server closes the connection).
    TlsRequired,
    /// A header line or a declared body exceeds a limit.
    TooLarge,
    /// The server refuses writes.
    ReadOnly,
    /// The server is at its connection limit.
    Busy,
    /// The request uses a protocol version or feature this peer does not support.
    Unsupported,
    /// Transferred bytes do not match the declared checksum.
    ChecksumMismatch,
    /// The file is no longer the version the request names (a delta's basis, PROTOCOL.md §8):
    /// look at it again, or transfer it whole.
    Changed,
    /// The server failed (disk full, permission denied, …); the request may succeed later.
    Internal,
    /// The server's storage did not answer in time (a hung or unreachable network file
    /// system): what the request changed is unknown; it may succeed later, or on another server.
    /// From `HELLO`: the server's storage does not answer now.
    Unavailable,
    /// A code this build does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code, in declaration order (for tables keyed by code, such as metrics).
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::NotFound,
        ErrorCode::BadRequest,
        ErrorCode::UnknownVerb,
        ErrorCode::Exists,
        ErrorCode::Forbidden,
        ErrorCode::Unauthorized,
        ErrorCode::TlsRequired,
        ErrorCode::TooLarge,
        ErrorCode::ReadOnly,
        ErrorCode::Busy,
        ErrorCode::Unsupported,
        ErrorCode::ChecksumMismatch,
        ErrorCode::Changed,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::Unknown,
    ];

    /// This code's place in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownVerb => "unknown_verb",
            ErrorCode::Exists => "exists",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TlsRequired => "tls_required",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::Busy => "busy",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::Changed => "changed",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as carried by an error reply: a stable code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The machine-readable class.
    pub code: ErrorCode,
    /// Human-readable detail; never parsed by peers.
    pub message: String,
}

impl WireError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }

    /// `bad_request` with the given message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `internal` with the given message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// `not_found` with the given message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `exists` with the given message.
    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Exists, message)
    }

    /// `forbidden` with the given message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `too_large` with the given message.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn all_lists_every_code_once_at_its_index() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code:?}");
        }
        // A code added to the enum but not to ALL would index past its end.
        assert_eq!(ErrorCode::Unknown.index() + 1, ErrorCode::ALL.len());
    }
}
