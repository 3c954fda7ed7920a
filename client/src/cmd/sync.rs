//! Transfer only what differs: each file is compared with what is already at its destination
//! before anything moves, in both directions, under one policy (as rsync does).
//!
//! - Nothing there: transfer.
//! - Same size and same modification time (whole seconds): the same file; skipped without
//!   reading either copy (the quick check; `--checksum` turns it off).
//! - Same size, other time (or `--checksum`): the BLAKE3 hashes decide. The server's comes from
//!   its listing when it had one cached, else from a `STAT` of just that file; ours is
//!   computed in short blocking steps. Identical: skipped, and the destination takes the
//!   source's time (a download's copy locally, an upload's with `SETTIME`), so that the next
//!   quick check hits.
//! - Otherwise the file changed: replaced with `--overwrite`, else reported and left alone,
//!   with the `exists` exit code.
//!
//! A dry run (`-n`) decides the same way but touches neither side: an identical file's time is
//! left as it is.

use super::ui::Ui;
use crate::{escape, Failure};
use async_std::task::spawn_blocking;
use sft_client::{hash_file, Client, Entry, Error, ErrorCode, ExitCode, Kind};
use sft_protocol::delta::MIN_DELTA_FILE;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How files are compared, and what happens to one that changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Compare hashes of every same-size file (no quick check).
    pub(crate) checksum: bool,
    /// Replace a destination file that differs.
    pub(crate) overwrite: bool,
    /// Only decide (`-n`): an identical file's time is not given to the destination.
    pub(crate) dry_run: bool,
    /// Downloads may go by delta (no `--whole-file`).
    pub(crate) delta: bool,
}

/// What to do with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Transfer it: nothing (no regular file) is there.
    New,
    /// Transfer it: what is there differs, and `--overwrite` replaces it.
    Replace,
    /// The destination already holds this file.
    Skip,
    /// The destination holds another version, and `--overwrite` was not given.
    Changed,
}

/// What the quick check says about two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quick {
    Same,
    Differ,
    /// Same size: only their hashes can tell.
    Hash,
}

fn quick(source: (u64, i64), dest: (u64, i64), checksum: bool) -> Quick {
    if source.0 != dest.0 {
        Quick::Differ
    } else if !checksum && source.1 == dest.1 {
        Quick::Same
    } else {
        Quick::Hash
    }
}

impl Action {
    /// The name `--json` gives it (`"action"`): what happens to the file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::New => "new",
            Action::Replace => "replace",
            Action::Skip | Action::Changed => "skip",
        }
    }
}

impl Policy {
    fn differ(&self) -> Action {
        if self.overwrite {
            Action::Replace
        } else {
            Action::Changed
        }
    }

    /// Compares the remote file `remote` (described by `listed` when a listing had it; else it
    /// is asked for) with the local file `local`, for a download.
    pub(crate) async fn get(
        &self,
        client: &mut Client,
        remote: &str,
        listed: Option<&Entry>,
        local: &Path,
    ) -> Result<Action, Error> {
        let Some((size, mtime)) = local_file(local).await? else {
            return Ok(Action::New);
        };
        let asked;
        let entry = match listed {
            Some(entry) => entry,
            None => {
                asked = client.stat_quick(remote).await?;
                &asked
            }
        };
        if entry.kind != Kind::File {
            // The download itself says what is wrong.
            return Ok(Action::New);
        }
        match quick((entry.size, entry.mtime), (size, mtime), self.checksum) {
            Quick::Same => return Ok(Action::Skip),
            Quick::Differ => return Ok(self.differ()),
            Quick::Hash => {}
        }
        // A file that would be replaced by delta is not hashed on both sides first: the delta
        // reads each side once anyway, finds an identical file by its hash and then only sets
        // its time, as a skip would, instead of reading both a second time.
        if self.overwrite
            && self.delta
            && !self.dry_run
            && size >= MIN_DELTA_FILE
            && client.takes_deltas().await
        {
            return Ok(Action::Replace);
        }
        if self.same_hash(client, remote, entry, local, false).await? {
            if !self.dry_run {
                set_mtime(local, entry.mtime).await;
            }
            Ok(Action::Skip)
        } else {
            Ok(self.differ())
        }
    }

    /// Whether [`Policy::get`] decides about the listed file `listed` and `local` without
    /// asking the server anything (it asks only for a hash the listing did not carry).
    pub(crate) fn get_decides_locally(&self, listed: Option<&Entry>, local: &Path) -> bool {
        let Some(entry) = listed else {
            return false;
        };
        let there = match std::fs::symlink_metadata(local) {
            Ok(meta) if meta.is_file() => (meta.len(), meta.mtime()),
            _ => return true,
        };
        entry.kind != Kind::File
            || entry.blake3.is_some()
            || quick((entry.size, entry.mtime), there, self.checksum) != Quick::Hash
    }

    /// Compares the local file `local` (`size` bytes, modified at `mtime`) with what the server
    /// holds at `remote`: `there` when a listing told (`Some(None)`: nothing), else it is asked
    /// for. For an upload.
    pub(crate) async fn send(
        &self,
        client: &mut Client,
        local: &Path,
        (size, mtime): (u64, i64),
        remote: &str,
        there: Option<Option<&Entry>>,
    ) -> Result<Action, Error> {
        let asked;
        let entry = match there {
            Some(None) => return Ok(Action::New),
            Some(Some(entry)) => entry,
            None => match client.stat_quick(remote).await {
                Ok(entry) => {
                    asked = entry;
                    &asked
                }
                Err(Error::Remote(e)) if e.code == ErrorCode::NotFound => return Ok(Action::New),
                Err(e) => return Err(e),
            },
        };
        if entry.kind != Kind::File {
            return Ok(Action::New);
        }
        match quick((size, mtime), (entry.size, entry.mtime), self.checksum) {
            Quick::Same => Ok(Action::Skip),
            Quick::Differ => Ok(self.differ()),
            // The file to send may be a symlink the user named or the walk allowed.
            Quick::Hash if self.same_hash(client, remote, entry, local, true).await? => {
                if entry.mtime != mtime && !self.dry_run {
                    set_remote_mtime(client, remote, mtime).await?;
                }
                Ok(Action::Skip)
            }
            Quick::Hash => Ok(self.differ()),
        }
    }

    /// Whether the server's file and the local one hash the same.
    async fn same_hash(
        &self,
        client: &mut Client,
        remote: &str,
        entry: &Entry,
        local: &Path,
        follow: bool,
    ) -> Result<bool, Error> {
        let theirs = match &entry.blake3 {
            Some(h) => Some(h.clone()),
            None => client.stat(remote).await?.blake3,
        };
        // A server that cannot hash cannot vouch for its copy: it counts as different.
        let Some(theirs) = theirs else {
            return Ok(false);
        };
        let ours = hash_file(local, follow)
            .await
            .map_err(|source| Error::Local {
                path: local.to_owned(),
                action: "read",
                source,
            })?;
        Ok(ours == theirs)
    }
}

/// Size and modification time (whole seconds) of the regular file at `path`, not followed;
/// `None` when nothing, or something that is not a regular file, is there. One `lstat`, done in
/// place: for a folder of small files a hop to the blocking pool per file would cost more.
async fn local_file(path: &Path) -> Result<Option<(u64, i64)>, Error> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some((meta.len(), meta.mtime()))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Local {
            path: path.to_owned(),
            action: "read",
            source,
        }),
    }
}

/// Gives the local file the server's modification time (best effort: a file that is not ours
/// keeps its own, and is compared by hash next time again).
async fn set_mtime(path: &Path, mtime: i64) {
    let at = path.to_owned();
    let when = if mtime >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(mtime as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(mtime.unsigned_abs())
    };
    spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(at)?;
        file.set_modified(when)
    })
    .await
    .ok();
}

/// Gives the server's copy the local file's time (`SETTIME`), so that the next quick check hits
/// there too. A refusal (a server older than the verb) leaves its time, and the next run hashes
/// the file again; a broken connection is an error.
async fn set_remote_mtime(client: &mut Client, remote: &str, mtime: i64) -> Result<(), Error> {
    match client.set_mtime(remote, mtime).await {
        Ok(_) | Err(Error::Remote(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The one line that reports a file left alone because it changed.
pub(crate) fn changed_line(path: &str) -> String {
    format!("changed: {} (use --overwrite to replace)", escape(path))
}

/// A single transfer refused because the destination changed.
pub(crate) fn changed_failure(path: &str) -> Failure {
    Failure::Batch {
        code: ExitCode::Refused,
        name: ErrorCode::Exists.as_str(),
        message: changed_line(path),
    }
}

/// Reports a single transfer skipped because the destination already holds the file.
pub(crate) fn report_skipped(ui: &Ui, verb: &str, remote: &str, local: &str) {
    ui.finish();
    if ui.json {
        let line = serde_json::json!({
            "verb": verb,
            "remote": remote,
            "local": local,
            "action": "skip",
            "skipped": true,
            "bytes_transferred": 0,
        });
        ui.line_out(&line.to_string());
    } else if !ui.quiet {
        let (from, to) = if verb == "get" {
            (remote, local)
        } else {
            (local, remote)
        };
        ui.line(&format!(
            "{verb} {} → {}: skipped (already there, identical)",
            escape(from),
            escape(to)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_check() {
        assert_eq!(quick((3, 10), (3, 10), false), Quick::Same);
        assert_eq!(quick((3, 10), (3, 10), true), Quick::Hash);
        assert_eq!(quick((3, 10), (3, 11), false), Quick::Hash);
        assert_eq!(quick((3, 10), (4, 10), false), Quick::Differ);
        assert_eq!(quick((3, 10), (4, 10), true), Quick::Differ);
    }
}
