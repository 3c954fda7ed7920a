//! `RENAME`: move a file, folder or symlink to another path inside the root, atomically.
//!
//! ```text
//! > {"verb":"RENAME","from":"inbox/report.pdf","to":"archive/2024/report.pdf"}
//! < {"ok":true,"kind":"file"}
//! ```
//!
//! An existing `to` is refused with `exists` unless the request says `"overwrite":true`; a
//! folder is never replaced. The target's parent folder must exist. Both ends are resolved to
//! the handles of the folders holding them and the move is a `renameat2` between those handles
//! ([`Root::rename`](crate::Root::rename); how `overwrite` never replaces a folder, even one made
//! during the move, is in `sandbox/moves.rs`): no one ever sees a half-moved entry, and a folder
//! on the way swapped for a symlink cannot redirect the move out of the root.

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::entry::wire_kind;
use crate::sandbox::Work;
use sft_protocol::verbs::{RenameReply, RenameRequest, Verb};
use sft_protocol::Request;

/// The `RENAME` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rename;

impl Command for Rename {
    fn verb(&self) -> &'static str {
        RenameRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "move a file or folder to another path, atomically"
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
            let args: RenameRequest = request.args()?;
            let (from, to) = ctx.resolve_pair(&args.from, &args.to)?;
            let overwrite = args.overwrite;
            let kind = ctx
                .root
                .blocking(Work::Bulk, move |root| root.rename(&from, &to, overwrite))
                .await??;
            ctx.reply_ok(&RenameReply {
                kind: wire_kind(kind),
            })
            .await
            .map_err(CommandError::Abort)
        })
    }
}
