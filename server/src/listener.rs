//! The listener: accepts connections, starts a session actor for each, and stops on request.

use crate::access::{AllowList, Gate};
use crate::config::Config;
use crate::fdlimit::{out_of_descriptors, Spare, REFUSALS_IN_FLIGHT};
use crate::metrics::{self, Gauges, Metrics, Refusal};
use crate::session::{self, Mail, Shared};
use crate::sessions::{SessionInfo, Sessions};
use crate::tls::Tls;
use async_std::channel::{self, Receiver, Sender};
use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use futures::{AsyncWriteExt, FutureExt};
use sft_commands::sandbox::Work;
use sft_commands::{Registry, Root};
use sft_io::Deadline;
use sft_protocol::{encode_error, ErrorCode, WireError};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
    stop_tx: Sender<()>,
    stop_rx: Receiver<()>,
    /// Closed when the shutdown grace runs out: the sessions still running end at once.
    cut: Sender<()>,
    max_connections: usize,
    grace: Duration,
    /// Peers outside it are closed at accept (`--allow`).
    allow: AllowList,
    /// With `--metrics`: its listener and the address it is bound to.
    metrics: Option<(TcpListener, SocketAddr)>,
}

/// Controls a running server from elsewhere (another task, a signal handler, a test).
#[derive(Debug, Clone)]
pub struct Handle {
    stop: Sender<()>,
    sessions: Arc<Sessions>,
    gate: Gate,
}

impl Handle {
    /// Asks the server to stop: it stops accepting, tells every session to close once its
    /// current request is done, and `run` returns when all have, or when the shutdown grace
    /// period runs out, after closing those that were left.
    pub fn shutdown(&self) {
        let _ = self.stop.try_send(());
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The live sessions, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.list()
    }

    /// Reads the tokens file (`--tokens`) again, as SIGHUP does; blocking. A file that cannot
    /// be read or parsed keeps the tokens in force (and says why). Without `--tokens`, nothing.
    pub fn reload_tokens(&self) -> io::Result<()> {
        self.gate.reload()
    }

    /// Whether the server checks tokens (`--tokens`): whether there is anything to reload.
    pub fn has_tokens(&self) -> bool {
        self.gate.is_active()
    }
}

fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Server {
    /// Binds the listening socket, then opens the served root.
    ///
    /// Binding comes first, so that a server that cannot listen touches nothing. Opening the
    /// root only reads; a writable server then removes what a crash or an earlier run left in
    /// its reserved folder, if one exists (the staging files of servers no longer running — not
    /// those of others serving the same root —, expired partial uploads), while a
    /// `--read-only` one never writes at all.
    pub async fn bind(config: Config, registry: Registry) -> io::Result<Server> {
        let listener = match &config.host {
            Some(host) => TcpListener::bind((host.as_str(), config.port))
                .await
                .map_err(context(format!("cannot listen on {host}:{}", config.port)))?,
            None => bind_every_address(config.port)
                .await
                .map_err(context(format!("cannot listen on port {}", config.port)))?,
        };
        // Tokens before the root: a server with a bad tokens file touches nothing either.
        let tokens = config.tokens.clone();
        let gate = task::spawn_blocking(move || Gate::open(tokens.as_deref())).await?;
        let tls = load_tls(&config).await?;
        let dir = config.root.clone();
        let mut limits = config.limits();
        limits.tokens = gate.tokens();
        let (partials, read_only) = (limits.partials(), limits.read_only);
        let pool = config.storage_pool();
        let root = task::spawn_blocking(move || {
            let root = Root::open_on(&dir, pool)?;
            if !read_only {
                // Loads what earlier runs and other servers kept (removing the staging files of
                // servers gone) and expires it.
                root.expire_partials(&partials);
            }
            Ok::<_, io::Error>(root)
        })
        .await
        .map_err(context(format!("cannot serve {}", config.root.display())))?;
        let allow = AllowList::new(config.allow.clone());
        if allow.is_active() {
            log::info!(allow = allow.describe(); "connections accepted only from the allowed networks");
        }
        let addr = listener.local_addr()?;
        let metrics_listener = match &config.metrics {
            Some(at) => Some(metrics::bind(at).await?),
            None => None,
        };
        // Before "listening": whoever waits for that line finds the settings logged already.
        log_settings(&config);
        if !limits.read_only
            && !gate.is_active()
            && tls.is_none()
            && !addr.ip().to_canonical().is_loopback()
        {
            log::warn!(
                addr:% = addr,
                hint = "--read-only, --tokens (with TLS), or --host 127.0.0.1 to serve this machine only";
                "writable, without tokens and without TLS on a network address: anyone who can reach it may read, replace and delete files"
            );
        }
        if let Some(tls) = &tls {
            log::info!(
                fingerprint = tls.fingerprint;
                "serving TLS only; clients may pin this certificate with --fingerprint"
            );
        }
        if let Some((_, at)) = &metrics_listener {
            log::info!(addr:% = at; "metrics listening (Prometheus text format at /metrics)");
        }
        log::info!(
            addr:% = addr, root:% = root.dir().display(), verbs = registry.verbs().join(",");
            "listening"
        );
        let counters = metrics_listener
            .is_some()
            .then(|| Metrics::new(&registry.verbs()));
        let (stop_tx, stop_rx) = channel::bounded(1);
        let (cut, cut_rx) = channel::bounded(1);
        Ok(Server {
            listener,
            addr,
            shared: Arc::new(Shared {
                registry,
                root,
                limits,
                idle_timeout: Duration::from_secs(config.idle_timeout.max(1)),
                header_timeout: Duration::from_secs(config.header_timeout.max(1)),
                gate,
                tls,
                cut: cut_rx,
                metrics: counters,
            }),
            allow,
            max_connections: config.max_connections.max(1),
            grace: Duration::from_secs(config.shutdown_grace),
            sessions: Arc::new(Sessions::default()),
            stop_tx,
            stop_rx,
            cut,
            metrics: metrics_listener,
        })
    }

    /// The address the metrics are served on (`--metrics`), if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// Starts serving the metrics page, if `--metrics` asked for it.
    fn serve_metrics(&mut self) -> Option<task::JoinHandle<()>> {
        let (listener, _) = self.metrics.take()?;
        let (shared, sessions) = (Arc::clone(&self.shared), Arc::clone(&self.sessions));
        let max_connections = self.max_connections;
        let render = move || {
            let Some(counters) = &shared.metrics else {
                return String::new();
            };
            let (partials_kept, partials_kept_bytes) = shared.root.partials_kept();
            let (storage_up, storage_probe) = shared.root.storage_known();
            let pool = shared.root.pool();
            counters.page(&Gauges {
                name: shared.registry.server_name().to_owned(),
                version: shared.registry.server_version().to_owned(),
                connections_open: sessions.len(),
                max_connections,
                upload_slots_in_use: shared.limits.uploads.in_use(),
                upload_slots_max: shared.limits.uploads.max(),
                partials_kept,
                partials_kept_bytes,
                storage_up,
                storage_probe,
                storage_stuck: pool.stuck(),
                storage_given_up: pool.hung(),
                storage_jobs: pool.jobs(),
            })
        };
        Some(task::spawn(metrics::serve(listener, Arc::new(render))))
    }

    /// The address actually bound (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to stop the server or inspect its sessions.
    pub fn handle(&self) -> Handle {
        Handle {
            stop: self.stop_tx.clone(),
            sessions: Arc::clone(&self.sessions),
            gate: self.shared.gate.clone(),
        }
    }

    /// Accepts connections until [`Handle::shutdown`], then waits for every session to end:
    /// those still running when the grace period runs out are cancelled (their connections
    /// closed, their uploads discarded), so that when `run` returns no session is left.
    pub async fn run(mut self) -> io::Result<()> {
        // Every session task holds a clone of `done_tx`; when all are dropped, `recv` fails.
        let (done_tx, done_rx) = channel::bounded::<()>(1);
        // A read-only server never writes, not even to expire partials a writable one left.
        let janitor = (!self.shared.limits.read_only)
            .then(|| task::spawn(expire_partials_periodically(self.shared.clone())));
        let metrics = self.serve_metrics();
        let mut backoff = Duration::ZERO;
        let refusing = Arc::new(AtomicUsize::new(0));
        let mut spare = Spare::default();
        loop {
            spare.refill();
            let accepted = futures::select_biased! {
                _ = self.stop_rx.recv().fuse() => break,
                a = self.listener.accept().fuse() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::ZERO;
                    if !self.allow.admits(peer.ip()) {
                        // Closed before a byte is read or written.
                        self.allow.refused(peer);
                        self.count(Refusal::AllowList);
                        drop(stream);
                    } else if self.sessions.len() >= self.max_connections {
                        log::debug!(peer:% = peer, sessions = self.sessions.len(); "connection over --max-connections");
                        self.count(Refusal::Busy);
                        refuse_busy(stream, peer, self.max_connections, &refusing);
                    } else {
                        self.spawn_session(stream, peer, done_tx.clone());
                    }
                }
                Err(e) if is_transient(&e) => {
                    log::debug!(error:% = e; "accept: a transient error, accepting on at once");
                    continue;
                }
                Err(e) if out_of_descriptors(&e) && spare.release() => {
                    // The reserve lets one waiting connection in, to be told `busy` at once.
                    if let Some(Ok((stream, peer))) = self.listener.accept().now_or_never() {
                        log::warn!(peer:% = peer, sessions = self.sessions.len(); "connection refused: busy (out of file descriptors)");
                        self.count(Refusal::Busy);
                        let err = WireError::new(
                            ErrorCode::Busy,
                            "the server is out of file descriptors; try again later",
                        );
                        // A new connection's send buffer is empty: the line goes out at once.
                        tell(stream, &err, Duration::from_millis(100)).await;
                    }
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS…: the loop survives; wait for resources to free.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    log::debug!(error:% = e, kind:? = e.kind(), sessions = self.sessions.len(); "accept backs off: out of descriptors or buffers until sessions end");
                    log::warn!(error:% = e, retry_ms = backoff.as_millis() as u64; "accept failed");
                    task::sleep(backoff).await;
                }
            }
        }
        drop(self.listener);
        if let Some(janitor) = janitor {
            janitor.cancel().await;
        }
        if let Some(metrics) = metrics {
            metrics.cancel().await;
        }
        let live = self.sessions.len();
        log::info!(sessions = live; "shutting down: no new connections; waiting for sessions to finish");
        self.sessions.broadcast(Mail::Stop);
        drop(done_tx);
        let finished = async_std::future::timeout(self.grace, done_rx.recv()).await;
        if finished.is_err() {
            let left = self.sessions.len();
            log::warn!(sessions = left, grace_s = self.grace.as_secs(); "shutdown grace expired; closing the remaining sessions");
            // Each session cuts its request short and ends, logging both as usual.
            self.cut.close();
            let ended = async_std::future::timeout(CUT_WAIT, done_rx.recv()).await;
            if ended.is_err() {
                // Cancelling drops each session's future: its sockets, files and registration
                // go with it, so when `run` returns nothing of the server is left running
                // (which matters to a program that embeds it and carries on).
                let tasks = self.sessions.take_tasks();
                futures::future::join_all(tasks.into_iter().map(|t| t.cancel())).await;
            }
            if !self.sessions.is_empty() {
                log::warn!(sessions = self.sessions.len(); "sessions outlived cancellation");
            }
            // Their uploads can no longer complete: leave no staging debris behind (in this
            // server's own staging folder; other servers sharing the root keep theirs).
            let clean = |root: &Root| root.clean_staging();
            let _ = self.shared.root.blocking(Work::Bulk, clean).await;
        }
        log::info!("stopped");
        Ok(())
    }

    fn count(&self, refusal: Refusal) {
        if let Some(metrics) = &self.shared.metrics {
            metrics.refused(refusal);
        }
    }

    fn spawn_session(&self, stream: TcpStream, peer: SocketAddr, done: Sender<()>) {
        if let Some(metrics) = &self.shared.metrics {
            metrics.accepted();
        }
        let (registration, mailbox) = self.sessions.register(peer);
        let id = registration.info.id;
        let shared = Arc::clone(&self.shared);
        let task = task::spawn(async move {
            session::run(shared, stream, registration, mailbox).await;
            drop(done);
        });
        self.sessions.attach(id, task);
    }
}

/// How long sessions cut short by the end of the shutdown grace may take to end on their own
/// before they are cancelled.
const CUT_WAIT: Duration = Duration::from_secs(2);

/// The TLS settings of `--tls-cert`/`--tls-key` or `--tls-self-signed` (creating its
/// certificate on the first start), if any.
async fn load_tls(config: &Config) -> io::Result<Option<Tls>> {
    let (cert, key, dir) = (
        config.tls_cert.clone(),
        config.tls_key.clone(),
        config.tls_self_signed.clone(),
    );
    task::spawn_blocking(move || {
        let (cert, key) = match (cert, key, dir) {
            (_, _, Some(dir)) => crate::tls::self_signed(&dir)?,
            (Some(cert), Some(key), None) => (cert, key),
            (None, None, None) => return Ok(None),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--tls-cert and --tls-key go together",
                ))
            }
        };
        Tls::load(&cert, &key).map(Some)
    })
    .await
}

/// Logs the settings in effect, in one line: what an operator checks first when a transfer is
/// refused or cut.
fn log_settings(config: &Config) {
    let limits = config.limits();
    let max_upload = config
        .max_upload_bytes
        .map_or_else(|| "none".to_owned(), |n| n.to_string());
    let threads = config
        .threads
        .map_or_else(|| "per-cpu".to_owned(), |n| n.max(1).to_string());
    log::info!(
        read_only = limits.read_only, max_connections = config.max_connections.max(1),
        max_uploads = config.max_uploads, max_upload_bytes = max_upload,
        idle_timeout_s = config.idle_timeout.max(1), header_timeout_s = config.header_timeout.max(1),
        stall_timeout_s = limits.stall_timeout.as_secs(), min_rate = limits.min_rate,
        partial_ttl_s = config.partial_ttl, max_partials = config.max_partials,
        max_signatures = limits.signing.max(),
        compress_level_max = limits.compress_level_max.map_or_else(|| "off".to_owned(), |n| n.to_string()),
        storage_timeout_s = config.storage_timeout.max(1), storage_jobs = config.storage_jobs.max(1),
        shutdown_grace_s = config.shutdown_grace, threads = threads,
        umask = format!("{:03o}", sft_commands::attributes::umask());
        "settings"
    );
}

/// Removes expired partial uploads now and then (the caps are also kept whenever one is kept).
async fn expire_partials_periodically(shared: Arc<Shared>) {
    let every =
        (shared.limits.partial_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
    loop {
        task::sleep(every).await;
        let partials = shared.limits.partials();
        let expire = move |root: &Root| root.expire_partials(&partials);
        match shared.root.blocking(Work::Bulk, expire).await {
            Ok(0) => {}
            Ok(n) => log::info!(removed = n; "expired partial uploads"),
            Err(hung) => log::warn!("expiring partial uploads given up on: {hung}"),
        }
    }
}

/// Answers a connection over the limit with `busy` and closes it, without holding up the
/// accept loop (bounded: a peer that does not read gets dropped after a second). At most
/// [`REFUSALS_IN_FLIGHT`] are answered at once; past that a flood is closed without a reply,
/// so refusals never use the descriptors kept for the server.
fn refuse_busy(stream: TcpStream, peer: SocketAddr, max: usize, refusing: &Arc<AtomicUsize>) {
    if refusing.fetch_add(1, Ordering::Relaxed) >= REFUSALS_IN_FLIGHT {
        refusing.fetch_sub(1, Ordering::Relaxed);
        log::warn!(peer:% = peer, max_connections = max; "connection refused: busy (closed without reply)");
        return;
    }
    log::warn!(peer:% = peer, max_connections = max; "connection refused: busy");
    let refusing = Arc::clone(refusing);
    task::spawn(async move {
        let err = WireError::new(
            ErrorCode::Busy,
            format!("the server is at its limit of {max} connections; try again later"),
        );
        tell(stream, &err, Duration::from_secs(1)).await;
        refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Sends `err` (waiting at most `limit` for the peer to take it) and closes the connection.
async fn tell(mut stream: TcpStream, err: &WireError, limit: Duration) {
    let mut line = Vec::new();
    encode_error(err, &mut line);
    let _ = Deadline::after(limit).run(stream.write_all(&line)).await;
}

/// Listens on every IPv6 and IPv4 address: `[::]` with `IPV6_V6ONLY` off (set explicitly, not
/// left to the system's default), so IPv4 clients arrive as mapped addresses. Where IPv6 is
/// unavailable (no kernel support, disabled), falls back to `0.0.0.0`, and says so.
async fn bind_every_address(port: u16) -> io::Result<TcpListener> {
    match dual_stack(port) {
        Ok(listener) => Ok(TcpListener::from(listener)),
        // The port is taken, or not ours to use: IPv4 alone would fail the same way.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
            ) =>
        {
            Err(e)
        }
        Err(e) => {
            log::info!(error:% = e; "IPv6 is unavailable; listening on IPv4 only");
            TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await
        }
    }
}

/// A listening socket on `[::]:port` that also accepts IPv4.
fn dual_stack(port: u16) -> io::Result<std::net::TcpListener> {
    use rustix::net::{self as rnet, sockopt, AddressFamily, SocketFlags, SocketType};
    let fd = rnet::socket_with(
        AddressFamily::INET6,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_ipv6_v6only(&fd, false)?;
    // As `std` does for every listener: a restarted server can bind while old connections
    // linger in TIME_WAIT.
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rnet::bind(
        &fd,
        &SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
    )?;
    rnet::listen(&fd, 1024)?;
    Ok(std::net::TcpListener::from(fd))
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
