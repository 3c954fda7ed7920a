//! Helpers shared by the staging tests.

use super::{Interrupted, PartialLimits, Upload};
use crate::sandbox::Root;
use sft_io::Pace;
use sft_protocol::RemotePath;
use std::fs;
use std::time::Duration;

/// A fresh root in a temporary folder.
pub(super) fn setup() -> (tempfile::TempDir, Root) {
    let root_dir = tempfile::tempdir().unwrap();
    let root = Root::open(root_dir.path()).unwrap();
    (root_dir, root)
}

/// Limits that keep every partial.
pub(super) const KEEP_ALL: PartialLimits = PartialLimits {
    ttl: Duration::from_secs(3600),
    max_count: 100,
    max_bytes: None,
};

/// Limits that keep no partial.
pub(super) const KEEP_NONE: PartialLimits = PartialLimits {
    max_count: 0,
    ..KEEP_ALL
};

/// Begins the upload of `rp` (1 MiB, id `u:1`, hashed) on `root`, resumed or afresh.
pub(super) fn begin(root: &Root, rp: &RemotePath, resume: bool) -> Upload {
    root.begin_upload(rp, 1 << 20, Some(b"u:1"), true, resume)
        .unwrap()
}

/// Begins a fresh upload of `rp` (id `u:1`) on `root`, receives `data`, loses the peer and
/// keeps the partial.
pub(super) fn keep_partial(root: &Root, rp: &RemotePath, data: &[u8]) {
    let mut up = begin(root, rp, false);
    receive_then_vanish(&mut up, data);
    assert!(up.keep(&KEEP_ALL));
}

/// Receives `len` bytes into `upload` from a source holding `data`.
pub(super) fn receive(upload: &mut Upload, data: &[u8], len: u64) -> Result<(), Interrupted> {
    let mut src = futures::io::Cursor::new(data.to_vec());
    let mut pace = Pace::new(sft_io::PaceRule::stall(Duration::from_secs(5)));
    async_std::task::block_on(upload.receive(
        &mut src,
        len,
        &mut pace,
        sft_io::Pool::unbounded(),
        |_| {},
    ))
}

/// Receives `data` into `upload`, then the source ends early (the peer went away).
pub(super) fn receive_then_vanish(upload: &mut Upload, data: &[u8]) {
    let got = receive(upload, data, data.len() as u64 + 1);
    assert!(matches!(got, Err(Interrupted::Peer(_))), "{got:?}");
}

/// The partials in the folder, with their sizes, sorted by name.
pub(super) fn partials(dir: &tempfile::TempDir) -> Vec<(String, u64)> {
    let mut out: Vec<_> = fs::read_dir(dir.path().join(".sft/partial"))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().len())
        })
        .collect();
    out.sort();
    out
}

/// Two servers over one root: two openings of it, each with its staging area (locks are
/// per open file, so they exclude each other as two processes do).
pub(super) fn two_servers() -> (tempfile::TempDir, Root, Root) {
    let dir = tempfile::tempdir().unwrap();
    let a = Root::open(dir.path()).unwrap();
    let b = Root::open(dir.path()).unwrap();
    (dir, a, b)
}

/// The BLAKE3 hash of `data`, as an upload reports it.
pub(super) fn hash_of(data: &[u8]) -> Option<blake3::Hash> {
    Some(blake3::hash(data))
}
