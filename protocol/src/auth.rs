//! `AUTH`: present a token; the server answers who it belongs to and what it may do.
//!
//! ```text
//! > {"verb":"AUTH","token":"correct horse battery staple"}
//! < {"ok":true,"name":"alice","access":"read"}
//! ```
//!
//! A token the server does not know is answered `unauthorized`. A server that requires no token
//! answers every `AUTH` with `{"name":"anonymous","access":"write"}` (PROTOCOL.md, `AUTH`).

use crate::verbs::Verb;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Every verb that does not write (those whose `writes` is false in `HELLO`).
    Read,
    /// Every verb.
    Write,
}

impl Access {
    /// The access as it appears on the wire and in a tokens file: `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `AUTH`: the token this connection acts under from now on.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The token itself (the server knows only its SHA-256).
    pub token: String,
}

impl fmt::Debug for AuthRequest {
    // A token never ends up in a log line or a panic message by way of `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("token", &"<hidden>")
            .finish()
    }
}

impl Verb for AuthRequest {
    const NAME: &'static str = "AUTH";
}

/// Fields of a successful `AUTH` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthReply {
    /// The token's name (`anonymous` on a server that requires no token).
    pub name: String,
    /// What the connection may do from now on.
    pub access: Access,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_request, encode_request};

    #[test]
    fn auth_round_trips_and_hides_its_token() {
        let request = AuthRequest {
            token: "s3cret".into(),
        };
        let mut line = Vec::new();
        encode_request(&request, &mut line);
        assert_eq!(line, b"{\"verb\":\"AUTH\",\"token\":\"s3cret\"}\n");
        let decoded: AuthRequest = decode_request(&line).unwrap().args().unwrap();
        assert_eq!(decoded, request);
        assert!(!format!("{request:?}").contains("s3cret"));
        let reply: AuthReply = serde_json::from_str(r#"{"name":"alice","access":"read"}"#).unwrap();
        assert_eq!(reply.access, Access::Read);
    }
}
