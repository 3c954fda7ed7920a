//! How the connections of a run are made: the options of the command line that say it
//! (`--timeout`, `--token`, `--insecure-token`, `--limit-rate`, `--tls`, `--ca`,
//! `--fingerprint`), as one value built once from them and handed to every command.

use super::tls::Tls;
use super::Common;
use sft_client::{Client, ConnectOptions, Error, ServerAddr};

/// The connection settings of a run.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Everything but TLS, which depends on the server (the known-hosts file).
    options: ConnectOptions,
    tls: Tls,
}

impl Settings {
    /// The settings the command line gives.
    pub(crate) fn new(common: &Common) -> Settings {
        Settings {
            options: ConnectOptions {
                timeout: common.stall(),
                tls: None,
                // An empty token (`SFT_TOKEN=`) counts as none.
                token: common.token.clone().filter(|t| !t.is_empty()),
                token_in_plaintext: common.insecure_token,
                rate_limit: common.limit_rate,
            },
            tls: Tls::new(common.tls_flags()),
        }
    }

    /// Connects to `server` (over TLS as `--tls`, `--ca`, `--fingerprint` or the known-hosts
    /// file say) and, with a token, authenticates. A token is refused before connecting when
    /// it would cross the network in plaintext without `--insecure-token`.
    pub(crate) async fn connect(&self, server: &ServerAddr) -> Result<Client, Error> {
        let secured = self.tls.secured(server).await?;
        let options = ConnectOptions {
            tls: secured.as_ref().map(|s| s.settings.clone()),
            ..self.options.clone()
        };
        let client = Client::connect_with(server.clone(), &options).await?;
        if let Some(secured) = &secured {
            self.tls.connected(server, secured).await;
        }
        Ok(client)
    }
}
