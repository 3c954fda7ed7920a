//! `DELETE`: remove a file, or an empty folder, inside the root.
//!
//! ```text
//! > {"verb":"DELETE","path":"inbox/old.txt"}
//! < {"ok":true,"kind":"file"}
//! > {"verb":"DELETE","path":"inbox/empty","folder":true}
//! < {"ok":true,"kind":"folder"}
//! ```
//!
//! A symlink is removed itself, never what it points to. A folder is removed only when the
//! request says `"folder":true` and only when it is empty: nothing is ever removed
//! recursively, so one mistyped request cannot empty a tree. The removal goes through the handle
//! of the folder holding the entry ([`Root::remove_file`](crate::Root::remove_file)), so a folder
//! on the way swapped for a symlink cannot redirect it out of the root.

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::entry::wire_kind;
use crate::sandbox::Work;
use sft_protocol::verbs::{DeleteReply, DeleteRequest, Verb};
use sft_protocol::Request;

/// The `DELETE` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delete;

impl Command for Delete {
    fn verb(&self) -> &'static str {
        DeleteRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "remove a file, or an empty folder with \"folder\":true"
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
            let args: DeleteRequest = request.args()?;
            let rp = ctx.resolve(&args.path)?;
            let folder = args.folder;
            let kind = ctx
                .root
                .blocking(Work::Bulk, move |root| {
                    if folder {
                        root.remove_folder(&rp)
                            .map(|()| crate::sandbox::Kind::Folder)
                    } else {
                        root.remove_file(&rp)
                    }
                })
                .await??;
            ctx.reply_ok(&DeleteReply {
                kind: wire_kind(kind),
            })
            .await
            .map_err(CommandError::Abort)
        })
    }
}
