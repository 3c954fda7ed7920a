//! `AUTH`: present a token; the connection acts under it from then on.
//!
//! ```text
//! > {"verb":"AUTH","token":"…"}
//! < {"ok":true,"name":"alice","access":"read"}
//! ```
//!
//! The verb only checks the token, with the server's [`Tokens`], and records what it granted in
//! the connection's [`Access`](crate::Access) ([`Context::authenticate`]). Admission
//! ([`admit`](crate::admit)) checks every later request against it, before its handler runs,
//! from what the verb declares ([`Command::writes`]): no verb, built-in or third-party, checks
//! access itself.
//!
//! A server started without tokens answers every `AUTH` with `anonymous` and `write`, which is
//! what every connection has there anyway; so a client can always send its token.

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use sft_protocol::auth::{Access, AuthReply, AuthRequest};
use sft_protocol::verbs::Verb;
use sft_protocol::{ErrorCode, Request, WireError};
use std::fmt;

/// Who a connection acts as once `AUTH` accepted its token.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's name, for replies and log lines (never the token).
    pub name: String,
    /// What the connection may do.
    pub access: Access,
    /// What the [`Tokens`] that granted it recognise it by again (the token's SHA-256 for
    /// the server's own), so that a reload can withdraw or change it.
    pub key: [u8; 32],
}

impl Grant {
    /// What every connection of a server without tokens has.
    pub fn anonymous() -> Grant {
        Grant {
            name: "anonymous".into(),
            access: Access::Write,
            key: [0; 32],
        }
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("name", &self.name)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// A server's tokens: which one a presented token is, if any.
pub trait Tokens: Send + Sync + fmt::Debug + 'static {
    /// The grant of `token`, or `None` when it is none of them. Must take the same time
    /// whichever token matched, or whether one did (compare digests in constant time).
    fn check(&self, token: &str) -> Option<Grant>;

    /// Changes whenever the tokens change (a reload): a grant made under another generation is
    /// checked again with [`Tokens::recheck`] before the connection's next request. Tokens that
    /// never change keep the default, 0.
    fn generation(&self) -> u64 {
        0
    }

    /// What `grant` allows now: the same token may have another access after a reload, or be
    /// gone (`None`). By default, what it allowed.
    fn recheck(&self, grant: &Grant) -> Option<Grant> {
        Some(grant.clone())
    }
}

/// The `AUTH` handler: checks a token with the server's [`Tokens`]
/// ([`Limits::tokens`](crate::Limits::tokens)), or grants `anonymous` write access on a server
/// without tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Auth;

/// The answer to a request on a connection that has not (validly) authenticated.
pub fn unauthorized(why: &str) -> WireError {
    WireError::new(
        ErrorCode::Unauthorized,
        format!("{why}; send {{\"verb\":\"AUTH\",\"token\":\"…\"}} first"),
    )
}

impl Command for Auth {
    fn verb(&self) -> &'static str {
        AuthRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "present a token: who it is and whether it may write"
    }

    fn public(&self) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: AuthRequest = request.args()?;
            let grant = match &ctx.limits.tokens {
                None => Grant::anonymous(),
                Some(tokens) => tokens
                    .check(&args.token)
                    .ok_or_else(|| unauthorized("this token is not valid on this server"))?,
            };
            let reply = AuthReply {
                name: grant.name.clone(),
                access: grant.access,
            };
            ctx.authenticate(grant);
            ctx.reply_ok(&reply).await.map_err(CommandError::Abort)
        })
    }
}
