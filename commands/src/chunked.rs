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

use crate::body::read_full_at;
use crate::body::Body;
use crate::command::CommandError;
use crate::context::Context;
use crate::sandbox::{io_error, Closing};
use crate::staging::{Interrupted, Upload};
use sft_io::zblock::BlockDecompressor;
use sft_protocol::delta::{decode_chunk, Chunk, ChunkKinds, DeltaBook};
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::{ErrorCode, WireError};
use std::io;
use std::sync::Arc;

/// How a chunked body ended.
#[derive(Debug)]
pub(crate) enum Received {
    /// Every chunk arrived and was stored.
    Complete {
        /// The staging file and the hash of every byte in it (boxed: a hasher is large).
        upload: Box<Upload>,
        /// Bytes of the file (received, decompressed or copied).
        size: u64,
        /// The hash the terminator declared, if any.
        declared: Option<blake3::Hash>,
    },
    /// The upload was refused midway: its file was removed, the error reply sent and the rest
    /// of the body consumed. Nothing is to be stored.
    Refused,
}

/// The server's own file a delta body copies from (PROTOCOL.md §8.5), and the bookkeeping
/// that bounds what the body builds.
#[derive(Debug)]
pub(crate) struct Basis {
    /// The file, open; its version when it was opened.
    pub(crate) file: Arc<Closing>,
    pub(crate) book: DeltaBook,
}

/// What a chunked body may hold beyond raw chunks, and what its copies copy from.
#[derive(Debug, Default)]
pub(crate) struct Kinds {
    /// zstd chunks (`"compress":"zstd"`).
    pub(crate) zstd: bool,
    /// Copies, from this basis (a delta).
    pub(crate) basis: Option<Basis>,
}

/// Reads a chunked body into `upload`. `shown` names the upload in messages.
pub(crate) async fn receive(
    body: &mut Body<'_, '_>,
    upload: Upload,
    shown: &str,
    kinds: &mut Kinds,
) -> Result<Received, CommandError> {
    let max = body.limits.max_upload_bytes;
    let allowed = ChunkKinds {
        zstd: kinds.zstd,
        copy: kinds.basis.is_some(),
    };
    let mut line = Vec::with_capacity(128);
    let mut total: u64 = 0;
    let mut frame = Vec::new();
    let mut plain = Vec::new();
    let mut decompressor = None;
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
        let chunk = match decode_chunk(&line, allowed) {
            Ok(chunk) => chunk,
            Err(e) => return Err(out_of_step(body, e).await),
        };
        // What the chunk adds to the file, checked against a delta's bounds: past them the
        // body can no longer be trusted to be followed.
        let adds = match chunk {
            Chunk::End(declared) => {
                let Some(upload) = upload else {
                    return Ok(Received::Refused);
                };
                let declared = declared
                    .as_deref()
                    .and_then(|hex| blake3::Hash::from_hex(hex).ok());
                return Ok(Received::Complete {
                    upload: Box::new(upload),
                    size: total,
                    declared,
                });
            }
            Chunk::Raw(len) | Chunk::Zstd { raw: len, .. } => len,
            Chunk::Copy { len, .. } => len,
        };
        if let Some(book) = kinds.basis.as_mut().map(|b| &mut b.book) {
            let booked = match chunk {
                Chunk::Copy { offset, len } => book.copy(offset, len),
                _ => book.data(adds),
            };
            if let Err(e) = booked {
                return Err(out_of_step(body, e).await);
            }
        }
        let over_limit = max.filter(|&max| total.saturating_add(adds) > max);
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
        match chunk {
            Chunk::Raw(len) => {
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
                        // Storage failed (disk full, quota…): refuse, then drop the rest.
                        refuse(body, upload.take(), &io_error(shown, &e)).await?;
                        body.discard(len - got).await?;
                    }
                }
            }
            Chunk::Zstd { size, raw } => {
                frame.resize(size as usize, 0);
                body.read_exact(&mut frame)
                    .await
                    .map_err(|(_, e)| CommandError::Abort(e))?;
                let Some(open) = upload.as_mut() else {
                    continue;
                };
                let mut d = match decompressor.take() {
                    Some(d) => d,
                    None => BlockDecompressor::new().map_err(|e| {
                        CommandError::from(WireError::internal(format!(
                            "cannot start decompressing: {e}"
                        )))
                    })?,
                };
                // Decompressing is CPU work of up to 1 MiB: a short task on the pool.
                let (f, mut p) = (std::mem::take(&mut frame), std::mem::take(&mut plain));
                let (d, f, p, unpacked) = async_std::task::spawn_blocking(move || {
                    let r = d.decompress(&f, raw as usize, &mut p);
                    (d, f, p, r)
                })
                .await;
                (decompressor, frame, plain) = (Some(d), f, p);
                if let Err(e) = unpacked {
                    return Err(out_of_step(body, WireError::bad_request(e.to_string())).await);
                }
                match body.store(open, &plain).await {
                    Ok(()) => total += raw,
                    Err(Interrupted::Peer(e)) => return Err(CommandError::Abort(e)),
                    Err(Interrupted::Storage(e)) => {
                        refuse(body, upload.take(), &io_error(shown, &e)).await?;
                    }
                }
            }
            Chunk::Copy { offset, len } => {
                let Some(open) = upload.as_mut() else {
                    continue;
                };
                let basis = kinds.basis.as_ref().expect("copies only in a delta");
                match copy(body, open, &basis.file, offset, len, &mut plain).await {
                    Ok(()) => total += len,
                    Err(e) => refuse(body, upload.take(), &e).await?,
                }
            }
            Chunk::End(_) => unreachable!("returned above"),
        }
    }
}

/// Most basis bytes read per trip to the blocking pool.
const COPY_STEP: u64 = 1024 * 1024;

/// Stores `len` bytes of the basis from `offset` into `upload`, one bounded read on the pool at
/// a time. A basis that ends early changed (`changed`); storage that fails is `internal`.
async fn copy(
    body: &mut Body<'_, '_>,
    upload: &mut Upload,
    basis: &Arc<Closing>,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<(), WireError> {
    let shown = body.stats.path.clone().unwrap_or_default();
    let mut done = 0;
    while done < len {
        let step = (len - done).min(COPY_STEP) as usize;
        let (file, mut b) = (Arc::clone(basis), std::mem::take(buf));
        let at = offset + done;
        let (b, read) = body
            .root
            .bulk(move || {
                b.resize(step, 0);
                let n = read_full_at(&file, &mut b, at);
                (b, n)
            })
            .await?;
        *buf = b;
        match read {
            Ok(n) if n == step => {}
            Ok(_) => return Err(crate::version3::changed(&shown)),
            Err(e) => return Err(io_error(&shown, &e)),
        }
        match body.store(upload, buf).await {
            Ok(()) => {}
            Err(Interrupted::Peer(e)) | Err(Interrupted::Storage(e)) => {
                return Err(io_error(&shown, &e))
            }
        }
        done += step as u64;
    }
    Ok(())
}

/// Refuses the upload before the body ends: removes its file at once (the disk space is free
/// while the rest of the body arrives), then sends `e` as the final reply.
async fn refuse(
    ctx: &mut Context<'_>,
    upload: Option<Upload>,
    e: &WireError,
) -> Result<(), CommandError> {
    if let Some(upload) = upload {
        ctx.root
            .clean_up("discarding an upload", move || upload.discard())
            .await;
    }
    ctx.reply_error(e).await.map_err(CommandError::Abort)?;
    ctx.flush().await.map_err(CommandError::Abort)
}

/// The framing is broken: says why (best effort), then the connection must close.
async fn out_of_step(ctx: &mut Context<'_>, e: WireError) -> CommandError {
    let _ = refuse(ctx, None, &e).await;
    CommandError::Abort(io::Error::new(io::ErrorKind::InvalidData, e.message))
}
