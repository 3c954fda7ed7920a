//! Receiving a chunked upload body (PROTOCOL.md §3.3): chunks of at most
//! [`MAX_CHUNK_LEN`](sft_protocol::limits::MAX_CHUNK_LEN) bytes, each after a header line,
//! ended by a zero-length chunk that may carry the body's BLAKE3 hash.
//!
//! ```text
//! > {"size":5}
//! > hello
//! > {"size":0,"blake3":"ea8f…"}
//! ```
//!
//! The upload limit is enforced as chunks arrive. A body that cannot be stored (over the limit,
//! a failing disk) is refused at once — the error reply goes out before the body ends, so the
//! client can stop sending — and the rest of the body is read and dropped, so the connection
//! stays in step. A malformed chunk header leaves the reader unable to find the end: it is
//! answered with an error and the connection is closed.

use crate::body::{discard, stream_to_file, CopyError, Sink};
use crate::command::CommandError;
use crate::context::Context;
use crate::sandbox::io_error;
use sft_protocol::body::decode_chunk_header;
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::{read_line, ErrorCode, WireError};
use std::io;

/// How a chunked body ended.
#[derive(Debug)]
pub(crate) enum Received {
    /// Every chunk arrived and was stored in the sink.
    Complete {
        /// The staging file and the hash of every byte in it (boxed: a hasher is large).
        sink: Box<Sink>,
        /// Bytes received.
        size: u64,
        /// The hash the terminator declared, if any.
        declared: Option<blake3::Hash>,
    },
    /// The upload was refused midway: the error reply was sent and the rest of the body
    /// consumed. Nothing is to be stored.
    Refused,
}

/// Reads a chunked body from the connection into `sink`. `shown` names the upload in messages.
pub(crate) async fn receive(
    ctx: &mut Context<'_>,
    sink: Sink,
    shown: &str,
) -> Result<Received, CommandError> {
    let stall = &mut ctx.limits.body_pace();
    let max = ctx.limits.max_upload_bytes;
    let mut line = Vec::with_capacity(128);
    let mut total: u64 = 0;
    // `None` once the upload was refused: from then on chunks are read and dropped.
    let mut sink = Some(sink);
    loop {
        line.clear();
        match stall.limit(read_line(&mut *ctx.reader, &mut line)).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(CommandError::Abort(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the end of the chunked body",
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let e = WireError::new(
                    ErrorCode::TooLarge,
                    format!("chunk header line longer than {MAX_HEADER_LEN} bytes"),
                );
                return Err(out_of_step(ctx, e).await);
            }
            Err(e) => return Err(CommandError::Abort(e)),
        }
        let header = match decode_chunk_header(&line) {
            Ok(header) => header,
            Err(e) => return Err(out_of_step(ctx, e).await),
        };
        let len = header.size;
        if len == 0 {
            let Some(sink) = sink else {
                return Ok(Received::Refused);
            };
            let declared = header
                .blake3
                .as_deref()
                .and_then(|hex| blake3::Hash::from_hex(hex).ok());
            return Ok(Received::Complete {
                sink: Box::new(sink),
                size: total,
                declared,
            });
        }
        let over_limit = max.filter(|&max| total.saturating_add(len) > max);
        let open = match (sink.take(), over_limit) {
            (Some(_), Some(max)) => {
                let e = WireError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "{shown}: more than this server's upload limit of {max} bytes; nothing \
                         was stored"
                    ),
                );
                refuse(ctx, &e).await?;
                None
            }
            (open, _) => open,
        };
        let Some(open) = open else {
            discard(&mut *ctx.reader, len, stall)
                .await
                .map_err(CommandError::Abort)?;
            ctx.stats.bytes_in += len;
            continue;
        };
        let mut got = 0;
        let stats = &mut ctx.stats;
        let stored = stream_to_file(&mut *ctx.reader, open, len, stall, |n| {
            got += n;
            stats.bytes_in += n;
        })
        .await;
        match stored {
            Ok(open) => {
                sink = Some(open);
                total += len;
            }
            Err((CopyError::Read(e), _)) => return Err(CommandError::Abort(e)),
            Err((CopyError::Write(e), _)) => {
                // Storage failed (disk full, quota…): refuse, then drop the rest of the body.
                refuse(ctx, &io_error(shown, &e)).await?;
                discard(&mut *ctx.reader, len - got, stall)
                    .await
                    .map_err(CommandError::Abort)?;
                ctx.stats.bytes_in += len - got;
            }
        }
    }
}

/// Sends `e` as the final reply at once, before the body ends.
async fn refuse(ctx: &mut Context<'_>, e: &WireError) -> Result<(), CommandError> {
    ctx.reply_error(e).await.map_err(CommandError::Abort)?;
    ctx.flush().await.map_err(CommandError::Abort)
}

/// The framing is broken: says why (best effort), then the connection must close.
async fn out_of_step(ctx: &mut Context<'_>, e: WireError) -> CommandError {
    let _ = refuse(ctx, &e).await;
    CommandError::Abort(io::Error::new(io::ErrorKind::InvalidData, e.message))
}
