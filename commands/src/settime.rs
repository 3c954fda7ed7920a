//! `SETTIME`: give a file or folder a modification time, changing nothing else.
//!
//! ```text
//! > {"verb":"SETTIME","path":"photos/one.jpg","mtime":1732440000}
//! < {"ok":true,"kind":"file"}
//! ```
//!
//! A metadata-only update: `sft send -r` sends it for a file whose content the server already
//! has (the hashes matched) but whose time differs, so that the next run's quick check (size and
//! time) finds the two the same instead of hashing the file again. The change is made through
//! the handle of the folder holding the entry ([`Root::set_mtime`](crate::Root::set_mtime)),
//! never through a symlink. It writes: a read-only server and a read token refuse it.

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::entry::wire_kind;
use crate::sandbox::Work;
use sft_protocol::verbs::{SetTimeReply, SetTimeRequest, Verb};
use sft_protocol::Request;

/// The `SETTIME` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetTime;

impl Command for SetTime {
    fn verb(&self) -> &'static str {
        SetTimeRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "set a file's or folder's modification time, nothing else"
    }

    fn writes(&self) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: SetTimeRequest = request.args()?;
            let rp = ctx.resolve(&args.path)?;
            let mtime = args.mtime;
            let kind = ctx
                .root
                .blocking(Work::Bulk, move |root| root.set_mtime(&rp, mtime))
                .await??;
            ctx.reply_ok(&SetTimeReply {
                kind: wire_kind(kind),
            })
            .await
            .map_err(CommandError::Abort)
        })
    }
}
