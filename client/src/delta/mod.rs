//! Version 3's delta transfers (PROTOCOL.md §8): matching signatures, asking for what differs,
//! and rebuilding a file from its old version and the bytes that changed.

pub(crate) mod body;
pub(crate) mod get;
mod plan;
pub(crate) mod send;
mod sign;

pub(crate) use sign::V3;

use crate::client::Transfer;
use async_std::task::{spawn_blocking, JoinHandle};
use sft_io::blocks::read_full_at;
use sft_io::chunker::{self, Segment};
use std::fs::File;
use std::io;
use std::sync::Arc;

/// How a delta attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The file is in place.
    Done(Transfer),
    /// It is to be transferred whole (the versions have nothing in common, or the file changed
    /// meanwhile, or the result did not verify); the bytes the attempt moved so far.
    Whole(u64),
}

/// Cuts the first `len` bytes of `file` into segments on a blocking thread, hashing them whole
/// on the way: runs while the server's signature arrives.
fn cut_segments(file: Arc<File>, len: u64) -> JoinHandle<io::Result<(Vec<Segment>, blake3::Hash)>> {
    spawn_blocking(move || {
        let mut segments = Vec::new();
        let hash = chunker::segments(&file, len, |s| {
            segments.push(s);
            Ok(())
        })?;
        Ok((segments, hash))
    })
}

/// The chunks of `file`'s `segments` (blocking), located in the file.
fn cut_chunks(file: &File, segments: &[Segment]) -> io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut entries = Vec::new();
    for s in segments {
        buf.resize(s.entry.len as usize, 0);
        if read_full_at(file, &mut buf, s.offset)? < buf.len() {
            return Err(sft_io::changed());
        }
        entries.clear();
        chunker::chunks(&buf, &mut entries);
        out.extend(plan::locate(&entries, s.offset));
    }
    Ok(out)
}
