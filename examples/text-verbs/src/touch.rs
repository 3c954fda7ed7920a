//! `TOUCH`: create an empty file, or set an existing file's modification time to now, like
//! `touch`. A verb that writes.
//!
//! ```text
//! > {"verb":"TOUCH","path":"inbox/ready"}
//! < {"ok":true,"created":true}
//! ```
//!
//! It changes the tree only through the sandbox: the new file is staged in the server's own
//! folder and committed under its name in one atomic step, through the handle of the folder
//! that resolution opened ([`Root::prepare_target`], [`Root::stage`], `Staged::commit`), so no one
//! ever sees a half-made file and a folder swapped for a symlink cannot redirect it.

use serde::{Deserialize, Serialize};
use sft_commands::sandbox::Work;
use sft_commands::{BoxFuture, Command, CommandError, Context, Root};
use sft_protocol::verbs::Verb;
use sft_protocol::{ErrorCode, RemotePath, Request, WireError};
use std::fs::FileTimes;
use std::time::SystemTime;

/// Arguments of `TOUCH`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchRequest {
    /// The file, relative to the served root. Missing parent folders are created.
    pub path: String,
}

impl Verb for TouchRequest {
    const NAME: &'static str = "TOUCH";
}

/// Fields of a successful `TOUCH` reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchReply {
    /// Whether the file was created (`false`: it existed, and its times were set to now).
    pub created: bool,
}

/// The `TOUCH` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Touch;

/// Creates `rp` empty, or sets its times to now if it exists (blocking: run it through
/// `Root::blocking`). Returns whether it was created.
pub fn touch(root: &Root, rp: &RemotePath) -> Result<bool, WireError> {
    let shown = rp.to_string();
    match root.prepare_target(rp, false) {
        Ok(target) => {
            let (staged, _file) = root
                .stage()
                .map_err(|e| sft_commands::sandbox::io_error(&shown, &e))?;
            match staged.commit(&target, false) {
                Ok(()) => return Ok(true),
                // Someone created it since prepare_target looked: touch theirs.
                Err(e) if e.code == ErrorCode::Exists => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) if e.code == ErrorCode::Exists => {}
        Err(e) => return Err(e),
    }
    // It exists: open it through the sandbox (a regular file inside the root only).
    let (file, _len) = root.open_file(rp)?;
    let now = SystemTime::now();
    file.set_times(FileTimes::new().set_accessed(now).set_modified(now))
        .map_err(|e| sft_commands::sandbox::io_error(&shown, &e))?;
    Ok(false)
}

impl Command for Touch {
    fn verb(&self) -> &'static str {
        TouchRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "create an empty file, or set an existing file's times to now"
    }

    // A read-only server refuses it, and HELLO lists it as a verb that writes.
    fn writes(&self) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: TouchRequest = request.args()?;
            let rp = ctx.resolve(&args.path)?;
            // File-system work blocks: the root's policy decides where it runs.
            let created = ctx
                .root
                .blocking(Work::Bulk, move |root| touch(root, &rp))
                .await??;
            ctx.reply_ok(&TouchReply { created })
                .await
                .map_err(CommandError::Abort)
        })
    }
}
