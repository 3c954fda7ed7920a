//! A connection to an sft server, carrying requests one after another: connecting, and the
//! settings every verb shares. The verbs are in files of their own (`get.rs`, `send.rs`…).

use crate::address::{parse_server, ServerAddr};
use crate::auth::check_token_destination;
use crate::conn::{stalled, Conn};
use crate::error::Error;
use crate::partial::Partial;
use crate::progress::Progress;
use async_std::net::{TcpStream, ToSocketAddrs};
use async_std::task::spawn_blocking;
use sft_io::{Deadline, RateLimit};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A connection to one server. Requests run one at a time; after a transfer is cut off the
/// connection is unusable and every further call fails.
#[derive(Debug)]
pub struct Client {
    server: ServerAddr,
    pub(crate) conn: Conn,
    /// Whether a token may be sent over this connection in plaintext to another machine
    /// ([`ConnectOptions::token_in_plaintext`]).
    pub(crate) token_in_plaintext: bool,
}

/// How a [`Client`] connects, and the settings its connection starts with: one value a
/// program builds once and passes to every [`Client::connect_with`]. Two connections with
/// different options can live side by side; nothing is process-wide.
///
/// ```no_run
/// # async_std::task::block_on(async {
/// use sft_client::{parse_server, Client, ConnectOptions, TlsSettings, Trust};
/// let options = ConnectOptions {
///     tls: Some(TlsSettings::new(Trust::Ca("ca.pem".into()))?),
///     token: std::env::var("SFT_TOKEN").ok(),
///     rate_limit: Some(2 << 20),
///     ..ConnectOptions::default()
/// };
/// let server = parse_server("files.example.org", 7005).expect("a server address");
/// let mut client = Client::connect_with(server, &options).await?;
/// # Ok::<(), sft_client::Error>(())
/// # });
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    /// How long the connect may take in all, and how long any later read or write may move
    /// nothing (see [`Client::set_timeout`]); `None`: as long as the system allows. The
    /// default is [`DEFAULT_TIMEOUT`].
    pub timeout: Option<Duration>,
    /// TLS, trusting what the settings say (`None`: plaintext).
    pub tls: Option<crate::tls::TlsSettings>,
    /// A token to authenticate with once connected (`None`, or empty: none).
    pub token: Option<String>,
    /// Send a token (with the connect, [`Client::authenticate`] or a call carrying one) in
    /// plaintext to a server on another machine, where anyone on the way can read it. Off by
    /// default: a token then goes over TLS, or in plaintext to loopback addresses only.
    pub token_in_plaintext: bool,
    /// Bytes a second every transfer may move, both ways (see [`Client::set_rate_limit`]).
    pub rate_limit: Option<u64>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ConnectOptions")
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("token_in_plaintext", &self.token_in_plaintext)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Some(DEFAULT_TIMEOUT),
            tls: None,
            token: None,
            token_in_plaintext: false,
            rate_limit: None,
        }
    }
}

/// How long a connection attempt, or any read or write, may make no progress by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a connection attempt `op` for at most `share`; a timeout names the whole `limit`.
async fn with_deadline<T>(
    share: Option<Duration>,
    limit: Option<Duration>,
    op: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    Deadline::within(share).run(op).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer within {:.1} s (the connect may take {} s in all; see --timeout)",
                share.unwrap_or_default().as_secs_f64(),
                limit.unwrap_or_default().as_secs()
            ),
        )
    })?
}

/// What a finished transfer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transfer {
    /// The whole file's size.
    pub size: u64,
    /// Bytes of this file's payload that crossed the network in this transfer: its body as
    /// sent (compressed, if it was), and for a delta also the signatures (PROTOCOL.md §8).
    pub bytes_transferred: u64,
    /// Bytes of the file that did not cross the network because the destination's old version
    /// held them (a delta transfer); 0 otherwise.
    pub bytes_reused: u64,
    /// The file was built from the destination's old version and the parts that differ.
    pub delta: bool,
    /// Its bytes crossed the network zstd-compressed (where that made them smaller).
    pub compressed: bool,
    /// Where this transfer started (non-zero when it continued an interrupted one).
    pub resumed_from: u64,
    /// The verified BLAKE3 hash (64 hex digits), when verified.
    pub blake3: Option<String>,
}

impl Client {
    /// Connects to `server` (`host`, `host:port`, `[v6]:port`…), using `default_port` when it
    /// names none. Every resolved address is tried in turn.
    pub async fn connect(server: &str, default_port: u16) -> Result<Client, Error> {
        let addr = parse_server(server, default_port).map_err(|m| Error::Resolve {
            server: ServerAddr {
                host: server.to_owned(),
                port: default_port,
            },
            source: io::Error::new(io::ErrorKind::InvalidInput, m),
        })?;
        Self::connect_to(addr).await
    }

    /// Connects to an already parsed address, giving up after [`DEFAULT_TIMEOUT`].
    pub async fn connect_to(server: ServerAddr) -> Result<Client, Error> {
        Self::connect_with(server, &ConnectOptions::default()).await
    }

    /// Connects to an already parsed address within `limit` (`None`: as long as the system
    /// allows), in plaintext: [`Client::connect_with`] with only [`ConnectOptions::timeout`]
    /// set.
    pub async fn connect_within(
        server: ServerAddr,
        limit: Option<Duration>,
    ) -> Result<Client, Error> {
        let options = ConnectOptions {
            timeout: limit,
            ..ConnectOptions::default()
        };
        Self::connect_with(server, &options).await
    }

    /// Connects to an already parsed address as `options` say: the whole connect — resolving
    /// the name, trying each of its addresses in turn, the TLS handshake — takes at most
    /// `options.timeout`. Each address gets an equal share of the time still left, so a first
    /// address that never answers (a dropped SYN) still leaves time for the others. A
    /// certificate refused is [`Error::Certificate`], with what to do about it; nothing is sent
    /// before the server is trusted. With a token, the connection is then authenticated
    /// ([`Client::authenticate`]); a token that would cross the network in plaintext is refused
    /// before connecting, unless `options.token_in_plaintext`.
    pub async fn connect_with(
        server: ServerAddr,
        options: &ConnectOptions,
    ) -> Result<Client, Error> {
        let token = options.token.as_deref().filter(|t| !t.is_empty());
        if token.is_some() && options.tls.is_none() && !options.token_in_plaintext {
            check_token_destination(&server).await?;
        }
        let mut client = Self::open(server, options.timeout, options.tls.as_ref()).await?;
        client.token_in_plaintext = options.token_in_plaintext;
        client.set_rate_limit(options.rate_limit);
        if let Some(token) = token {
            client.authenticate(token).await?;
        }
        Ok(client)
    }

    /// Makes the connection: TCP within `limit`, then TLS with `tls`.
    async fn open(
        server: ServerAddr,
        limit: Option<Duration>,
        tls: Option<&crate::tls::TlsSettings>,
    ) -> Result<Client, Error> {
        let mut deadline = Deadline::within(limit);
        let at = deadline.at();
        let left = || at.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let resolving = async {
            (server.host.as_str(), server.port)
                .to_socket_addrs()
                .await
                .map(Iterator::collect::<Vec<_>>)
        };
        let addrs = deadline
            .run(resolving)
            .await
            .unwrap_or_else(|_| Err(stalled(limit.unwrap_or_default())))
            .map_err(|source| Error::Resolve {
                server: server.clone(),
                source,
            })?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no addresses");
        let mut connected = None;
        for (i, addr) in addrs.iter().enumerate() {
            let share = left().map(|l| l / (addrs.len() - i) as u32);
            if share.is_some_and(|s| s.is_zero()) {
                break;
            }
            match with_deadline(share, limit, TcpStream::connect(addr)).await {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let Some(stream) = connected else {
            return Err(Error::Connect {
                server,
                source: last,
            });
        };
        let _ = stream.set_nodelay(true);
        let halves = match tls {
            None => sft_io::split_plain(stream),
            Some(tls) => {
                let handshake = tls.handshake(&server, stream);
                deadline.run(handshake).await.map_err(|_| Error::Tls {
                    server: server.clone(),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no TLS handshake within the connect timeout ({} s; see --timeout)",
                            limit.map_or(0, |l| l.as_secs())
                        ),
                    ),
                })??
            }
        };
        Ok(Client {
            server,
            conn: Conn::new(halves, limit),
            token_in_plaintext: false,
        })
    }

    /// Whether the connection is encrypted (TLS).
    pub fn is_encrypted(&self) -> bool {
        self.conn.is_encrypted()
    }

    /// The server this client is connected to.
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    /// Fails any later read or write that moves nothing for `stall` (`None`: waits forever;
    /// the default is [`DEFAULT_TIMEOUT`]). A stalled transfer is reported as cut off, so
    /// `--retries` and `--continue` recover from it like from a dropped connection.
    pub fn set_timeout(&mut self, stall: Option<Duration>) {
        self.conn.stall.limit = stall;
    }

    /// Reports every later transfer's progress to `progress` (`None`: to nobody).
    pub fn set_progress(&mut self, progress: Option<Arc<dyn Progress>>) {
        self.conn.progress = progress;
    }

    /// Limits every later transfer to `bytes_per_second`, downloads and uploads alike (`None`:
    /// as fast as the network goes). Small bursts aside, the body bytes moved over any second
    /// stay within the limit; uploads then go through this process instead of `sendfile(2)`.
    pub fn set_rate_limit(&mut self, bytes_per_second: Option<u64>) {
        self.conn.rate = bytes_per_second.map(RateLimit::new);
    }

    /// Whether the server compresses bodies on request (its `HELLO` gives a zstd level, protocol
    /// version 3): [`GetOptions::compress`](crate::GetOptions::compress) and
    /// [`SendOptions::compress`](crate::SendOptions::compress) are otherwise ignored. Asks once
    /// per connection.
    pub async fn compresses(&mut self) -> bool {
        self.conn.caps().await.zstd_max_level.is_some()
    }

    /// Whether an earlier failure left the connection out of step (every call then fails;
    /// connect again).
    pub fn is_broken(&self) -> bool {
        self.conn.is_broken()
    }

    /// Whether downloads requested while a listing arrived
    /// ([`Listing::get_ahead`](crate::Listing::get_ahead)) still wait to be received with
    /// [`Client::get_files_with`]; until then no other request can be made.
    pub fn owes_replies(&self) -> bool {
        !self.conn.ahead.is_empty()
    }
}

/// Opens (and locks) the partial download of `local`, see [`Partial::open`].
pub(crate) async fn open_partial(local: &Path, resume: bool) -> Result<Partial, Error> {
    let target = local.to_owned();
    spawn_blocking(move || Partial::open(&target, resume))
        .await
        .map_err(Error::local(
            partial_path(local),
            "open the partial download",
        ))
}

/// Where [`Client::get_file`] keeps a download in progress: `.<name>.sft-part` beside `local`.
pub fn partial_path(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    local.with_file_name(format!(".{name}.sft-part"))
}
