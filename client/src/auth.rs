//! Presenting a token (`AUTH`), and where a token may be sent at all.
//!
//! Over a plaintext connection anyone on the path between client and server can read a token.
//! A token therefore goes over TLS, or in plaintext only to loopback addresses (this machine)
//! unless the caller says otherwise ([`Client::authenticate_in_plaintext`],
//! [`ConnectOptions::token_in_plaintext`](crate::ConnectOptions), `sft --insecure-token`). The
//! rule holds for every way a token leaves the client: the connect's token,
//! [`Client::authenticate`], and a generic call of `AUTH` or with a `"token"` argument
//! ([`Client::call`]).

use crate::address::ServerAddr;
use crate::client::Client;
use crate::error::Error;
use async_std::net::ToSocketAddrs;
use sft_protocol::auth::{AuthReply, AuthRequest};
use std::net::{IpAddr, SocketAddr};

pub use sft_protocol::auth::Access;

impl Client {
    /// Authenticates this connection with `token`: the server answers with the token's name and
    /// access, which hold for the rest of the connection. A token the server does not know is
    /// `Error::Remote` with code `unauthorized`.
    ///
    /// Over plaintext, refused without sending anything (`Error::Request`) when the server is
    /// not on this machine: the token would be readable on the way (unless the client was
    /// connected with [`ConnectOptions::token_in_plaintext`](crate::ConnectOptions)). Over
    /// TLS, sent to any server.
    pub async fn authenticate(&mut self, token: &str) -> Result<AuthReply, Error> {
        self.check_token_may_go()?;
        self.authenticate_in_plaintext(token).await
    }

    /// Whether a token may be sent over this connection: over TLS, in plaintext to this
    /// machine, or anywhere when the client was told so. Otherwise `Error::Request`, and
    /// nothing is sent.
    pub(crate) fn check_token_may_go(&self) -> Result<(), Error> {
        if self.token_in_plaintext {
            return Ok(());
        }
        if let Some(socket) = self.conn.writer.get_ref().tcp() {
            let peer = socket.peer_addr().map_err(Error::cut_off("AUTH"))?;
            if !peer.ip().to_canonical().is_loopback() {
                return Err(plaintext_refused(&peer.to_string()));
            }
        }
        Ok(())
    }

    /// Authenticates this connection with `token` whatever the server's address: anyone who
    /// can watch the connection can read the token.
    pub async fn authenticate_in_plaintext(&mut self, token: &str) -> Result<AuthReply, Error> {
        let mut x = self.conn.begin()?;
        x.request(&AuthRequest {
            token: token.to_owned(),
        })
        .await?;
        let reply = x.reply("AUTH").await?;
        x.done();
        Ok(reply)
    }
}

/// Checks, before connecting, that a token may be sent to `server` in plaintext: every
/// address it names or resolves to is a loopback address. Otherwise `Error::Request`, which
/// says how to send it anyway. (A name that does not resolve is left for the connect to
/// report.)
pub async fn check_token_destination(server: &ServerAddr) -> Result<(), Error> {
    let addrs: Vec<SocketAddr> = match server.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, server.port)],
        Err(_) => match (server.host.as_str(), server.port).to_socket_addrs().await {
            Ok(addrs) => addrs.collect(),
            Err(_) => return Ok(()),
        },
    };
    if addrs.iter().all(|a| a.ip().to_canonical().is_loopback()) {
        Ok(())
    } else {
        Err(plaintext_refused(&server.to_string()))
    }
}

fn plaintext_refused(server: &str) -> Error {
    Error::Request(format!(
        "not sending the token to {server}: the connection is not encrypted and the address is \
         not on this machine, so anyone on the way could read it; connect with TLS (--tls, --ca \
         or --fingerprint) if the server serves it, or pass --insecure-token to send it anyway"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str) -> ServerAddr {
        ServerAddr {
            host: host.into(),
            port: 7005,
        }
    }

    #[test]
    fn tokens_go_in_plaintext_to_loopback_only() {
        async_std::task::block_on(async {
            for ok in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
                assert!(check_token_destination(&at(ok)).await.is_ok(), "{ok}");
            }
            for far in ["192.0.2.1", "2001:db8::1", "0.0.0.0", "::ffff:192.0.2.1"] {
                let e = check_token_destination(&at(far)).await.unwrap_err();
                assert!(e.to_string().contains("--insecure-token"), "{far}: {e}");
            }
        });
    }
}
