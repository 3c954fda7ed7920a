use crate::admission::Access;
use crate::auth::Grant;
use crate::registry::Registry;
use crate::sandbox::Root;
use crate::slots::{Slot, UploadSlots};
use crate::staging::PartialLimits;
use async_std::io::{BufReader, BufWriter};
use futures::AsyncWriteExt;
use serde::Serialize;
use sft_protocol::{encode_error, encode_ok, WireError};
use std::net::SocketAddr;
use std::time::Duration;

/// The connection's buffered reader (plain TCP or TLS). Bytes after a header line (a body) are
/// read from here.
pub type Reader = BufReader<StreamRead>;
/// The connection's buffered writer. The session flushes it after each request. Every write
/// and flush through it keeps the connection's [`Pace`](sft_io::Pace): a client that stops
/// reading fails the write after the stall timeout (or below the minimum rate) instead of
/// holding the session forever. The session restarts the pace for each request.
pub type Writer = BufWriter<PacedWrite<StreamWrite>>;

pub use sft_io::{Pace, PaceRule, PacedWrite, StreamRead, StreamWrite};

/// Server-wide limits a handler enforces before doing any work.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest body a `SEND` may declare; `None` for no limit.
    pub max_upload_bytes: Option<u64>,
    /// Refuse every verb that writes: the session answers `read_only` to a request for a verb
    /// whose [`Command::writes`](crate::Command::writes) is true, before its handler runs.
    pub read_only: bool,
    /// The server's tokens, when it requires one: `AUTH` checks them, the session refuses
    /// every verb but the [public](crate::Command::public) ones until a connection presented
    /// one, and `HELLO` tells clients. `None`: every connection may do everything.
    pub tokens: Option<std::sync::Arc<dyn crate::auth::Tokens>>,
    /// Most connections the server serves at once, when known (for `HELLO`; the listener
    /// enforces it).
    pub max_connections: Option<usize>,
    /// A body transfer during which no byte moves for this long is aborted.
    pub stall_timeout: Duration,
    /// Once older than the stall timeout, a transfer averaging fewer bytes a second than this
    /// is aborted (0: no minimum).
    pub min_rate: u64,
    /// Uploads in progress, server-wide, and their bound.
    pub uploads: UploadSlots,
    /// Interrupted uploads are kept this long for a resume.
    pub partial_ttl: Duration,
    /// Most interrupted uploads kept at once (the oldest go first).
    pub max_partials: usize,
}

impl Limits {
    /// The default minimum average rate of a transfer, bytes a second: far below any real link
    /// (a 9600 baud modem moves about 1,200), far above a trickle meant to hold a slot.
    pub const DEFAULT_MIN_RATE: u64 = 256;

    /// The deadlines every transfer to or from a client keeps.
    pub fn pace(&self) -> PaceRule {
        PaceRule {
            stall: Some(self.stall_timeout),
            min_rate: self.min_rate,
        }
    }

    /// The pace of one request body, starting now.
    pub fn body_pace(&self) -> Pace {
        Pace::new(self.pace())
    }

    /// A place for one more upload, or a `busy` error to answer with.
    pub fn upload_slot(&self) -> Result<Slot, WireError> {
        self.uploads.try_take().ok_or_else(|| {
            WireError::new(
                sft_protocol::ErrorCode::Busy,
                format!(
                    "the server is receiving its limit of {} uploads at once; try again later",
                    self.uploads.max()
                ),
            )
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_bytes: None,
            read_only: false,
            tokens: None,
            max_connections: None,
            stall_timeout: Duration::from_secs(60),
            min_rate: Limits::DEFAULT_MIN_RATE,
            uploads: UploadSlots::default(),
            partial_ttl: Duration::from_secs(24 * 3600),
            max_partials: 1000,
        }
    }
}

impl Limits {
    /// What may be kept of interrupted uploads: for `--partial-ttl`, at most `--max-partials`
    /// of them, together at most `--max-upload-bytes`.
    pub fn partials(&self) -> PartialLimits {
        PartialLimits {
            ttl: self.partial_ttl,
            max_count: self.max_partials,
            max_bytes: self.max_upload_bytes,
        }
    }
}

/// What a request did, filled in by its handler and logged by the session.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// The (normalized) path the request named, if any.
    pub path: Option<String>,
    /// Body bytes received from the client.
    pub bytes_in: u64,
    /// Body bytes sent to the client.
    pub bytes_out: u64,
    /// The error code of an error reply the handler wrote itself (after a body).
    pub error: Option<sft_protocol::ErrorCode>,
}

/// Buffers a connection keeps from one request to the next, so that the small-request path
/// allocates nothing.
#[derive(Debug, Default)]
pub struct Buffers {
    scratch: Vec<u8>,
    body: Vec<u8>,
}

/// Everything a handler gets for one request.
#[derive(Debug)]
pub struct Context<'c> {
    /// The served folder; every path goes through it.
    pub root: &'c Root,
    /// Server-wide limits.
    pub limits: &'c Limits,
    /// Every verb the server answers (for verbs that describe the server, like `HELLO`).
    pub registry: &'c Registry,
    /// The connection's reader, positioned just after the header line.
    pub reader: &'c mut Reader,
    /// The connection's writer.
    pub writer: &'c mut Writer,
    /// The session's id, for log lines.
    pub session: u64,
    /// The client's address, for log lines.
    pub peer: SocketAddr,
    /// Filled in by the handler for the request log line.
    pub stats: Stats,
    buffers: &'c mut Buffers,
    /// What the connection authenticated as (admission checks it; `AUTH` changes it).
    access: &'c mut Access,
    /// The length of an eager body (PROTOCOL.md §3.1) that nothing has claimed yet: it follows
    /// the header without a go-ahead.
    eager: Option<u64>,
}

impl<'c> Context<'c> {
    /// A context for one request on a connection.
    #[allow(clippy::too_many_arguments)] // one per thing a handler sees; the session's only call
    pub fn new(
        root: &'c Root,
        limits: &'c Limits,
        registry: &'c Registry,
        reader: &'c mut Reader,
        writer: &'c mut Writer,
        session: u64,
        peer: SocketAddr,
        buffers: &'c mut Buffers,
        access: &'c mut Access,
    ) -> Self {
        Context {
            root,
            limits,
            registry,
            reader,
            writer,
            session,
            peer,
            stats: Stats::default(),
            buffers,
            access,
            eager: None,
        }
    }

    /// What the connection authenticated as, if it did.
    pub fn grant(&self) -> Option<&Grant> {
        self.access.grant()
    }

    /// Makes the connection act under `grant` from its next request on (what `AUTH` does once
    /// it accepted a token): admission checks every later request against it.
    pub fn authenticate(&mut self, grant: Grant) {
        if self.limits.tokens.is_some() {
            log::info!(session = self.session, name = grant.name.as_str(), access = grant.access.as_str(); "authenticated");
        }
        self.access.granted(grant);
    }

    /// Marks the request as an eager upload of `len` body bytes: they follow the header
    /// without waiting for a go-ahead (the session sets this; see [`Context::go_ahead`]).
    pub fn with_eager_body(mut self, len: Option<u64>) -> Self {
        self.eager = len;
        self
    }

    /// The handler reads the eager body itself (it needs no go-ahead).
    pub(crate) fn eager_claimed(&mut self) {
        self.eager = None;
    }

    /// Whether the request's body came eagerly and is still unclaimed: no go-ahead was given
    /// and none of it read.
    pub fn eager_body_pending(&self) -> bool {
        self.eager.is_some()
    }

    /// The go-ahead of an upload: a success reply with `fields` (usually none, `{"ok":true}`),
    /// flushed, after which the client sends the body. For an eager upload the body is already
    /// on its way and nothing is written: the request's only reply is its final one.
    pub async fn go_ahead(&mut self, fields: &impl Serialize) -> std::io::Result<()> {
        if self.eager.take().is_some() {
            return Ok(());
        }
        self.reply_ok(fields).await?;
        self.flush().await
    }

    /// Reads and drops an eager body nothing claimed (a request refused before its go-ahead),
    /// within the server's stall timeout and minimum rate: the session does this after the
    /// handler, before the refusal is sent, so the connection stays in step.
    pub async fn settle_body(&mut self) -> std::io::Result<()> {
        if let Some(len) = self.eager.take() {
            discard_eager(self.reader, len, self.limits).await?;
            self.stats.bytes_in += len;
        }
        Ok(())
    }

    /// Writes a success reply line with `fields` (buffered: it goes out with the next flush or
    /// with the body that follows it).
    ///
    /// To an upload whose body came eagerly and is unclaimed, the first success reply can only
    /// be the go-ahead, which an eager upload does without: it is not written (see
    /// [`Context::go_ahead`]), and the body is the handler's to read.
    pub async fn reply_ok(&mut self, fields: &impl Serialize) -> std::io::Result<()> {
        if self.eager.take().is_some() {
            return Ok(());
        }
        let scratch = &mut self.buffers.scratch;
        scratch.clear();
        encode_ok(fields, scratch);
        self.writer.write_all(scratch).await
    }

    /// Writes an error reply line (buffered). An eager body nothing claimed is read and dropped
    /// first: the refusal comes after it.
    pub async fn reply_error(&mut self, err: &WireError) -> std::io::Result<()> {
        self.settle_body().await?;
        self.stats.error = Some(err.code);
        let scratch = &mut self.buffers.scratch;
        scratch.clear();
        encode_error(err, scratch);
        self.writer.write_all(scratch).await
    }

    /// A buffer for a small body, kept by the connection between requests (empty on entry).
    pub fn body_buffer(&mut self) -> &mut Vec<u8> {
        self.buffers.body.clear();
        &mut self.buffers.body
    }

    /// Writes a success reply line with `fields` followed by the [`Context::body_buffer`] from
    /// byte `from` on, buffered together so that a small response leaves in one write.
    pub async fn reply_ok_with_body_buffer(
        &mut self,
        fields: &impl Serialize,
        from: usize,
    ) -> std::io::Result<()> {
        self.reply_ok(fields).await?;
        let body = &self.buffers.body[from..];
        self.writer.write_all(body).await?;
        self.stats.bytes_out += body.len() as u64;
        Ok(())
    }

    /// Sends everything buffered so far.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush().await
    }
}

/// Reads and drops an eager body of `len` bytes that follows a refused request, within the
/// server's stall timeout and minimum rate (for refusals the session makes before any handler
/// runs: unknown verbs, [`admit`](crate::admit)).
pub async fn discard_eager(reader: &mut Reader, len: u64, limits: &Limits) -> std::io::Result<()> {
    let mut pace = limits.body_pace();
    crate::body::discard(reader, len, &mut pace).await
}
