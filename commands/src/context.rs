use crate::admission::Access;
use crate::auth::Grant;
use crate::registry::Registry;
use crate::sandbox::Root;
use crate::slots::{SignSlots, Slot, UploadSlots};
use crate::staging::PartialLimits;
use crate::writer::Writer;
use async_std::io::BufReader;
use futures::AsyncWriteExt;
use serde::Serialize;
use sft_protocol::body::{encode_line, Upload};
use sft_protocol::{encode_error, encode_ok, encode_trailer, RemotePath, WireError};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// The connection's buffered reader (plain TCP or TLS). Bytes after a header line (a body) are
/// read from here: by a verb only through the [`Body`](crate::Body) its go-ahead returns.
pub type Reader = BufReader<StreamRead>;

pub use crate::body::Body;
pub use sft_io::{Pace, PaceRule, StreamRead, StreamWrite};

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
    /// Signatures computed at once (`SIGN`), server-wide; others wait their turn.
    pub signing: SignSlots,
    /// The highest zstd level the server compresses at (what it is asked is capped to it);
    /// `None`: it refuses compression (`unsupported`), in both directions.
    pub compress_level_max: Option<i32>,
}

impl Limits {
    /// The default minimum average rate of a transfer, bytes a second: far below any real link
    /// (a 9600 baud modem moves about 1,200), far above a trickle meant to hold a slot.
    pub const DEFAULT_MIN_RATE: u64 = 256;

    /// The default cap on the zstd level the server compresses at: what a client asks above it
    /// would cost the server's CPU more than it saves the link.
    pub const DEFAULT_COMPRESS_LEVEL_MAX: i32 = 9;

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
            signing: SignSlots::default(),
            compress_level_max: Some(Limits::DEFAULT_COMPRESS_LEVEL_MAX),
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
    /// For a compressed body (version 3): the file bytes it carried, before compression (in
    /// either direction), where `bytes_in`/`bytes_out` count what crossed the wire.
    pub uncompressed: Option<u64>,
    /// For a delta upload (version 3): the file bytes taken from the server's own copy.
    pub reused: Option<u64>,
}

/// Buffers a connection keeps from one request to the next, so that the small-request path
/// allocates nothing.
#[derive(Debug, Default)]
pub struct Buffers {
    scratch: Vec<u8>,
    body: Vec<u8>,
}

/// Where the request's body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// No body is owed: none was declared, or the go-ahead claimed it.
    Nothing,
    /// A body was declared, and the client waits for the go-ahead before it sends it.
    GoAhead,
    /// An eager body (PROTOCOL.md §3.1) of this length follows the header without a go-ahead,
    /// and nothing has claimed it yet.
    Eager(u64),
}

/// Everything a handler gets for one request: what the server is, and what it may do with the
/// connection. The connection itself stays out of reach: replies, bodies and stream lines go
/// out through the methods here, and a request body is read only through the [`Body`] that
/// [`Context::go_ahead`] returns, so a verb can neither read what follows a header it did not
/// accept nor answer an upload before its go-ahead.
#[derive(Debug)]
pub struct Context<'c> {
    /// The served folder; every path goes through it.
    pub root: &'c Root,
    /// Server-wide limits.
    pub limits: &'c Limits,
    /// Every verb the server answers (for verbs that describe the server, like `HELLO`).
    pub registry: &'c Registry,
    /// The session's id, for log lines.
    pub session: u64,
    /// The client's address, for log lines.
    pub peer: SocketAddr,
    /// Filled in by the handler (and [`Context::resolve`]) for the request log line.
    pub stats: Stats,
    pub(crate) reader: &'c mut Reader,
    pub(crate) writer: &'c mut Writer,
    buffers: &'c mut Buffers,
    /// What the connection authenticated as (admission checks it; `AUTH` changes it).
    access: &'c mut Access,
    body: Pending,
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
            body: Pending::Nothing,
        }
    }

    /// Says what follows the request's header: the `body` admission found it declares
    /// ([`admit`](crate::admit)), and the length of an eager one, which follows without a
    /// go-ahead (the session sets this).
    pub fn with_body(mut self, body: Option<Upload>, eager: Option<u64>) -> Self {
        self.body = match (body, eager) {
            (_, Some(len)) => Pending::Eager(len),
            (Some(_), None) => Pending::GoAhead,
            (None, None) => Pending::Nothing,
        };
        self
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

    /// Checks a path the request names ([`Root::check`]) and records it for the request's log
    /// line ([`Stats::path`]): normalized once checked, as sent (shortened) when refused.
    pub fn resolve(&mut self, path: &str) -> Result<RemotePath, WireError> {
        let checked = self.root.check(path);
        self.stats.path = Some(match &checked {
            Ok(rp) => rp.to_string(),
            Err(_) => crate::sandbox::requested(path),
        });
        log_resolved(self.session, self.stats.path.as_deref(), &checked);
        checked
    }

    /// [`Context::resolve`] for a verb that names two paths (`RENAME`): the log line's path is
    /// `from -> to`.
    pub fn resolve_pair(
        &mut self,
        from: &str,
        to: &str,
    ) -> Result<(RemotePath, RemotePath), WireError> {
        let checked = self
            .root
            .check(from)
            .and_then(|f| Ok((f, self.root.check(to)?)));
        self.stats.path = Some(match &checked {
            Ok((f, t)) => format!("{f} -> {t}"),
            Err(_) => {
                let requested = crate::sandbox::requested;
                format!("{} -> {}", requested(from), requested(to))
            }
        });
        log_resolved(self.session, self.stats.path.as_deref(), &checked);
        checked
    }

    /// The go-ahead of an upload: a success reply with `fields` (usually none, `{"ok":true}`),
    /// flushed, after which the client sends the body; returns the [`Body`] to read it
    /// through. For an eager upload the body is already on its way and nothing is written: the
    /// request's only reply is its final one. This is the only way to a request's body.
    pub async fn go_ahead(&mut self, fields: &impl Serialize) -> io::Result<Body<'_, 'c>> {
        let eager = matches!(self.body, Pending::Eager(_));
        log::debug!(session = self.session, body = if eager { "eager" } else { "after go-ahead" }; "reading the request body");
        if !eager {
            self.write_ok(fields).await?;
            self.flush().await?;
        }
        self.body = Pending::Nothing;
        let pace = self.limits.body_pace();
        Ok(Body::new(self, pace))
    }

    /// Reads and drops an eager body nothing claimed (a request refused before its go-ahead),
    /// within the server's stall timeout and minimum rate: the session does this after the
    /// handler, before the refusal is sent, so the connection stays in step.
    pub async fn settle_body(&mut self) -> io::Result<()> {
        if let Pending::Eager(len) = self.body {
            self.body = Pending::Nothing;
            discard_eager(self.reader, len, self.limits).await?;
            self.stats.bytes_in += len;
        }
        Ok(())
    }

    /// Writes a success reply line with `fields` (buffered: it goes out with the next flush or
    /// with the body that follows it).
    ///
    /// To a request that declared a body, the first success reply is the go-ahead, written by
    /// [`Context::go_ahead`] (or, eager, not written at all): before it, this fails (an
    /// `InvalidInput` error, which the verb returns as an abort) rather than let the client
    /// take a final reply for a go-ahead, or drop one.
    pub async fn reply_ok(&mut self, fields: &impl Serialize) -> io::Result<()> {
        if self.body != Pending::Nothing {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a success reply to a request with a body before its go-ahead (Context::go_ahead)",
            ));
        }
        self.write_ok(fields).await
    }

    async fn write_ok(&mut self, fields: &impl Serialize) -> io::Result<()> {
        let scratch = &mut self.buffers.scratch;
        scratch.clear();
        encode_ok(fields, scratch);
        self.writer.write_all(scratch).await
    }

    /// Writes an error reply line (buffered). An eager body nothing claimed is read and dropped
    /// first: the refusal comes after it.
    pub async fn reply_error(&mut self, err: &WireError) -> io::Result<()> {
        self.settle_body().await?;
        // A refusal instead of a go-ahead: the client sends no body.
        self.body = Pending::Nothing;
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
    ) -> io::Result<()> {
        self.reply_ok(fields).await?;
        let body = &self.buffers.body[from..];
        self.writer.write_all(body).await?;
        self.stats.bytes_out += body.len() as u64;
        Ok(())
    }

    /// Writes `bytes` of a body or a line stream a success reply announced (buffered), counted
    /// in [`Stats::bytes_out`].
    pub async fn write_body(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.stats.bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// Writes one line of a line stream (`{"ok":true,"stream":"lines"}` announced it): an item,
    /// or the `{"end":true,…}` line (buffered), counted in [`Stats::bytes_out`]. `item` must
    /// serialize to a JSON object.
    pub async fn write_line(&mut self, item: &impl Serialize) -> io::Result<()> {
        let scratch = &mut self.buffers.scratch;
        scratch.clear();
        encode_line(item, scratch).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.writer.write_all(scratch).await?;
        self.stats.bytes_out += scratch.len() as u64;
        Ok(())
    }

    /// Writes the trailer line that follows a body whose reply said `"trailer":true` (buffered).
    pub async fn write_trailer(&mut self, fields: &impl Serialize) -> io::Result<()> {
        let scratch = &mut self.buffers.scratch;
        scratch.clear();
        encode_trailer(fields, scratch);
        self.writer.write_all(scratch).await
    }

    /// Sends everything buffered so far.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }
}

/// Reads and drops an eager body of `len` bytes that follows a refused request, within the
/// server's stall timeout and minimum rate (for refusals the session makes before any handler
/// runs: unknown verbs, [`admit`](crate::admit)).
pub async fn discard_eager(reader: &mut Reader, len: u64, limits: &Limits) -> io::Result<()> {
    let mut pace = limits.body_pace();
    crate::body::discard(reader, len, &mut pace).await
}

/// For `SFT_LOG=debug`: the path a request names as the root resolved it, or why it was refused.
fn log_resolved<T>(session: u64, path: Option<&str>, checked: &Result<T, WireError>) {
    let path = path.unwrap_or_default();
    match checked {
        Ok(_) => log::debug!(session = session, path = path; "path resolved"),
        Err(e) => {
            log::debug!(session = session, path = path, code = e.code.as_str(), reason = e.message.as_str(); "path refused")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_std::os::unix::net::UnixStream;
    use futures::AsyncReadExt;

    /// A request's context over one end of a socket pair; the test is the client, at the other.
    struct Harness {
        root: Root,
        limits: Limits,
        registry: Registry,
        reader: Reader,
        writer: Writer,
        buffers: Buffers,
        access: Access,
        client: UnixStream,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn new() -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let (server, client) = UnixStream::pair().unwrap();
            let (read, write) = sft_io::split(server);
            let limits = Limits::default();
            Harness {
                root: Root::open(dir.path()).unwrap(),
                reader: BufReader::new(read),
                writer: Writer::new(write, limits.pace(), 4096),
                limits,
                registry: Registry::new(),
                buffers: Buffers::default(),
                access: Access::new(),
                client,
                _dir: dir,
            }
        }

        fn context(&mut self, body: Option<Upload>, eager: Option<u64>) -> Context<'_> {
            let peer = "127.0.0.1:1".parse().unwrap();
            let h = self;
            Context::new(
                &h.root,
                &h.limits,
                &h.registry,
                &mut h.reader,
                &mut h.writer,
                1,
                peer,
                &mut h.buffers,
                &mut h.access,
            )
            .with_body(body, eager)
        }
    }

    #[derive(Serialize)]
    struct Fields {
        n: u64,
    }

    /// The only way to a body is the go-ahead; a success reply before it is an error, never
    /// dropped or taken for the go-ahead.
    #[test]
    fn a_success_reply_before_the_go_ahead_is_refused_not_dropped() {
        async_std::task::block_on(async {
            let mut h = Harness::new();
            send(&h.client, b"abc").await;
            let mut client = h.client.clone();
            // Eager: nothing written for the go-ahead; the final reply is the only one.
            let mut ctx = h.context(Some(Upload::Sized(3)), Some(3));
            let refused = ctx.reply_ok(&Fields { n: 0 }).await.unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
            let mut body = ctx.go_ahead(&Fields { n: 1 }).await.unwrap();
            let mut got = [0; 3];
            body.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"abc");
            body.reply_ok(&Fields { n: 2 }).await.unwrap();
            body.flush().await.unwrap();
            assert_eq!(body.stats.bytes_in, 3);
            drop(ctx);
            drop(h);
            let mut out = String::new();
            client.read_to_string(&mut out).await.unwrap();
            assert_eq!(out, "{\"ok\":true,\"n\":2}\n");
        });
        async_std::task::block_on(async {
            // Waiting for a go-ahead: it is written and flushed, then the final reply.
            let mut h = Harness::new();
            let mut client = h.client.clone();
            let mut ctx = h.context(Some(Upload::Sized(0)), None);
            assert!(ctx.reply_ok(&Fields { n: 0 }).await.is_err());
            let mut body = ctx.go_ahead(&Fields { n: 1 }).await.unwrap();
            body.reply_ok(&Fields { n: 2 }).await.unwrap();
            body.flush().await.unwrap();
            drop(ctx);
            drop(h);
            let mut out = String::new();
            client.read_to_string(&mut out).await.unwrap();
            assert_eq!(out, "{\"ok\":true,\"n\":1}\n{\"ok\":true,\"n\":2}\n");
        });
    }

    /// A refusal before the go-ahead reads and drops an eager body first, and then no success
    /// reply is owed a body any more.
    #[test]
    fn a_refusal_settles_an_eager_body_first() {
        async_std::task::block_on(async {
            let mut h = Harness::new();
            send(&h.client, b"abcdef").await;
            let mut ctx = h.context(Some(Upload::Sized(4)), Some(4));
            ctx.reply_error(&WireError::too_large("no")).await.unwrap();
            assert_eq!(ctx.stats.bytes_in, 4);
            assert_eq!(ctx.stats.error, Some(sft_protocol::ErrorCode::TooLarge));
            drop(ctx);
            assert_eq!(h.reader.buffer(), b"ef");
        });
    }

    /// The client sends `bytes`.
    async fn send(client: &UnixStream, bytes: &[u8]) {
        futures::AsyncWriteExt::write_all(&mut &*client, bytes)
            .await
            .unwrap();
    }
}
