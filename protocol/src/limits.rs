//! Fixed limits of the wire format. Server-configurable limits live in the server's config.

/// Longest header line, in bytes, including its terminating `\n`. A peer that sends more
/// without a newline gets `too_large` and the connection is closed: the reader never buffers
/// past this many bytes for a header.
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Longest path argument, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Longest single path component, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
