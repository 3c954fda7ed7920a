//! `STAT`: describe one path.
//!
//! ```text
//! > {"verb":"STAT","path":"docs/report.pdf"}
//! < {"ok":true,"entry":{"name":"docs/report.pdf","kind":"file","size":48213,"mtime":1732440000}}
//! ```
//!
//! A symlink named by the last component is described, not followed (like `LIST`); symlinks in
//! the folders leading to it are followed while they stay inside the root. The entry is read
//! with `fstatat` relative to the handle of the folder holding it, never by path, so a folder
//! swapped for a symlink meanwhile cannot make it describe something outside the root. A
//! regular file's `blake3` hash is included unless the request says `"hash":false`.

use crate::body::hash_prefix;
use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::entry::describe;
use crate::sandbox::Work;
use crate::sandbox::{io_error, Root};
use sft_protocol::verbs::{StatReply, StatRequest, Verb};
use sft_protocol::{RemotePath, Request, WireError};

/// The `STAT` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat;

/// The file's BLAKE3 hash: from the server's cache, or computed now and cached (blocking).
fn file_hash(root: &Root, rp: &RemotePath, shown: &str) -> Result<blake3::Hash, WireError> {
    let (file, size) = root.open_file(rp)?;
    let lookup = root
        .hashes()
        .lookup(&file)
        .map_err(|e| io_error(shown, &e))?;
    if let Some(hash) = lookup.hash {
        return Ok(hash);
    }
    let mut hasher = blake3::Hasher::new();
    hash_prefix(&file, &mut hasher, size).map_err(|e| io_error(shown, &e))?;
    let hash = hasher.finalize();
    root.hashes().insert(&lookup, &file, hash);
    Ok(hash)
}

impl Command for Stat {
    fn verb(&self) -> &'static str {
        StatRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "describe one path: kind, size, modification time, hash if known"
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: StatRequest = request.args()?;
            let rp = ctx.resolve(&args.path)?;
            let shown = rp.to_string();
            let want_hash = args.hash;
            // Hashing reads the file; describing it is a lookup.
            let work = if want_hash { Work::Bulk } else { Work::Lookup };
            let entry = ctx
                .root
                .blocking(work, move |root| {
                    let st = root.stat_entry(&rp)?;
                    let mut entry = describe(shown.clone(), &st);
                    if want_hash && entry.kind == sft_protocol::verbs::Kind::File {
                        entry.blake3 = Some(file_hash(root, &rp, &shown)?.to_hex().to_string());
                    }
                    Ok::<_, WireError>(entry)
                })
                .await??;
            ctx.reply_ok(&StatReply { entry })
                .await
                .map_err(CommandError::Abort)
        })
    }
}
