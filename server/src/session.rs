//! The session actor: one task per connection, owning its socket and state.
//!
//! Its loop waits for either the next header line or a message in its mailbox. A header is
//! decoded, its verb looked up in the registry, admitted by what the verb declares (token,
//! whether it writes, the body it takes: [`sft_commands::admit`], one ordered pipeline) and the
//! handler run with the connection's context; then the loop starts over. Malformed input gets an error reply; a handler that
//! aborts, a peer that vanishes or a `Stop` in the mailbox ends this session only.

use crate::logging::escape;
use crate::metrics::{Outcome, Refusal};
use crate::sessions::{Registration, SessionInfo};
use crate::tls::Opened;
use async_std::io::BufReader;
use async_std::net::TcpStream;
use futures::{AsyncBufReadExt, AsyncWriteExt, Future, FutureExt};
use sft_commands::{admit, Access, Buffers, CommandError, Context, Limits, Registry, Root, Writer};
use sft_io::Deadline;
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::{decode_request, encode_error, read_line, ErrorCode, WireError};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Socket buffer sizes: large enough that small replies and their bodies leave in one write.
const IO_BUFFER: usize = 64 * 1024;

/// Fairness. A client that sends its next request before the reply to the last one has left
/// the session (it runs on the other core, and the kernel lets it preempt the server's thread
/// as the reply lands) finds the session ready at once, again and again: without a rule, that
/// one session keeps its thread, and the thread never looks for the other connections' requests.
/// So a session whose next request is already there yields to the sessions queued behind it,
/// and after every [`REACTOR_TURN`] such requests in a row it waits for the reactor's next round
/// (which collects every ready connection), as an event loop like nginx's serves each ready
/// connection once per round.
const REACTOR_TURN: u32 = 8;

/// How long a session that ends on an aborted request tries to send what it holds.
const ABORT_FLUSH: Duration = Duration::from_secs(1);

/// A message to a session actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mail {
    /// Finish the request in progress, if any, then close.
    Stop,
}

/// What a session needs from the server; shared by all sessions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) root: Root,
    pub(crate) limits: Limits,
    /// How long a connection may wait between requests.
    pub(crate) idle_timeout: Duration,
    /// How long a header line may take once its first byte arrived.
    pub(crate) header_timeout: Duration,
    /// Who may do what (`--tokens`).
    pub(crate) gate: crate::access::Gate,
    /// With `--tls-cert` or `--tls-self-signed`: TLS only.
    pub(crate) tls: Option<crate::tls::Tls>,
    /// Closed when the shutdown grace runs out: a session still running cuts its request short
    /// and ends.
    pub(crate) cut: async_std::channel::Receiver<()>,
    /// With `--metrics`: the counters.
    pub(crate) metrics: Option<crate::metrics::Metrics>,
}

/// Why a session ended, for its closing log line.
enum End {
    ClientClosed,
    Stopped,
    /// The shutdown grace ran out.
    Cut,
    Protocol(&'static str),
    Failed(io::Error),
}

enum Event {
    Header(Result<bool, HeaderError>),
    Mail(Option<Mail>),
}

/// Why no header line could be read.
enum HeaderError {
    /// No request within the idle timeout.
    Idle,
    /// A header started but did not complete within the header timeout.
    Slow,
    /// Over the line limit.
    TooLong,
    /// The peer closed in the middle of a line.
    Truncated,
    Io(io::Error),
}

/// Waits (at most the idle timeout) for a request to start, then reads its header line (at most
/// `slow`). `Ok(false)`: the peer closed cleanly between requests. `waited` is set when the
/// request was not already there, so the session's task gave its thread up while it waited.
async fn next_header(
    reader: &mut sft_commands::Reader,
    line: &mut Vec<u8>,
    idle: &mut IdleTimer,
    slow: Duration,
    waited: &mut bool,
    company: bool,
) -> Result<bool, HeaderError> {
    let started = {
        let mut fill = reader.fill_buf();
        match futures::poll!(&mut fill) {
            Poll::Ready(r) => r.map(|b| b.is_empty()),
            Poll::Pending => {
                *waited = true;
                match idle.wait(fill, company).await {
                    Some(r) => r.map(|b| b.is_empty()),
                    None => return Err(HeaderError::Idle),
                }
            }
        }
    };
    match started {
        Ok(true) => return Ok(false),
        Ok(false) => {}
        // A TLS client that closes between requests without a close_notify: a close all the
        // same (no request was cut).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(HeaderError::Io(e)),
    }
    let read = Deadline::after(slow).run(read_line(reader, line)).await;
    read.map_err(|_| HeaderError::Slow)?
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => HeaderError::TooLong,
            io::ErrorKind::UnexpectedEof => HeaderError::Truncated,
            _ => HeaderError::Io(e),
        })
}

/// A session's idle deadline: one [`Deadline`] for the session's life. A timer registered for
/// every wait costs the reactor a message and a wake-up per request; this one is re-armed only
/// when it fires before the session has been idle for the whole timeout, at most once per
/// timeout.
struct IdleTimer {
    deadline: Deadline,
    limit: Duration,
}

impl IdleTimer {
    fn new(limit: Duration) -> IdleTimer {
        IdleTimer {
            deadline: Deadline::never(),
            limit,
        }
    }

    /// Waits for `read`, which was just polled and found nothing (so this task's waker is with
    /// the socket), at most the idle timeout from now; `None` once that has passed.
    ///
    /// A lone connection waits with a timer of its own, whose registration wakes the reactor's
    /// thread: measured, its next request is then answered sooner (BENCHMARKS.md, 1
    /// connection). Among other connections that wake-up is only a cost, and so is polling
    /// `read` again before the socket wakes the task: the session's one timer serves.
    async fn wait<F: Future + Unpin>(&mut self, mut read: F, company: bool) -> Option<F::Output> {
        if !company {
            return Deadline::after(self.limit).run(read).await.ok();
        }
        // Deadlines only move forward: the timer stays where it is until it fires.
        self.deadline.set(Some(Instant::now() + self.limit));
        let mut woken = false;
        futures::future::poll_fn(|cx| {
            if std::mem::replace(&mut woken, true) {
                if let Poll::Ready(r) = read.poll_unpin(cx) {
                    return Poll::Ready(Some(r));
                }
            }
            self.deadline.poll_passed(cx).map(|()| None)
        })
        .await
    }
}

/// A connection's `connection opened` line, held back until the connection does something other
/// than health checks ([`sft_commands::Command::health_check`]): a load balancer checks every
/// few seconds, and a connection that only answered its checks is logged at `debug` alone.
struct Opening<'a> {
    info: &'a SessionInfo,
    /// Whether the line is out.
    logged: AtomicBool,
}

impl<'a> Opening<'a> {
    fn new(info: &'a SessionInfo) -> Opening<'a> {
        log::debug!(session = info.id, peer:% = info.peer; "connection accepted");
        Opening {
            info,
            logged: AtomicBool::new(false),
        }
    }

    /// Logs `connection opened` (at `info`), unless it is out already.
    fn announce(&self) {
        if !self.logged.swap(true, Ordering::Relaxed) {
            log::info!(session = self.info.id, peer:% = self.info.peer; "connection opened");
        }
    }

    /// Whether the connection has made only successful health checks so far.
    fn quiet(&self) -> bool {
        !self.logged.load(Ordering::Relaxed)
    }
}

/// Runs one session to its end and logs it. Never panics outward: a panic in a handler is
/// caught here, logged with the session id, and ends this session only.
pub(crate) async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    registration: Registration,
    mailbox: async_std::channel::Receiver<Mail>,
) {
    let info = registration.info.clone();
    let opening = Opening::new(&info);
    let served = serve(&shared, stream, &registration, &opening, mailbox);
    let served = std::panic::AssertUnwindSafe(served).catch_unwind();
    // Cut between requests (or anywhere a request is not running a handler): ended here.
    let result = unless_cut(&shared.cut, served)
        .await
        .unwrap_or(Ok(End::Cut));
    let ms = millis(info.started.elapsed());
    // A load balancer's check often ends its connection with a reset once it read the reply:
    // as quiet as a close.
    let ended_quietly = match &result {
        Ok(End::ClientClosed | End::Stopped) => true,
        Ok(End::Failed(e)) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        _ => false,
    };
    let quiet = ended_quietly && opening.quiet();
    if quiet {
        log::debug!(session = info.id, peer:% = info.peer, ms = ms; "connection closed");
    } else {
        opening.announce();
    }
    match result {
        _ if quiet => {}
        Ok(End::ClientClosed) => {
            log::info!(session = info.id, peer:% = info.peer, ms = ms; "connection closed")
        }
        Ok(End::Stopped) => {
            log::info!(session = info.id, peer:% = info.peer, ms = ms; "connection closed by server shutdown")
        }
        Ok(End::Cut) => {
            log::warn!(session = info.id, peer:% = info.peer, ms = ms; "connection closed by server shutdown: the grace period ran out")
        }
        Ok(End::Protocol(why)) => {
            log::warn!(session = info.id, peer:% = info.peer, ms = ms, reason = why; "connection closed")
        }
        Ok(End::Failed(e)) => {
            log::warn!(session = info.id, peer:% = info.peer, ms = ms, error:% = e; "connection failed")
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::error!(session = info.id, peer:% = info.peer, ms = ms, panic = escape(&what); "session panicked; closed")
        }
    }
    drop(registration);
}

async fn serve(
    shared: &Shared,
    stream: TcpStream,
    registration: &Registration,
    opening: &Opening<'_>,
    mailbox: async_std::channel::Receiver<Mail>,
) -> End {
    let _ = stream.set_nodelay(true);
    let (read, write) = match &shared.tls {
        None => sft_io::split_plain(stream),
        Some(tls) => {
            let handshake = tls
                .open(
                    stream,
                    shared.idle_timeout,
                    shared.header_timeout,
                    shared.metrics.as_ref(),
                )
                .fuse();
            let mail = mailbox.recv().fuse();
            futures::pin_mut!(handshake, mail);
            let opened = futures::select_biased! {
                _ = mail => return End::Stopped,
                o = handshake => o,
            };
            match opened {
                Ok(Opened::Tls(read, write)) => (read, write),
                Ok(Opened::Closed) => return End::ClientClosed,
                Ok(Opened::Plaintext) => {
                    if let Some(metrics) = &shared.metrics {
                        metrics.refused(Refusal::TlsRequired);
                    }
                    return End::Protocol("plaintext request to a TLS server");
                }
                Err(e) => return End::Failed(e),
            }
        }
    };
    let mut reader = BufReader::with_capacity(IO_BUFFER, read);
    // Every write to the client keeps the pace rules, replies and flushes included.
    let mut writer = Writer::new(write, shared.limits.pace(), IO_BUFFER);
    let end = requests(
        shared,
        &mut reader,
        &mut writer,
        registration,
        opening,
        mailbox,
    )
    .await;
    if shared.tls.is_some() && !matches!(end, End::Failed(_)) {
        // A clean TLS close (close_notify), so the client tells it from a cut; bounded like
        // every other write.
        let _ = writer.close().await;
    }
    end
}

/// Serves requests until the connection ends.
// The loop borrows `&mut reader` and `&mut writer` as it did when it owned them.
#[allow(clippy::needless_borrow)]
async fn requests(
    shared: &Shared,
    reader: &mut sft_commands::Reader,
    writer: &mut sft_commands::Writer,
    registration: &Registration,
    opening: &Opening<'_>,
    mailbox: async_std::channel::Receiver<Mail>,
) -> End {
    let info = &registration.info;
    let (mut reader, mut writer) = (reader, writer);
    let mut line = Vec::with_capacity(256);
    let mut scratch = Vec::with_capacity(256);
    let mut buffers = Buffers::default();
    let mut access = Access::new();
    let mut ready_in_a_row = 0u32;
    let mut idle = IdleTimer::new(shared.idle_timeout);
    // Every message ends the session: one receive serves its whole life.
    let mail = mailbox.recv().fuse();
    futures::pin_mut!(mail);
    loop {
        line.clear();
        let mut waited = false;
        let event = {
            let header = next_header(
                &mut reader,
                &mut line,
                &mut idle,
                shared.header_timeout,
                &mut waited,
                registration.has_company(),
            )
            .fuse();
            futures::pin_mut!(header);
            futures::select_biased! {
                m = mail => Event::Mail(m.ok()),
                h = header => Event::Header(h),
            }
        };
        match event {
            Event::Mail(Some(Mail::Stop)) | Event::Mail(None) => {
                // Replies held back for a pipelined request go out before the connection closes.
                let _ = writer.flush().await;
                return End::Stopped;
            }
            Event::Header(Ok(false)) => return End::ClientClosed,
            Event::Header(Err(HeaderError::TooLong)) => {
                let err = WireError::new(
                    ErrorCode::TooLarge,
                    format!("header line longer than {MAX_HEADER_LEN} bytes"),
                );
                let _ = send_error(&mut writer, &mut scratch, &err).await;
                return End::Protocol("header line too long");
            }
            Event::Header(Err(HeaderError::Truncated)) => {
                return End::Protocol("closed in the middle of a header line")
            }
            Event::Header(Err(HeaderError::Idle)) => return End::Protocol("idle timeout"),
            Event::Header(Err(HeaderError::Slow)) => {
                let err = WireError::bad_request(format!(
                    "header line not completed within {} s",
                    shared.header_timeout.as_secs()
                ));
                let _ = send_error(&mut writer, &mut scratch, &err).await;
                return End::Protocol("header timeout");
            }
            Event::Header(Err(HeaderError::Io(e))) => return End::Failed(e),
            Event::Header(Ok(true)) => {}
        }
        if waited {
            ready_in_a_row = 0;
        } else {
            ready_in_a_row = ready_in_a_row.wrapping_add(1);
            if ready_in_a_row % REACTOR_TURN == 0 && registration.has_company() {
                // A timer fires only when the reactor next runs, and the reactor collects the
                // ready connections in the same round.
                async_std::task::sleep(Duration::from_micros(1)).await;
            } else {
                // Also for a lone client: measured, it is then served faster, not slower
                // (BENCHMARKS.md, 1 connection).
                async_std::task::yield_now().await;
            }
        }

        let started = Instant::now();
        writer.pace_mut().restart();
        if log::log_enabled!(log::Level::Debug) {
            log::debug!(session = info.id, header = crate::logging::header(&line); "request header");
        }
        let request = match decode_request(&line) {
            Ok(r) => r,
            Err(err) => {
                opening.announce();
                log::info!(session = info.id, outcome = err.code.as_str(), error = escape(&err.message); "malformed request");
                count(shared, None, Outcome::Error(err.code), 0, 0);
                if let Err(e) = send_error(&mut writer, &mut scratch, &err).await {
                    return End::Failed(e);
                }
                continue;
            }
        };
        // An eager upload's body follows its header at once (PROTOCOL.md §3.1): whatever the
        // answer, it is read first.
        let eager = match eager_body(&request) {
            Ok(eager) => eager,
            Err(err) => {
                opening.announce();
                log::info!(session = info.id, outcome = err.code.as_str(), error = escape(&err.message); "malformed request");
                count(shared, None, Outcome::Error(err.code), 0, 0);
                let _ = send_error(&mut writer, &mut scratch, &err).await;
                return End::Protocol("an eager request whose body cannot be framed");
            }
        };
        if eager.is_some_and(|len| (reader.buffer().len() as u64) < len) {
            // The body is still to come: replies held back go out before waiting for it.
            if let Err(e) = writer.flush().await {
                return End::Failed(e);
            }
        }
        let Some((verb_index, handler)) = shared.registry.get_indexed(request.verb()) else {
            opening.announce();
            let verb = request.verb_upper();
            let err = WireError::new(
                ErrorCode::UnknownVerb,
                format!(
                    "unknown verb {:?}; this server knows {}",
                    escape(request.verb()),
                    shared.registry.verbs().join(", ")
                ),
            );
            log::info!(session = info.id, verb = escape(&verb), outcome = err.code.as_str(); "request");
            count(shared, None, Outcome::Error(err.code), 0, 0);
            if let Err(e) =
                refuse(&mut reader, &mut writer, &mut scratch, &err, eager, shared).await
            {
                return End::Failed(e);
            }
            continue;
        };
        // The same rules for every verb, in their order, before its handler runs: who you are,
        // may you write, what may follow the header (a body refused was not sent, since the
        // client waits for a go-ahead — or, eager, it is dropped).
        if !handler.health_check() {
            opening.announce();
        }
        let body = match admit(&**handler, &request, &shared.limits, &mut access) {
            Ok(body) => body,
            Err(err) => {
                opening.announce();
                log::info!(session = info.id, verb = handler.verb(), outcome = err.code.as_str(), error = escape(&err.message); "request");
                count(shared, Some(verb_index), Outcome::Error(err.code), 0, 0);
                if let Err(e) =
                    refuse(&mut reader, &mut writer, &mut scratch, &err, eager, shared).await
                {
                    return End::Failed(e);
                }
                continue;
            }
        };
        let mut ctx = Context::new(
            &shared.root,
            &shared.limits,
            &shared.registry,
            &mut reader,
            &mut writer,
            info.id,
            info.peer,
            &mut buffers,
            &mut access,
        )
        .with_body(body, eager);
        let admitted = log::log_enabled!(log::Level::Trace).then(Instant::now);
        let ran = unless_cut(&shared.cut, handler.run(request, &mut ctx)).await;
        let cut = ran.is_none();
        let mut result = ran.unwrap_or_else(|| {
            Err(CommandError::Abort(io::Error::new(
                io::ErrorKind::Interrupted,
                "the shutdown grace period ran out",
            )))
        });
        let ran = admitted.map(|_| Instant::now());
        // A body the handler refused before its go-ahead is read before the refusal is sent.
        if !matches!(result, Err(CommandError::Abort(_))) {
            if let Err(e) = ctx.settle_body().await {
                result = Err(CommandError::Abort(e));
            }
        }
        let stats = std::mem::take(&mut ctx.stats);
        drop(ctx);
        let (outcome, abort) = match result {
            Ok(()) => (stats.error.map_or(Outcome::Ok, Outcome::Error), None),
            Err(CommandError::Reply(err)) => {
                if let Err(e) = send_error(&mut writer, &mut scratch, &err).await {
                    count(
                        shared,
                        Some(verb_index),
                        Outcome::Aborted,
                        stats.bytes_in,
                        stats.bytes_out,
                    );
                    return End::Failed(e);
                }
                (Outcome::Error(err.code), None)
            }
            Err(CommandError::Abort(e)) => (Outcome::Aborted, Some(e)),
        };
        count(
            shared,
            Some(verb_index),
            outcome,
            stats.bytes_in,
            stats.bytes_out,
        );
        let outcome = outcome.as_str();
        // Replies wait in the writer while the next request's header is already here: a
        // pipelining client gets them in a few writes, not one each. They go out before
        // anything waits on the client: before the next header if it is not all here, before
        // an eager body that is not all here (above), and with the go-ahead before any other
        // body.
        let flushed = if abort.is_none() && !line_buffered(&reader) {
            writer.flush().await
        } else {
            Ok(())
        };
        if let (Some(admitted), Some(ran)) = (admitted, ran) {
            log::trace!(
                session = info.id, verb = handler.verb(), admit_ms = millis(admitted - started),
                run_ms = millis(ran - admitted), reply_ms = millis(ran.elapsed());
                "request phases"
            );
        }
        // A health check answered `ok` on a connection that has done nothing else: at `debug`.
        let quiet = outcome == "ok" && opening.quiet();
        if !quiet {
            opening.announce();
        }
        let level = if quiet {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if log::log_enabled!(level) {
            let path = stats.path.as_deref().map(escape).unwrap_or_default();
            let ms = millis(started.elapsed());
            if stats.uncompressed.is_some() || stats.reused.is_some() {
                // A version-3 transfer: what crossed the wire, and the file bytes it stood for.
                log::log!(
                    level, session = info.id, verb = handler.verb(), path = path, bytes_in = stats.bytes_in,
                    bytes_out = stats.bytes_out, uncompressed = stats.uncompressed.unwrap_or(0),
                    reused = stats.reused.unwrap_or(0), ms = ms, outcome = outcome;
                    "request"
                );
            } else {
                log::log!(
                    level, session = info.id, verb = handler.verb(), path = path, bytes_in = stats.bytes_in,
                    bytes_out = stats.bytes_out, ms = ms, outcome = outcome;
                    "request"
                );
            }
        }
        if cut {
            return End::Cut;
        }
        if let Some(e) = abort {
            // Replies held back for earlier pipelined requests still go out (with whatever of
            // this one was buffered, as if the writer had filled), briefly: the peer may be
            // gone or no longer reading.
            let _ = Deadline::after(ABORT_FLUSH).run(writer.flush()).await;
            return End::Failed(e);
        }
        if let Err(e) = flushed {
            return End::Failed(e);
        }
    }
}

/// Runs `op`, unless the shutdown grace runs out first (`None`). Costs nothing while `op` is
/// ready at once; the wait for the cut is made only once `op` waits.
async fn unless_cut<F: Future>(cut: &async_std::channel::Receiver<()>, op: F) -> Option<F::Output> {
    let mut op = std::pin::pin!(op);
    let mut cutting = None;
    futures::future::poll_fn(|cx| {
        if let Poll::Ready(out) = op.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let wait = cutting.get_or_insert_with(|| Box::pin(cut.recv()));
        wait.as_mut().poll(cx).map(|_| None)
    })
    .await
}

/// The length of the body an eager upload request carries right behind its header, if it is
/// one. `"eager":true` goes only with a sized body: with a chunked one, or one that cannot be
/// framed, the body's end cannot be found, and the connection is closed after the error.
fn eager_body(request: &sft_protocol::Request<'_>) -> Result<Option<u64>, WireError> {
    if !request.eager()? {
        return Ok(None);
    }
    match request.body() {
        Ok(Some(sft_protocol::body::Upload::Sized(len))) => Ok(Some(len)),
        Ok(None) => Ok(None),
        Ok(Some(sft_protocol::body::Upload::Chunked)) => Err(WireError::bad_request(
            "\"eager\" goes only with a body of declared \"size\", not a chunked one",
        )),
        Err(e) => Err(e),
    }
}

/// Counts a request in the metrics, when they are kept.
fn count(shared: &Shared, verb: Option<usize>, outcome: Outcome, bytes_in: u64, bytes_out: u64) {
    if let Some(metrics) = &shared.metrics {
        metrics.request(verb, outcome, bytes_in, bytes_out);
    }
}

/// Whether a whole header line is already buffered (so reading it will not wait).
fn line_buffered(reader: &sft_commands::Reader) -> bool {
    reader.buffer().contains(&b'\n')
}

/// Answers `err` to a request refused before its handler ran — after reading and dropping its
/// eager body, if it has one.
async fn refuse(
    reader: &mut sft_commands::Reader,
    writer: &mut sft_commands::Writer,
    scratch: &mut Vec<u8>,
    err: &WireError,
    eager: Option<u64>,
    shared: &Shared,
) -> io::Result<()> {
    if let Some(len) = eager {
        sft_commands::discard_eager(reader, len, &shared.limits).await?;
    }
    send_error(writer, scratch, err).await
}

async fn send_error(
    writer: &mut sft_commands::Writer,
    scratch: &mut Vec<u8>,
    err: &WireError,
) -> io::Result<()> {
    scratch.clear();
    encode_error(err, scratch);
    writer.write_all(scratch).await?;
    writer.flush().await
}

/// A duration in milliseconds, rounded to microseconds, for log lines.
fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
