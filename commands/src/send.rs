//! `SEND`: upload a file.
//!
//! ```text
//! > {"verb":"SEND","path":"in/data.bin","size":5,"blake3":"ea8f…"}
//! < {"ok":true}                 go-ahead (or an error reply, and nothing more)
//! > hello                       exactly `size - offset` raw bytes
//! < {"ok":true,"size":5,"blake3":"ea8f…"}
//! ```
//!
//! The body goes to a staging file inside the root (a resumable *partial* when the client
//! declared the file's BLAKE3 hash); only when every byte arrived — and hashes to what was
//! declared — is it renamed into place. A client that vanishes mid-body leaves nothing under the
//! final name: a partial holding at least 64 KiB is kept for `--continue` and expires, anything
//! else is removed — and a file is only ever created once the first block of the body arrived.
//!
//! A body of unknown length comes in chunks instead (`"body":"chunked"`, see `chunked.rs`):
//! it always goes to a plain staging file, is hashed as it arrives, and is committed only when the
//! terminator's declared hash (if any) matches.

use crate::attributes::Attributes;
use crate::chunked::{self, Received};
use crate::chunked::{Basis, Kinds};
use crate::command::{Accepts, BoxFuture, Command, CommandError};
use crate::context::{Body, Context};
use crate::sandbox::{io_error, Closing, Root, Target, Work};
use crate::staging::{Interrupted, Upload, MIN_KEPT_PARTIAL};
use crate::started::log_start;
use crate::version3::{accepts_compressed, changed, expected_hash, needs_v3};
use sft_io::{confirm, Version};
use sft_protocol::body::Upload as Declared;
use sft_protocol::delta::{DeltaBook, DeltaSpec};
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::verbs::{
    is_blake3_hex, is_upload_id, SendReady, SendReply, SendRequest, SendStreamRequest, SendTrailer,
    Verb,
};
use sft_protocol::{decode_trailer, ErrorCode, RemotePath, Request, WireError};
use std::io;
use std::sync::Arc;

/// The `SEND` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Send;

/// How an upload is verified and named, from its request.
#[derive(Debug)]
struct Integrity {
    /// The hash declared up front, if any.
    expected: Option<blake3::Hash>,
    /// What names a resumable partial: the declared hash, or the client's upload id.
    key: Option<Vec<u8>>,
    /// Whether the bytes are hashed (up-front hash or trailer).
    hashed: bool,
}

fn integrity(args: &SendRequest) -> Result<Integrity, WireError> {
    let expected = match &args.blake3 {
        None => None,
        Some(hex) if is_blake3_hex(hex) => blake3::Hash::from_hex(hex).ok(),
        Some(_) => {
            return Err(WireError::bad_request(
                "\"blake3\" must be 64 lower-case hex digits",
            ))
        }
    };
    if args.trailer && expected.is_some() {
        return Err(WireError::bad_request(
            "give the hash either up front (\"blake3\") or in a trailer, not both",
        ));
    }
    let id = match &args.upload_id {
        Some(id) if !is_upload_id(id) => {
            return Err(WireError::bad_request(
                "\"upload_id\" must be 32 to 64 lower-case hex digits",
            ))
        }
        Some(_) if !args.trailer => {
            return Err(WireError::bad_request(
                "\"upload_id\" goes with \"trailer\":true",
            ))
        }
        other => other,
    };
    let key = match (expected, id) {
        (Some(hash), _) => Some([b"h:".as_slice(), hash.as_bytes()].concat()),
        (None, Some(id)) => Some([b"u:".as_slice(), id.as_bytes()].concat()),
        (None, None) => None,
    };
    if args.resume && key.is_none() {
        return Err(WireError::bad_request(
            "\"resume\" needs the file's \"blake3\" hash, or \"trailer\" with an \"upload_id\"",
        ));
    }
    Ok(Integrity {
        expected,
        key,
        hashed: expected.is_some() || args.trailer,
    })
}

/// Reads the trailer line after a `SEND` body: the whole file's hash.
async fn read_trailer(body: &mut Body<'_, '_>) -> Result<blake3::Hash, CommandError> {
    let mut line = Vec::with_capacity(96);
    match body.read_line(&mut line).await {
        Ok(true) => {}
        Ok(false) => return Err(CommandError::Abort(io::ErrorKind::UnexpectedEof.into())),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            // Over the line limit: the end of the line was not read, so the connection is out
            // of step. Say why (best effort), then close.
            let err =
                WireError::too_large(format!("trailer line longer than {MAX_HEADER_LEN} bytes"));
            let _ = body.reply_error(&err).await;
            let _ = body.flush().await;
            return Err(CommandError::Abort(io::Error::new(e.kind(), err.message)));
        }
        Err(e) => return Err(CommandError::Abort(e)),
    }
    let trailer: SendTrailer = decode_trailer(&line)?;
    match blake3::Hash::from_hex(&trailer.blake3) {
        Ok(hash) if is_blake3_hex(&trailer.blake3) => Ok(hash),
        _ => Err(WireError::bad_request(
            "the trailer's \"blake3\" must be 64 lower-case hex digits",
        )
        .into()),
    }
}

/// A sized `SEND`'s header, checked: everything the later steps need.
#[derive(Debug)]
struct Order {
    rp: RemotePath,
    /// The path as shown in messages.
    shown: String,
    size: u64,
    overwrite: bool,
    resume: bool,
    /// The hash comes in a trailer line after the body.
    trailer: bool,
    integrity: Integrity,
    /// The stored file's permission bits and modification time, when the request gave them.
    attrs: Attributes,
}

impl Order {
    /// The header checks, before anything is touched: path, size limit, hashes. (The session
    /// refused the request already if the server is read-only.)
    fn check(args: SendRequest, ctx: &mut Context<'_>) -> Result<Order, WireError> {
        let rp = ctx.resolve(&args.path)?;
        let shown = rp.to_string();
        if let Some(max) = ctx.limits.max_upload_bytes {
            if args.size > max {
                return Err(WireError::too_large(format!(
                    "{} bytes is over this server's upload limit of {max} bytes",
                    args.size
                )));
            }
        }
        if args.eager && (args.resume || args.trailer) {
            return Err(WireError::bad_request(
                "\"eager\" goes with neither \"resume\" nor \"trailer\": an eager upload \
                 declares its \"blake3\" up front, if any, and is sent whole",
            ));
        }
        let integrity = integrity(&args)?;
        Ok(Order {
            rp,
            shown,
            size: args.size,
            overwrite: args.overwrite,
            resume: args.resume,
            trailer: args.trailer,
            integrity,
            attrs: Attributes {
                mtime: args.mtime,
                mode: args.mode,
            },
        })
    }
}

impl Command for Send {
    fn verb(&self) -> &'static str {
        SendRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "upload a file, verified and stored atomically; resumable"
    }

    fn writes(&self) -> bool {
        true
    }

    fn accepts(&self) -> Accepts {
        Accepts::SizedOrChunked
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let v3: Version3 = request.args()?;
            if request.body()? == Some(Declared::Chunked) {
                if v3.compress.is_some() || v3.delta.is_some() {
                    needs_v3(&request, "\"compress\" and \"delta\"")?;
                }
                return receive_chunked(request, ctx).await;
            }
            if v3.compress.is_some() || v3.delta.is_some() {
                return Err(WireError::bad_request(
                    "\"compress\" and \"delta\" go with \"body\":\"chunked\", not \"size\"",
                )
                .into());
            }
            let order = Order::check(request.args()?, ctx)?;
            // Held until the upload ends: past the bound, `busy` before any go-ahead.
            let _slot = ctx.limits.upload_slot()?;
            if order.size < SMALL_UPLOAD {
                return receive_small(ctx, &order).await;
            }
            let (target, mut upload) = begin(ctx, &order).await?;
            upload.set_attributes(order.attrs);
            let offset = upload.offset();
            let mut body = go_ahead(ctx, offset).await?;
            log_start(&body, SendRequest::NAME, Some(order.size - offset));
            let received = match receive(&mut body, &mut upload, order.size).await {
                Ok(()) => Ok(upload),
                Err(Interrupted::Peer(e)) => {
                    // The client vanished or stalled: a resumable partial is kept.
                    keep(&body, upload).await;
                    return Err(CommandError::Abort(e));
                }
                Err(Interrupted::Storage(e)) => {
                    // Storing failed (disk full, quota…): free the file at once, then read the
                    // rest of the body so the connection stays in step, and report.
                    body.root
                        .clean_up("discarding an upload", move || upload.discard())
                        .await;
                    let left = order.size - offset - body.stats.bytes_in;
                    body.discard(left).await?;
                    Err(io_error(&order.shown, &e))
                }
            };
            // The hash to check against: declared up front, or in the trailer after the body.
            let claimed = if order.trailer {
                match read_trailer(&mut body).await {
                    Ok(hash) => Some(hash),
                    Err(CommandError::Abort(e)) => {
                        // Every byte arrived but not the hash: the partial can still finish.
                        if let Ok(upload) = received {
                            keep(&body, upload).await;
                        }
                        return Err(CommandError::Abort(e));
                    }
                    // A malformed trailer line was read whole: the connection is in step.
                    Err(CommandError::Reply(e)) => {
                        return body.reply_error(&e).await.map_err(CommandError::Abort)
                    }
                }
            } else {
                order.integrity.expected
            };
            let stored = match received.and_then(|upload| verify(upload, claimed, &order.shown)) {
                Ok((upload, hash)) => commit(body.root, upload, target, order.overwrite)
                    .await
                    .map(|()| hash),
                Err(e) => Err(e),
            };
            // The body was consumed, so the connection is in step: a plain error reply.
            stored_reply(&mut body, stored, order.size, None).await
        })
    }
}

/// Version 3's fields of a `SEND`, looked at whatever the body, so that none is ignored.
#[derive(serde::Deserialize)]
struct Version3 {
    compress: Option<serde::de::IgnoredAny>,
    delta: Option<serde::de::IgnoredAny>,
}

/// Sized uploads smaller than this are received whole in memory and stored in one step, in
/// place ([`receive_small`]). It is the least an interrupted upload must hold to be kept for a
/// resume ([`MIN_KEPT_PARTIAL`]): no partial of such an upload is ever kept, so there is
/// nothing to continue and nothing to keep, whatever the request asks. It is also the size of
/// file `GET` reads in place.
const SMALL_UPLOAD: u64 = MIN_KEPT_PARTIAL;

/// A small sized upload: the target is prepared (as [`begin`] does), the body read whole into
/// memory — without a timer while it is already buffered — and verified (declared hash, or
/// trailer) before anything is created; then the file is created, written, settled and
/// published in one step ([`Root::store_whole`](crate::Root)). A client that vanishes mid-body,
/// or whose bytes do not hash to what it declared, leaves nothing at all behind.
///
/// That step is a small store ([`Work::Store`]): on a local file system the root's policy runs
/// it in place, as it does `GET`'s read of a small file — a few system calls on at most 64 KiB
/// cost a small file less than a hop to the blocking pool and back (see SECURITY.md, "Threads",
/// and BENCHMARKS.md).
async fn receive_small(ctx: &mut Context<'_>, order: &Order) -> Result<(), CommandError> {
    let (rp, overwrite) = (order.rp.clone(), order.overwrite);
    let prepare = move |root: &Root| root.prepare_target(&rp, overwrite);
    let target = ctx.root.blocking(Work::Store, prepare).await??;
    // A resume has nothing to continue (see `SMALL_UPLOAD`): it starts at 0.
    let mut body = go_ahead(ctx, 0).await?;
    let mut bytes = vec![0; order.size as usize];
    body.read_exact(&mut bytes)
        .await
        .map_err(|(_, e)| CommandError::Abort(e))?;
    let claimed = if order.trailer {
        match read_trailer(&mut body).await {
            Ok(hash) => Some(hash),
            Err(CommandError::Abort(e)) => return Err(CommandError::Abort(e)),
            Err(CommandError::Reply(e)) => {
                return body.reply_error(&e).await.map_err(CommandError::Abort)
            }
        }
    } else {
        order.integrity.expected
    };
    let hash = order.integrity.hashed.then(|| blake3::hash(&bytes));
    let stored = match vouched(claimed, hash, &order.shown) {
        Ok(()) => {
            let attrs = order.attrs;
            let store = move |root: &Root| root.store_whole(&target, &bytes, attrs, overwrite);
            match body.root.blocking(Work::Store, store).await {
                Ok(stored) => stored.map(|()| hash),
                Err(hung) => Err(hung.into()),
            }
        }
        Err(e) => Err(e),
    };
    stored_reply(&mut body, stored, order.size, None).await
}

/// The final reply of an upload whose body was read whole: what was stored (`size` bytes,
/// hashing to `hash` if hashed), or why nothing was.
async fn stored_reply(
    body: &mut Body<'_, '_>,
    stored: Result<Option<blake3::Hash>, WireError>,
    size: u64,
    reused: Option<u64>,
) -> Result<(), CommandError> {
    match stored {
        Ok(hash) => {
            let blake3 = hash.map(|h| h.to_hex().to_string());
            body.reply_ok(&SendReply {
                size,
                blake3,
                reused,
            })
            .await
        }
        Err(e) => body.reply_error(&e).await,
    }
    .map_err(CommandError::Abort)
}

/// Prepares the target (creating missing parent folders) and begins storing the upload: in a
/// fresh staging file, or in its partial, continued from where it stopped.
///
/// A fresh upload touches only metadata here (resolving, creating missing folders; its file is
/// created with the first block): a small store, which the root's policy runs in place on a
/// local file system. Resuming may read the partial to restore its hash state: bulk work.
async fn begin(ctx: &Context<'_>, order: &Order) -> Result<(Target, Upload), WireError> {
    let (rp, overwrite, size, resume) =
        (order.rp.clone(), order.overwrite, order.size, order.resume);
    let (key, hashed) = (order.integrity.key.clone(), order.integrity.hashed);
    let work = if resume { Work::Bulk } else { Work::Store };
    let begin = move |root: &Root| {
        let target = root.prepare_target(&rp, overwrite)?;
        let upload = root
            .begin_upload(&rp, size, key.as_deref(), hashed, resume)
            .map_err(|e| WireError::internal(format!("cannot start storing the upload: {e}")))?;
        Ok((target, upload))
    };
    ctx.root.blocking(work, begin).await?
}

/// The go-ahead: from here on the client sends the body from `offset` on (an eager upload's
/// body is on its way already: then nothing is sent).
async fn go_ahead<'a, 'c>(
    ctx: &'a mut Context<'c>,
    offset: u64,
) -> Result<Body<'a, 'c>, CommandError> {
    ctx.go_ahead(&SendReady { offset })
        .await
        .map_err(CommandError::Abort)
}

/// Receives the body: the upload's `size` bytes from its offset on.
async fn receive(
    body: &mut Body<'_, '_>,
    upload: &mut Upload,
    size: u64,
) -> Result<(), Interrupted> {
    let len = size - upload.offset();
    if len > 0 {
        // A client that leaves before its first byte costs no more than this wait: the body's
        // pipeline is only started once there is something to store.
        match body.ready().await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Interrupted::Peer(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("ended {len} bytes before the declared {len}"),
                )))
            }
            Err(e) => return Err(Interrupted::Peer(e)),
        }
    }
    body.receive_upload(upload, len, |_| {}).await
}

/// Keeps an interrupted upload for a resume, if it is a partial worth keeping (see
/// [`Upload::keep`]).
async fn keep(ctx: &Context<'_>, upload: Upload) {
    if !upload.holds_file() {
        // Nothing was written: dropping it costs the file system nothing.
        return;
    }
    let limits = ctx.limits.partials();
    let keep = move || {
        upload.keep(&limits);
    };
    ctx.root
        .clean_up("keeping an interrupted upload", keep)
        .await;
}

/// Checks the received bytes against the hash the client vouched for, if any; returns the
/// upload with the hash of what it holds (when hashed).
fn verify(
    upload: Upload,
    claimed: Option<blake3::Hash>,
    shown: &str,
) -> Result<(Upload, Option<blake3::Hash>), WireError> {
    let got = upload.hash();
    vouched(claimed, got, shown).map(|()| (upload, got))
}

/// Whether the bytes received, hashing to `got` (when hashed), are what the client vouched
/// for (`claimed`, if anything).
fn vouched(
    claimed: Option<blake3::Hash>,
    got: Option<blake3::Hash>,
    shown: &str,
) -> Result<(), WireError> {
    match (claimed, got) {
        (Some(want), Some(got)) if want != got => Err(WireError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "{shown}: received bytes hash to {got}, not the declared {want}; nothing was stored"
            ),
        )),
        _ => Ok(()),
    }
}

/// Renames the complete upload into place, with its attributes. Metadata only (a few calls:
/// permission bits, time, link or rename): a small store, like [`begin`].
async fn commit(
    root: &Root,
    upload: Upload,
    target: Target,
    overwrite: bool,
) -> Result<(), WireError> {
    let commit = move |_: &Root| upload.commit(&target, overwrite);
    root.blocking(Work::Store, commit).await?
}

/// A `SEND` with `"body":"chunked"`: checked like a sized one, then received chunk by chunk into
/// a plain staging file (not resumable), hashed on the way. Version 3: its chunks may be
/// compressed (`compress`), and with `delta` copy from the file it replaces (the *basis*),
/// whose hash is checked before the go-ahead and whose version is confirmed at the end.
async fn receive_chunked(request: Request<'_>, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let args: SendStreamRequest = request.args()?;
    if args.compress.is_some() {
        accepts_compressed(ctx.limits)?;
    }
    let rp = ctx.resolve(&args.path)?;
    let shown = rp.to_string();
    let delta = match &args.delta {
        Some(spec) => Some(check_delta(spec, args.overwrite, ctx)?),
        None => None,
    };
    let _slot = ctx.limits.upload_slot()?;
    let basis = match delta {
        Some((want, file_size)) => {
            let (file, version) = open_basis(ctx, &rp, want, &shown).await?;
            let book = DeltaBook::new(file_size, version.size);
            Some((Basis { file, book }, version))
        }
        None => None,
    };
    let overwrite = args.overwrite;
    let attrs = Attributes {
        mtime: args.mtime,
        mode: args.mode,
    };
    let begin = ctx.root.blocking(Work::Store, move |root| {
        let target = root.prepare_target(&rp, overwrite)?;
        let upload = root
            .begin_upload(&rp, 0, None, true, false)
            .map_err(|e| WireError::internal(format!("cannot start storing the upload: {e}")))?;
        Ok::<_, WireError>((target, upload))
    });
    let (target, mut upload) = begin.await??;
    upload.set_attributes(attrs);
    let (basis, version) = basis.unzip();
    let mut kinds = Kinds {
        zstd: args.compress.is_some(),
        basis,
    };
    let mut body = go_ahead(ctx, 0).await?;
    log_start(&body, SendRequest::NAME, None);

    // Dropping `upload` on any early return removes the staging file.
    let received = chunked::receive(&mut body, upload, &shown, &mut kinds).await?;
    let (upload, size, declared) = match received {
        Received::Refused => return Ok(()),
        Received::Complete {
            upload,
            size,
            declared,
        } => (upload, size, declared),
    };
    if kinds.zstd {
        body.stats.uncompressed = Some(size);
    }
    let reused = kinds.basis.as_ref().map(|b| b.book.reused());
    body.stats.reused = reused;
    let built = match (&kinds.basis, version) {
        (Some(basis), Some(version)) => delta_built(&body, basis, version, declared, &shown).await,
        _ => Ok(()),
    };
    let stored = match built.and_then(|()| verify(*upload, declared, &shown)) {
        Ok((upload, hash)) => commit(body.root, upload, target, overwrite)
            .await
            .map(|()| hash),
        Err(e) => Err(e),
    };
    stored_reply(&mut body, stored, size, reused).await
}

/// A delta's header, checked: the basis hash it names and the size it builds. It replaces
/// a file, so it needs `overwrite`; what it builds counts against the upload limit.
fn check_delta(
    spec: &DeltaSpec,
    overwrite: bool,
    ctx: &Context<'_>,
) -> Result<(blake3::Hash, u64), WireError> {
    if !overwrite {
        return Err(WireError::bad_request(
            "\"delta\" replaces the file at \"path\": it needs \"overwrite\":true",
        ));
    }
    let Some(basis) = expected_hash(Some(&spec.basis))? else {
        return Err(WireError::bad_request("\"delta\" needs its \"basis\" hash"));
    };
    if let Some(max) = ctx.limits.max_upload_bytes.filter(|&m| spec.file_size > m) {
        return Err(WireError::too_large(format!(
            "{} bytes is over this server's upload limit of {max} bytes",
            spec.file_size
        )));
    }
    Ok((basis, spec.file_size))
}

/// Bytes of the basis hashed per trip to the blocking pool, when its hash is not cached.
const BASIS_HASH_STEP: u64 = 8 * 1024 * 1024;

/// Opens the file a delta is built against and checks it is the version the client signed
/// (`changed` otherwise): by its cached hash (a `SIGN` leaves it there), or hashed now, a
/// bounded step per trip to the blocking pool.
async fn open_basis(
    ctx: &Context<'_>,
    rp: &RemotePath,
    want: blake3::Hash,
    shown: &str,
) -> Result<(Arc<Closing>, Version), WireError> {
    let rp = rp.clone();
    let open = ctx
        .root
        .blocking(Work::Lookup, move |root| root.open_file_stat(&rp));
    let (file, st) = open.await??;
    let version = Version::from_stat(&st);
    let file = Arc::new(ctx.root.closing(file));
    let known = ctx.root.hashes().lookup_version(version).hash;
    let hash = match known {
        Some(hash) => hash,
        None => {
            let mut hasher = blake3::Hasher::new();
            let mut done = 0;
            while done < version.size {
                let step = (version.size - done).min(BASIS_HASH_STEP);
                let f = Arc::clone(&file);
                let hashed = ctx.root.bulk(move || {
                    sft_io::blocks::hash_range(&f, &mut hasher, done, step).map(|()| hasher)
                });
                hasher = hashed.await?.map_err(|_| changed(shown))?;
                done += step;
            }
            let (hash, f) = (hasher.finalize(), Arc::clone(&file));
            let keep = move |root: &Root| {
                confirm(&f, &version, Some(&hash))?;
                let lookup = crate::hashes::Lookup {
                    version,
                    hash: None,
                };
                root.hashes().insert(&lookup, &f, hash);
                Ok::<_, io::Error>(())
            };
            ctx.root
                .blocking(Work::Bulk, keep)
                .await?
                .map_err(|_| changed(shown))?;
            hash
        }
    };
    if hash != want {
        return Err(changed(shown));
    }
    Ok((file, version))
}

/// Checks, at the end of a delta body, what only the end can show: a terminator hash (which a
/// delta must carry), exactly the declared size, and a basis still the version it was when it
/// was opened (`changed` otherwise: the copies may have read a mix).
async fn delta_built(
    body: &Body<'_, '_>,
    basis: &Basis,
    version: Version,
    declared: Option<blake3::Hash>,
    shown: &str,
) -> Result<(), WireError> {
    if declared.is_none() {
        return Err(WireError::bad_request(
            "a delta's terminator must carry the built file's \"blake3\"",
        ));
    }
    basis.book.finish()?;
    let file = Arc::clone(&basis.file);
    let check = move |_: &Root| confirm(&file, &version, None);
    body.root
        .blocking(Work::Bulk, check)
        .await?
        .map_err(|_| changed(shown))
}
