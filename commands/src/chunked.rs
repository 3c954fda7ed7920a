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
//! a failing disk) is refused at once: its staging file is removed, the error reply goes out
//! before the body ends, so the client can stop sending, and the rest of the body is read and
//! dropped, so the connection stays in step. The disk space is free while the rest arrives. A malformed chunk header leaves the reader unable to find the end: it is
//! answered with an error and the connection is closed.

use crate::body::Body;
use crate::command::CommandError;
use crate::context::Context;
use crate::sandbox::io_error;
use crate::staging::{Interrupted, Upload};
use sft_protocol::body::decode_chunk_header;
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::{ErrorCode, WireError};
use std::io;

/// How a chunked body ended.
#[derive(Debug)]
pub(crate) enum Received {
    /// Every chunk arrived and was stored.
    Complete {
        /// The staging file and the hash of every byte in it (boxed: a hasher is large).
        upload: Box<Upload>,
        /// Bytes received.
        size: u64,
        /// The hash the terminator declared, if any.
        declared: Option<blake3::Hash>,
    },
    /// The upload was refused midway: its file was removed, the error reply sent and the rest
    /// of the body consumed. Nothing is to be stored.
    Refused,
}

/// Reads a chunked body into `upload`. `shown` names the upload in messages.
pub(crate) async fn receive(
    body: &mut Body<'_, '_>,
    upload: Upload,
    shown: &str,
) -> Result<Received, CommandError> {
    let max = body.limits.max_upload_bytes;
    let mut line = Vec::with_capacity(128);
    let mut total: u64 = 0;
    // `None` once the upload was refused: from then on chunks are read and dropped.
    let mut upload = Some(upload);
    loop {
        line.clear();
        match body.read_line(&mut line).await {
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
                return Err(out_of_step(body, e).await);
            }
            Err(e) => return Err(CommandError::Abort(e)),
        }
        let header = match decode_chunk_header(&line) {
            Ok(header) => header,
            Err(e) => return Err(out_of_step(body, e).await),
        };
        let len = header.size;
        if len == 0 {
            let Some(upload) = upload else {
                return Ok(Received::Refused);
            };
            let declared = header
                .blake3
                .as_deref()
                .and_then(|hex| blake3::Hash::from_hex(hex).ok());
            return Ok(Received::Complete {
                upload: Box::new(upload),
                size: total,
                declared,
            });
        }
        let over_limit = max.filter(|&max| total.saturating_add(len) > max);
        if let Some(max) = over_limit.filter(|_| upload.is_some()) {
            let e = WireError::new(
                ErrorCode::TooLarge,
                format!(
                    "{shown}: more than this server's upload limit of {max} bytes; nothing was \
                     stored"
                ),
            );
            refuse(body, upload.take(), &e).await?;
        }
        let Some(open) = upload.as_mut() else {
            body.discard(len).await?;
            continue;
        };
        let mut got = 0;
        let stored = body.receive_upload(open, len, |n| got += n).await;
        match stored {
            Ok(()) => total += len,
            Err(Interrupted::Peer(e)) => return Err(CommandError::Abort(e)),
            Err(Interrupted::Storage(e)) => {
                // Storage failed (disk full, quota…): refuse, then drop the rest of the body.
                refuse(body, upload.take(), &io_error(shown, &e)).await?;
                body.discard(len - got).await?;
            }
        }
    }
}

/// Refuses the upload before the body ends: removes its file at once (the disk space is free
/// while the rest of the body arrives), then sends `e` as the final reply.
async fn refuse(
    ctx: &mut Context<'_>,
    upload: Option<Upload>,
    e: &WireError,
) -> Result<(), CommandError> {
    if let Some(upload) = upload {
        crate::sandbox::bulk(move || upload.discard()).await;
    }
    ctx.reply_error(e).await.map_err(CommandError::Abort)?;
    ctx.flush().await.map_err(CommandError::Abort)
}

/// The framing is broken: says why (best effort), then the connection must close.
async fn out_of_step(ctx: &mut Context<'_>, e: WireError) -> CommandError {
    let _ = refuse(ctx, None, &e).await;
    CommandError::Abort(io::Error::new(io::ErrorKind::InvalidData, e.message))
}
