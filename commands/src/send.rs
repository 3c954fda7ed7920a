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
//! final name: a partial is kept for `--continue` and expires, a plain staging file is removed.
//!
//! A body of unknown length comes in chunks instead (`"body":"chunked"`, see `chunked.rs`):
//! it always goes to a plain staging file, is hashed as it arrives, and is committed only when the
//! terminator's declared hash (if any) matches.

use crate::body::{discard, stream_to_file, CopyError, Sink};
use crate::chunked::{self, Received};
use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::sandbox::io_error;
use async_std::task::spawn_blocking;
use sft_protocol::body::{upload_body, Upload};
use sft_protocol::verbs::{
    is_blake3_hex, SendReady, SendReply, SendRequest, SendStreamRequest, Verb,
};
use sft_protocol::{ErrorCode, Request, WireError};

/// The `SEND` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Send;

/// Parses the declared hash: 64 lower-case hex digits.
fn declared_hash(args: &SendRequest) -> Result<Option<blake3::Hash>, WireError> {
    match &args.blake3 {
        None if args.resume => Err(WireError::bad_request(
            "\"resume\" needs the file's \"blake3\" hash",
        )),
        None => Ok(None),
        Some(hex) if is_blake3_hex(hex) => Ok(blake3::Hash::from_hex(hex).ok()),
        Some(_) => Err(WireError::bad_request(
            "\"blake3\" must be 64 lower-case hex digits",
        )),
    }
}

impl Command for Send {
    fn verb(&self) -> &'static str {
        SendRequest::NAME
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            if upload_body(request.line())? == Some(Upload::Chunked) {
                return receive_chunked(request, ctx).await;
            }
            let args: SendRequest = request.args()?;
            let rp = ctx.root.check(&args.path)?;
            let shown = rp.to_string();
            ctx.stats.path = Some(shown.clone());
            if ctx.limits.read_only {
                return Err(WireError::new(ErrorCode::ReadOnly, "this server is read-only").into());
            }
            if let Some(max) = ctx.limits.max_upload_bytes {
                if args.size > max {
                    return Err(WireError::new(
                        ErrorCode::TooLarge,
                        format!(
                            "{} bytes is over this server's upload limit of {max} bytes",
                            args.size
                        ),
                    )
                    .into());
                }
            }
            let expected = declared_hash(&args)?;
            let root = ctx.root.clone();
            let (overwrite, size, resume) = (args.overwrite, args.size, args.resume);
            let (target, upload) = spawn_blocking(move || {
                let target = root.prepare_target(&rp, overwrite)?;
                let upload = root
                    .begin_upload(&rp, size, expected, resume)
                    .map_err(|e| {
                        WireError::internal(format!("cannot start storing the upload: {e}"))
                    })?;
                Ok::<_, WireError>((target, upload))
            })
            .await?;
            let (staged, file, offset, hasher, guard) = upload.into_parts();

            // Go-ahead: from here on the client sends exactly `size - offset` bytes.
            ctx.reply_ok(&SendReady { offset })
                .await
                .map_err(CommandError::Abort)?;
            ctx.flush().await.map_err(CommandError::Abort)?;

            let stats = &mut ctx.stats;
            let stall = ctx.limits.stall_timeout;
            let body = size - offset;
            let received =
                stream_to_file(&mut *ctx.reader, Sink { file, hasher }, body, stall, |n| {
                    stats.bytes_in += n
                })
                .await;
            let stored = match received {
                Ok(sink) => Ok(sink.hasher),
                Err((CopyError::Read(e), sink)) => {
                    // The client vanished or stalled. A resumable partial is kept (with its
                    // hash state); a plain staging file is removed when `staged` drops.
                    let held = offset + ctx.stats.bytes_in;
                    if let Some(sink) = sink {
                        drop(sink.file);
                        if guard.keep(staged, held, sink.hasher) {
                            let (root, ttl, max) = (
                                ctx.root.clone(),
                                ctx.limits.partial_ttl,
                                ctx.limits.max_upload_bytes,
                            );
                            spawn_blocking(move || root.expire_partials(ttl, max))
                                .await
                                .ok();
                        }
                    }
                    return Err(CommandError::Abort(e));
                }
                Err((CopyError::Write(e), _)) => {
                    // Storage failed (disk full, quota…): read the rest of the body so the
                    // connection stays in step, then report. Nothing is kept.
                    let left = body - ctx.stats.bytes_in;
                    discard(&mut *ctx.reader, left, stall)
                        .await
                        .map_err(CommandError::Abort)?;
                    ctx.stats.bytes_in = body;
                    Err(io_error(&shown, &e))
                }
            };
            let verified = stored.and_then(|hasher| match (expected, hasher.map(|h| h.finalize())) {
                (Some(want), Some(got)) if want != got => Err(WireError::new(
                    ErrorCode::ChecksumMismatch,
                    format!("{shown}: received bytes hash to {got}, not the declared {want}; nothing was stored"),
                )),
                (_, got) => Ok(got),
            });
            let committed = match verified {
                Ok(hash) => spawn_blocking(move || staged.commit(&target, overwrite))
                    .await
                    .map(|()| hash),
                Err(e) => Err(e),
            };
            drop(guard);
            match committed {
                Ok(hash) => {
                    let blake3 = hash.map(|h| h.to_hex().to_string());
                    ctx.reply_ok(&SendReply { size, blake3 }).await
                }
                // The body was consumed, so the connection is in step: a plain error reply.
                Err(e) => ctx.reply_error(&e).await,
            }
            .map_err(CommandError::Abort)
        })
    }
}

/// A `SEND` with `"body":"chunked"`: checked like a sized one, then received chunk by chunk into
/// a plain staging file (not resumable), hashed on the way.
async fn receive_chunked(request: Request<'_>, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let args: SendStreamRequest = request.args()?;
    let rp = ctx.root.check(&args.path)?;
    let shown = rp.to_string();
    ctx.stats.path = Some(shown.clone());
    if ctx.limits.read_only {
        return Err(WireError::new(ErrorCode::ReadOnly, "this server is read-only").into());
    }
    let root = ctx.root.clone();
    let overwrite = args.overwrite;
    let (target, staged, file) = spawn_blocking(move || {
        let target = root.prepare_target(&rp, overwrite)?;
        let (staged, file) = root
            .stage()
            .map_err(|e| WireError::internal(format!("cannot start storing the upload: {e}")))?;
        Ok::<_, WireError>((target, staged, file))
    })
    .await?;
    ctx.reply_ok(&SendReady { offset: 0 })
        .await
        .map_err(CommandError::Abort)?;
    ctx.flush().await.map_err(CommandError::Abort)?;

    let sink = Sink {
        file,
        hasher: Some(blake3::Hasher::new()),
    };
    // Dropping `staged` on any early return removes the staging file.
    let (sink, size, declared) = match chunked::receive(ctx, sink, &shown).await? {
        Received::Refused => return Ok(()),
        Received::Complete {
            sink,
            size,
            declared,
        } => (sink, size, declared),
    };
    drop(sink.file);
    let got = sink.hasher.expect("chunked uploads are hashed").finalize();
    let committed = match declared {
        Some(want) if want != got => Err(WireError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "{shown}: received bytes hash to {got}, not the declared {want}; nothing was stored"
            ),
        )),
        _ => spawn_blocking(move || staged.commit(&target, overwrite)).await,
    };
    match committed {
        Ok(()) => {
            let blake3 = Some(got.to_hex().to_string());
            ctx.reply_ok(&SendReply { size, blake3 }).await
        }
        Err(e) => ctx.reply_error(&e).await,
    }
    .map_err(CommandError::Abort)
}
