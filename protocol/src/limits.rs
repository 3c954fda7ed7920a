//! Fixed limits of the wire format. Server-configurable limits live in the server's config.

/// Longest header line, in bytes, including its terminating `\n`. A peer that sends more
/// without a newline gets `too_large` and the connection is closed: the reader never buffers
/// past this many bytes for a header.
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Longest path argument, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Longest single path component, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Deepest level a recursive `LIST` descends to: the listed folder's entries are level 1, and a
/// folder at this level is listed but its contents are not (it carries an `error` instead).
/// The server keeps one open folder per level, so this also bounds its file handles per listing.
pub const MAX_LIST_DEPTH: usize = 32;

/// Largest chunk of a chunked upload body (PROTOCOL.md §3.3), in bytes. A chunk header that
/// declares more is `too_large` and the connection is closed.
pub const MAX_CHUNK_LEN: u64 = 1024 * 1024;

/// The fewest bytes an interrupted upload must hold for the server to keep it for a resume
/// (PROTOCOL.md, SEND): 64 KiB. Sending that much again costs a client less than the server
/// spends keeping, indexing and later evicting a file. A client knows from it that a smaller
/// upload has no partial to continue.
pub const MIN_KEPT_PARTIAL: u64 = 64 * 1024;
