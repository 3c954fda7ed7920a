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

/// `GET`: download the regular file at `path`.
///
/// Reply: [`GetReply`], followed by exactly `size` raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The file, relative to the served root.
    pub path: String,
}

impl Verb for GetRequest {
    const NAME: &'static str = "GET";
}

/// Fields of a successful `GET` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReply {
    /// How many body bytes follow the reply line.
    pub size: u64,
}

/// `SEND`: upload `size` bytes to `path`.
///
/// The server first answers with a go-ahead ([`Empty`]) or an error; only after a go-ahead does
/// the client send exactly `size` raw bytes, and the server then answers with [`SendReply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The destination, relative to the served root. Missing parent folders are created.
    pub path: String,
    /// The exact number of body bytes the client will send.
    pub size: u64,
    /// Replace an existing file at `path` (otherwise the upload is refused with `exists`).
    #[serde(default)]
    pub overwrite: bool,
}

impl Verb for SendRequest {
    const NAME: &'static str = "SEND";
}

/// Fields of the final reply to a `SEND`, once the file is stored under its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReply {
    /// Bytes stored.
    pub size: u64,
}
