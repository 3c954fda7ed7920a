//! `MKDIR`: create a folder (and its missing parents) inside the root.
//!
//! ```text
//! > {"verb":"MKDIR","path":"photos/2024/empty"}
//! < {"ok":true,"created":true}
//! ```
//!
//! Files get their parent folders from `SEND`; `MKDIR` exists for the folders that hold no file,
//! so that `sft send -r` can recreate an empty folder. A folder that is already there is not an
//! error (`"created":false`), so it can be repeated safely.

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::sandbox::Work;
use sft_protocol::verbs::{MkdirReply, MkdirRequest, Verb};
use sft_protocol::Request;

/// The `MKDIR` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mkdir;

impl Command for Mkdir {
    fn verb(&self) -> &'static str {
        MkdirRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "create a folder and any missing parents"
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
            let args: MkdirRequest = request.args()?;
            let rp = ctx.resolve(&args.path)?;
            let created = ctx
                .root
                .blocking(Work::Bulk, move |root| root.make_folder(&rp))
                .await??;
            ctx.reply_ok(&MkdirReply { created })
                .await
                .map_err(CommandError::Abort)
        })
    }
}
