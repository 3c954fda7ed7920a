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

use crate::body::{file_to_stream, hash_prefix, CopyError};
use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
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
            let root = ctx.root.clone();
            let (offset, want_hash) = (args.offset, args.hash);
            let opened = spawn_blocking(move || {
                let (file, size) = root.open_file(&rp)?;
                if offset > size {
                    return Err(WireError::bad_request(format!(
                        "offset {offset} is past the end of {rp} ({size} bytes)"
                    )));
                }
                if !want_hash {
                    return Ok((file, size, None, None));
                }
                let lookup = root
                    .hashes()
                    .lookup(&file)
                    .map_err(|e| io_error(&rp.to_string(), &e))?;
                if lookup.hash.is_some() {
                    return Ok((file, size, Some(lookup), None));
                }
                // Resuming: the whole file's hash needs the part the client already has.
                let mut hasher = blake3::Hasher::new();
                hash_prefix(&file, &mut hasher, offset)
                    .map_err(|e| io_error(&rp.to_string(), &e))?;
                Ok((file, size, Some(lookup), Some(hasher)))
            })
            .await?;
            let (file, size, lookup, hasher) = opened;
            let reply = GetReply {
                size: size - offset,
                offset,
                file_size: (offset > 0).then_some(size),
                blake3: lookup.and_then(|l| l.hash).map(|h| h.to_hex().to_string()),
                trailer: hasher.is_some(),
            };
            ctx.reply_ok(&reply).await.map_err(CommandError::Abort)?;
            let stats = &mut ctx.stats;
            let stall = ctx.limits.stall_timeout;
            let (file, hasher) = file_to_stream(
                file,
                offset,
                hasher,
                &mut *ctx.writer,
                size - offset,
                stall,
                |n| stats.bytes_out += n,
            )
            .await
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
