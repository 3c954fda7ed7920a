//! Typed arguments and reply fields of the built-in verbs.
//!
//! The client encodes requests from these types and the server's handlers decode them, so both
//! sides share one definition. Fields added later are optional (`#[serde(default)]`), which keeps
//! older peers working.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request type: its arguments serialize to a JSON object and it names its verb.
pub trait Verb: Serialize + DeserializeOwned {
    /// The verb, upper case, as sent on the wire.
    const NAME: &'static str;
}

/// Reply fields for replies that carry none: `{"ok":true}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `GET`: download the regular file at `path`, or the part of it from `offset` on.
///
/// Reply: [`GetReply`], followed by exactly `size` raw bytes, then — if the reply says
/// `"trailer":true` — one [`GetTrailer`] line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The file, relative to the served root.
    pub path: String,
    /// Skip this many bytes (resume a download): the body is the file from here to its end.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// Ask for the whole file's BLAKE3 hash, in the reply or in a trailer after the body.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hash: bool,
}

impl Verb for GetRequest {
    const NAME: &'static str = "GET";
}

/// Fields of a successful `GET` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReply {
    /// How many body bytes follow the reply line (the file's size minus `offset`).
    pub size: u64,
    /// The offset the body starts at, echoed when the request gave one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The whole file's size, when the request gave an offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    /// The whole file's BLAKE3 hash (64 hex digits), when asked for and already known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// When asked for a hash the server did not know yet: a [`GetTrailer`] line follows the body.
    #[serde(default, skip_serializing_if = "is_false")]
    pub trailer: bool,
}

/// The line after a `GET` body whose reply said `"trailer":true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetTrailer {
    /// The whole file's BLAKE3 hash (64 hex digits), computed while it was sent.
    pub blake3: String,
}

/// `SEND`: upload `size` bytes to `path`.
///
/// The server first answers with a go-ahead ([`SendReady`]) or an error; only after a go-ahead
/// does the client send the body (`size - offset` raw bytes), and the server then answers with
/// [`SendReply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The destination, relative to the served root. Missing parent folders are created.
    pub path: String,
    /// The exact number of body bytes the client will send.
    pub size: u64,
    /// Replace an existing file at `path` (otherwise the upload is refused with `exists`).
    #[serde(default)]
    pub overwrite: bool,
    /// The whole file's BLAKE3 hash (64 hex digits). The server stores the file only if the
    /// bytes it received hash to this, and keeps an interrupted upload so it can be resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Continue an interrupted upload of the same `path`, `size` and `blake3`: the go-ahead
    /// says from which offset to send.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resume: bool,
}

/// The go-ahead of a `SEND`: send the body from `offset` on (`size - offset` bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReady {
    /// Bytes the server already holds from an interrupted upload (0 without `resume`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
}

impl Verb for SendRequest {
    const NAME: &'static str = "SEND";
}

/// Fields of the final reply to a `SEND`, once the file is stored under its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReply {
    /// Bytes stored.
    pub size: u64,
    /// The stored file's BLAKE3 hash, when the request declared one (it matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// Whether `s` is a BLAKE3 hash as the protocol writes it: 64 lower-case hex digits.
pub fn is_blake3_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
