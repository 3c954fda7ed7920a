//! `GET`: download a file, or the rest of it from an offset, optionally with its BLAKE3 hash.
//!
//! ```text
//! > {"verb":"GET","path":"docs/report.pdf","hash":true}
//! < {"ok":true,"size":48213,"trailer":true}
//! < …48213 raw bytes…
//! < {"blake3":"5e1f…"}
//! ```
//!
//! A hash already in the cache comes in the reply line; otherwise it is computed while the
//! bytes are sent (the first byte never waits for a whole-file hash) and comes in a trailer.

use crate::body::{file_to_stream, hash_prefix, read_full_at, CopyError};
#[cfg(target_os = "linux")]
use crate::body::{hash_range, sendfile_to_socket};
use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::hashes::Lookup;
use crate::sandbox::io_error;
use async_std::task::spawn_blocking;
use futures::AsyncWriteExt;
use sft_protocol::verbs::{GetReply, GetRequest, GetTrailer, Verb};
use sft_protocol::{encode_trailer, Request, WireError};
use std::io;

/// The `GET` handler: streams a regular file inside the root, in bounded chunks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Get;

impl Command for Get {
    fn verb(&self) -> &'static str {
        GetRequest::NAME
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: GetRequest = request.args()?;
            let rp = ctx.root.check(&args.path)?;
            let shown = rp.to_string();
            ctx.stats.path = Some(shown.clone());
            let (offset, want_hash) = (args.offset, args.hash);
            // Resolving and opening touch only metadata, fast on a local file system: done in
            // place rather than through the blocking pool. Reading the body is not.
            let (file, st) = ctx.root.open_file_stat(&rp)?;
            let size = st.st_size as u64;
            if offset > size {
                return Err(WireError::bad_request(format!(
                    "offset {offset} is past the end of {rp} ({size} bytes)"
                ))
                .into());
            }
            let lookup = want_hash.then(|| ctx.root.hashes().lookup_stat(&st));
            if size <= SMALL_FILE {
                return send_small(ctx, &file, size, offset, lookup, &shown).await;
            }
            let hasher = match lookup {
                Some(l) if l.hash.is_none() => {
                    // Resuming: the whole file's hash needs the part the client already has.
                    let reader = file.try_clone().map_err(|e| io_error(&shown, &e))?;
                    let what = shown.clone();
                    let hasher = spawn_blocking(move || {
                        let mut hasher = blake3::Hasher::new();
                        hash_prefix(&reader, &mut hasher, offset).map(|()| hasher)
                    })
                    .await
                    .map_err(|e| io_error(&what, &e))?;
                    Some(hasher)
                }
                _ => None,
            };
            let reply = GetReply {
                size: size - offset,
                offset,
                file_size: (offset > 0).then_some(size),
                blake3: lookup.and_then(|l| l.hash).map(|h| h.to_hex().to_string()),
                trailer: hasher.is_some(),
            };
            ctx.reply_ok(&reply).await.map_err(CommandError::Abort)?;
            let stall = ctx.limits.stall_timeout;
            let body = size - offset;
            let (file, hasher) = if use_sendfile(body) {
                send_zero_copy(ctx, file, offset, body, hasher).await
            } else {
                let stats = &mut ctx.stats;
                file_to_stream(file, offset, hasher, &mut *ctx.writer, body, stall, |n| {
                    stats.bytes_out += n
                })
                .await
            }
            .map_err(|e| match e {
                // The reply promised `size` bytes: a file that shrank or failed to read
                // leaves the connection out of step, so it is closed.
                CopyError::Read(e) => CommandError::Abort(io::Error::new(
                    e.kind(),
                    format!("reading {shown} failed mid-transfer: {e}"),
                )),
                CopyError::Write(e) => CommandError::Abort(e),
            })?;
            if let (Some(hasher), Some(lookup)) = (hasher, lookup) {
                let hash = hasher.finalize();
                let mut line = Vec::with_capacity(96);
                encode_trailer(
                    &GetTrailer {
                        blake3: hash.to_hex().to_string(),
                    },
                    &mut line,
                );
                ctx.writer
                    .write_all(&line)
                    .await
                    .map_err(CommandError::Abort)?;
                let root = ctx.root.clone();
                spawn_blocking(move || root.hashes().insert(&lookup, &file, hash)).await;
            }
            Ok(())
        })
    }
}

/// Files up to this size are read whole in place, hashed if asked (the hash then comes in the
/// reply line), and sent with the reply in one write.
const SMALL_FILE: u64 = 64 * 1024;

/// The small-file path: one read, one write, no hop to the blocking pool, no allocation.
async fn send_small(
    ctx: &mut Context<'_>,
    file: &std::fs::File,
    size: u64,
    offset: u64,
    lookup: Option<Lookup>,
    shown: &str,
) -> Result<(), CommandError> {
    let buf = ctx.body_buffer();
    buf.resize(size as usize, 0);
    let n = read_full_at(file, buf, 0).map_err(|e| io_error(shown, &e))?;
    // A file that changed since it was opened is served as it was read, hash included.
    buf.truncate(n);
    let size = n as u64;
    if offset > size {
        return Err(WireError::bad_request(format!(
            "offset {offset} is past the end of {shown} ({size} bytes)"
        ))
        .into());
    }
    let blake3 = lookup.map(|l| (l, l.hash.unwrap_or_else(|| blake3::hash(buf))));
    if let Some((l, hash)) = blake3.filter(|(l, _)| l.hash.is_none()) {
        ctx.root.hashes().insert(&l, file, hash);
    }
    let blake3 = blake3.map(|(_, hash)| hash);
    let reply = GetReply {
        size: size - offset,
        offset,
        file_size: (offset > 0).then_some(size),
        blake3: blake3.map(|h| h.to_hex().to_string()),
        trailer: false,
    };
    ctx.reply_ok_with_body_buffer(&reply, offset as usize)
        .await
        .map_err(CommandError::Abort)
}

/// Bodies at least this large go out with `sendfile(2)`; smaller ones are copied into the
/// socket buffer right behind the reply line, so that both leave in one write.
const SENDFILE_MIN: u64 = 128 * 1024;

fn use_sendfile(body: u64) -> bool {
    cfg!(target_os = "linux") && body >= SENDFILE_MIN
}

/// Sends the body with `sendfile(2)`; when a hash is being computed, a blocking task reads and
/// hashes the same bytes meanwhile (from the page cache), so hashing costs no extra time as
/// long as it keeps up with the network.
#[cfg(target_os = "linux")]
async fn send_zero_copy(
    ctx: &mut Context<'_>,
    file: std::fs::File,
    offset: u64,
    body: u64,
    hasher: Option<blake3::Hasher>,
) -> Result<(std::fs::File, Option<blake3::Hasher>), CopyError> {
    ctx.flush().await.map_err(CopyError::Write)?;
    let hashing = match hasher {
        Some(mut hasher) => {
            let reader = file.try_clone().map_err(CopyError::Read)?;
            Some(spawn_blocking(move || {
                hash_range(&reader, &mut hasher, offset, body).map(|()| hasher)
            }))
        }
        None => None,
    };
    let stall = ctx.limits.stall_timeout;
    sendfile_to_socket(&file, offset, body, ctx.writer.get_ref(), stall).await?;
    ctx.stats.bytes_out += body;
    let hasher = match hashing {
        Some(task) => Some(task.await.map_err(CopyError::Read)?),
        None => None,
    };
    Ok((file, hasher))
}

#[cfg(not(target_os = "linux"))]
async fn send_zero_copy(
    ctx: &mut Context<'_>,
    file: std::fs::File,
    offset: u64,
    body: u64,
    hasher: Option<blake3::Hasher>,
) -> Result<(std::fs::File, Option<blake3::Hasher>), CopyError> {
    let stats = &mut ctx.stats;
    let stall = ctx.limits.stall_timeout;
    file_to_stream(file, offset, hasher, &mut *ctx.writer, body, stall, |n| {
        stats.bytes_out += n
    })
    .await
}
