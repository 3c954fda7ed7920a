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
    is_blake3_hex, is_upload_id, SendReady, SendReply, SendRequest, SendStreamRequest, SendTrailer,
    Verb,
};
use sft_protocol::{decode_trailer, read_line, ErrorCode, Request, WireError};
use std::io;

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
async fn read_trailer(ctx: &mut Context<'_>) -> Result<blake3::Hash, CommandError> {
    let mut line = Vec::with_capacity(96);
    let stall = ctx.limits.stall_timeout;
    match async_std::io::timeout(stall, read_line(&mut *ctx.reader, &mut line)).await {
        Ok(true) => {}
        Ok(false) => return Err(CommandError::Abort(io::ErrorKind::UnexpectedEof.into())),
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
            let integrity = integrity(&args)?;
            let root = ctx.root.clone();
            let (overwrite, size, resume) = (args.overwrite, args.size, args.resume);
            let (key, hashed) = (integrity.key.clone(), integrity.hashed);
            let (target, upload) = spawn_blocking(move || {
                let target = root.prepare_target(&rp, overwrite)?;
                let upload = root
                    .begin_upload(&rp, size, key.as_deref(), hashed, resume)
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
                        let limits = ctx.limits.partials();
                        spawn_blocking(move || guard.keep(staged, held, sink.hasher, &limits))
                            .await;
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
            // The hash to check against: declared up front, or in the trailer after the body.
            let claimed = if args.trailer {
                match read_trailer(ctx).await {
                    Ok(hash) => Some(hash),
                    Err(CommandError::Abort(e)) => {
                        // Every byte arrived but not the hash: the partial can still finish.
                        if let Ok(hasher) = stored {
                            let limits = ctx.limits.partials();
                            spawn_blocking(move || guard.keep(staged, size, hasher, &limits)).await;
                        }
                        return Err(CommandError::Abort(e));
                    }
                    // A malformed trailer line was read whole: the connection is in step.
                    Err(CommandError::Reply(e)) => {
                        return ctx.reply_error(&e).await.map_err(CommandError::Abort)
                    }
                }
            } else {
                integrity.expected
            };
            let verified = stored.and_then(|hasher| match (claimed, hasher.map(|h| h.finalize())) {
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
