//! `GET`: download a file.
//!
//! ```text
//! > {"verb":"GET","path":"docs/report.pdf"}
//! < {"ok":true,"size":48213}
//! < …48213 raw bytes…
//! ```

use crate::body::{file_to_stream, CopyError};
use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use async_std::task::spawn_blocking;
use sft_protocol::verbs::{GetReply, GetRequest, Verb};
use sft_protocol::Request;
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
            ctx.stats.path = Some(rp.to_string());
            let root = ctx.root.clone();
            let (file, size) = spawn_blocking(move || root.open_file(&rp)).await?;
            ctx.reply_ok(&GetReply { size })
                .await
                .map_err(CommandError::Abort)?;
            let stats = &mut ctx.stats;
            let stall = ctx.limits.stall_timeout;
            file_to_stream(file, &mut *ctx.writer, size, stall, |n| {
                stats.bytes_out += n
            })
            .await
            .map_err(|e| match e {
                // The reply promised `size` bytes: a file that shrank or failed to read
                // leaves the connection out of step, so it is closed.
                CopyError::Read(e) => CommandError::Abort(io::Error::new(
                    e.kind(),
                    format!("reading the file failed mid-transfer: {e}"),
                )),
                CopyError::Write(e) => CommandError::Abort(e),
            })
        })
    }
}
