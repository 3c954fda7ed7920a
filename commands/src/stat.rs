//! `STAT`: describe one path.
//!
//! ```text
//! > {"verb":"STAT","path":"docs/report.pdf"}
//! < {"ok":true,"entry":{"name":"docs/report.pdf","kind":"file","size":48213,"mtime":1732440000}}
//! ```
//!
//! A symlink named by the last component is described, not followed (like `LIST`); symlinks in
//! the folders leading to it are followed while they stay inside the root. The entry's optional
//! `blake3` field is left out: this server does not hash files yet.

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::entry::describe;
use crate::sandbox::io_error;
use async_std::task::spawn_blocking;
use sft_protocol::verbs::{StatReply, StatRequest, Verb};
use sft_protocol::{Request, WireError};
use std::fs;

/// The `STAT` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat;

impl Command for Stat {
    fn verb(&self) -> &'static str {
        StatRequest::NAME
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: StatRequest = request.args()?;
            let rp = ctx.root.check(&args.path)?;
            let shown = rp.to_string();
            ctx.stats.path = Some(shown.clone());
            let root = ctx.root.clone();
            let entry = spawn_blocking(move || {
                let real = root.locate_entry(&rp)?;
                let meta = fs::symlink_metadata(&real).map_err(|e| io_error(&shown, &e))?;
                Ok::<_, WireError>(describe(shown, &meta))
            })
            .await?;
            ctx.reply_ok(&StatReply { entry })
                .await
                .map_err(CommandError::Abort)
        })
    }
}
