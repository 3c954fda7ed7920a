//! Which partial an upload owns: the partial's name (from the path, the size and the upload's
//! key), finding one to resume, and the claim that keeps a second upload of this server off a
//! partial while one writes it (another server is kept off by the partial's file lock).

use super::Staging;
use crate::locks::{self, Claim, Folder};
use rustix::fs::{Mode, OFlags};
use sft_io::Version;
use sft_protocol::RemotePath;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

/// The name of the partial for an upload of `size` bytes at `rp` identified by `key`.
pub(super) fn partial_key(rp: &RemotePath, size: u64, key: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(rp.to_string().as_bytes())
        .update(b"\0")
        .update(&size.to_le_bytes())
        .update(key);
    format!("{}.part", &h.finalize().to_hex()[..32])
}

/// What [`open_partial`] found.
#[derive(Debug)]
pub(super) enum Found {
    /// A partial to continue, locked: the file and its version (its size is what it holds).
    Held(File, Version),
    /// Nothing to continue.
    Nothing,
    /// An upload (on another server) is writing it right now.
    Busy,
}

/// Opens the existing partial `name` to be continued, if there is one holding part of an upload
/// of `size` bytes, and locks it. Creates nothing.
pub(super) fn open_partial(dir: &Folder, name: &str, size: u64) -> io::Result<Found> {
    let file = match locks::open_locked(dir, name, OFlags::RDWR, Mode::empty())? {
        Claim::Locked(file) => file,
        Claim::Busy => return Ok(Found::Busy),
        Claim::Missing => return Ok(Found::Nothing),
    };
    let version = Version::of(&file)?;
    Ok(match version.size > 0 && version.size <= size {
        true => Found::Held(file, version),
        false => Found::Nothing,
    })
}

/// A kept partial, taken out of the index while an upload of the same key runs.
#[derive(Debug)]
pub(super) struct Kept {
    pub(super) at: SystemTime,
    pub(super) size: u64,
    pub(super) hasher: Option<(Version, blake3::Hasher)>,
}

/// Marks a partial as being written; released on drop. A kept partial it took out of the index
/// and that is still there untouched (the upload wrote no file of its own) is put back then.
#[derive(Debug)]
pub(super) struct PartialGuard {
    pub(super) staging: Arc<Staging>,
    pub(super) key: String,
    pub(super) kept: Option<Kept>,
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        if let Some(kept) = self.kept.take() {
            if let Some(state) = kept.hasher {
                self.staging.hashers.insert(self.key.clone(), state);
            }
            self.staging
                .kept()
                .insert(self.key.clone(), kept.size, kept.at);
        }
        self.staging.active.remove(&self.key);
    }
}
