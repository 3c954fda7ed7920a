//! `--token` / `SFT_TOKEN`: connecting with a token, sent once per connection right after it
//! is made.

use sft_client::{check_token_destination, Client, Error, ServerAddr};
use std::time::Duration;

/// A token to present, and whether it may cross the network in plaintext.
#[derive(Clone)]
pub(crate) struct Token {
    secret: String,
    /// `--insecure-token`: send it to any address, though the connection is not encrypted.
    /// (Over TLS it goes to any address anyway.)
    insecure: bool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// The token of `--token` or `SFT_TOKEN`, if any (an empty one counts as none).
    pub(crate) fn new(secret: Option<&str>, insecure: bool) -> Option<Token> {
        secret.filter(|s| !s.is_empty()).map(|s| Token {
            secret: s.to_owned(),
            insecure,
        })
    }
}

/// Connects to `server` within `limit` (over TLS as `--tls`, `--ca`, `--fingerprint` or the
/// known-hosts file say) and, with a token, authenticates. A token is refused before
/// connecting when it would cross the network in plaintext without `--insecure-token`.
pub(crate) async fn connect(
    server: &ServerAddr,
    limit: Option<Duration>,
    token: Option<&Token>,
) -> Result<Client, Error> {
    let secured = super::tls::secured(server).await?;
    if token.is_some_and(|t| !t.insecure) && secured.is_none() {
        check_token_destination(server).await?;
    }
    let settings = secured.as_ref().map(|s| &s.settings);
    let mut client = Client::connect_with(server.clone(), limit, settings).await?;
    if let Some(secured) = &secured {
        super::tls::connected(server, secured).await;
    }
    match token {
        None => {}
        Some(t) if t.insecure => {
            client.authenticate_in_plaintext(&t.secret).await?;
        }
        Some(t) => {
            client.authenticate(&t.secret).await?;
        }
    }
    Ok(client)
}
