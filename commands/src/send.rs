//! `SEND`: upload a file.
//!
//! ```text
//! > {"verb":"SEND","path":"in/data.bin","size":5,"overwrite":false}
//! < {"ok":true}                 go-ahead (or an error reply, and nothing more)
//! > hello                       exactly `size` raw bytes
//! < {"ok":true,"size":5}        stored under its final name
//! ```
//!
//! The body goes to a staging file inside the root; only when every declared byte arrived is it
//! renamed into place. A client that vanishes mid-body leaves nothing behind.

use crate::body::{discard, stream_to_file, CopyError};
use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::sandbox::io_error;
use async_std::task::spawn_blocking;
use sft_protocol::verbs::{Empty, SendReply, SendRequest, Verb};
use sft_protocol::{ErrorCode, Request, WireError};

/// The `SEND` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Send;

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
            let root = ctx.root.clone();
            let overwrite = args.overwrite;
            let (target, staged, file) = spawn_blocking(move || {
                let target = root.prepare_target(&rp, overwrite)?;
                let (staged, file) = root.stage().map_err(|e| {
                    WireError::internal(format!("cannot create a staging file: {e}"))
                })?;
                Ok::<_, WireError>((target, staged, file))
            })
            .await?;

            // Go-ahead: from here on the client sends exactly `size` bytes.
            ctx.reply_ok(&Empty {}).await.map_err(CommandError::Abort)?;
            ctx.flush().await.map_err(CommandError::Abort)?;

            let stats = &mut ctx.stats;
            let stall = ctx.limits.stall_timeout;
            let copied = stream_to_file(&mut *ctx.reader, file, args.size, stall, |n| {
                stats.bytes_in += n
            })
            .await;
            let stored = match copied {
                // Dropping the file closes it; the data is in the page cache, like rsync/scp.
                Ok(file) => {
                    drop(file);
                    Ok(())
                }
                // The client vanished or stalled: `staged` drops and removes the partial file.
                Err(CopyError::Read(e)) => return Err(CommandError::Abort(e)),
                Err(CopyError::Write(e)) => {
                    // Storage failed (disk full, quota…): read the rest of the body so the
                    // connection stays in step, then report.
                    let left = args.size - ctx.stats.bytes_in;
                    discard(&mut *ctx.reader, left, stall)
                        .await
                        .map_err(CommandError::Abort)?;
                    ctx.stats.bytes_in = args.size;
                    Err(io_error(&shown, &e))
                }
            };
            let committed = match stored {
                Ok(()) => spawn_blocking(move || staged.commit(&target, overwrite)).await,
                Err(e) => Err(e),
            };
            match committed {
                Ok(()) => ctx.reply_ok(&SendReply { size: args.size }).await,
                // The body was consumed, so the connection is in step: a plain error reply.
                Err(e) => ctx.reply_error(&e).await,
            }
            .map_err(CommandError::Abort)
        })
    }
}
