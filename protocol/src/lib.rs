//! The sft wire format, and nothing else.
//!
//! `PROTOCOL.md` at the repository root is the normative specification; this crate is its
//! executable form. Everything here is a pure function over bytes: no sockets, no runtime, so the
//! client and the server share one definition of the wire and it is unit-tested without I/O.
//!
//! ```text
//! request:   {"verb":"GET","path":"docs/a.txt"}\n
//! response:  {"ok":true,"size":5}\n hello
//! error:     {"ok":false,"code":"not_found","message":"no such file: docs/a.txt"}\n
//! ```
//!
//! What follows a header (nothing, a sized body, or a line stream) is decided by one rule that
//! every verb follows; [`body`] implements it, so a client can carry verbs it does not know.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(missing_debug_implementations)]

pub mod auth;
pub mod body;
pub mod delta;
mod error;
pub mod escape;
mod header;
pub mod limits;
mod line;
mod path;
pub mod verbs;

pub use error::{ErrorCode, WireError};
pub use header::{
    decode_reply, decode_request, decode_trailer, encode_call, encode_error, encode_ok,
    encode_request, encode_request_v, encode_trailer, Reply, Request,
};
pub use line::{read_line, scan_line, LineScan};
pub use path::{normalize, PathError, RemotePath};

/// The protocol version this crate speaks. Requests without a `"v"` field are version 1.
/// Version 2 adds eager uploads (PROTOCOL.md §3.1): a client sends one only to a server whose
/// `HELLO` reports at least 2. Version 3 adds delta transfers and compressed bodies (PROTOCOL.md
/// §8: `SIGN`, `GET`'s `ranges` and `compress`, `SEND`'s `delta` and `compress`).
pub const VERSION: u32 = 3;

/// The TCP port a server listens on, and a client connects to, unless told otherwise.
pub const DEFAULT_PORT: u16 = 7005;
