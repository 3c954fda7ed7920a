//! `GET` with `compress` (version 3, PROTOCOL.md §8.3): the file from `offset` on as a chunked
//! body of raw and zstd chunks of at most 1 MiB each.
//!
//! ```text
//! > {"verb":"GET","v":3,"path":"logs/app.log","compress":"zstd","hash":true}
//! < {"ok":true,"stream":"chunked","file_size":52428800,"mtime":1732440000,"mode":420}
//! < {"size":81234,"zstd":1048576}
//! < …81234 bytes of zstd…
//! < {"size":0,"blake3":"5e1f…"}
//! ```
//!
//! Each block is read, hashed and compressed by one short task on the blocking pool
//! ([`BlockCompressor`], which sends incompressible blocks raw and then stops trying for a
//! while); the next block's task starts before this one is written, so compressing overlaps the
//! socket. With `hash`, the file's version is confirmed before the terminator vouches for it:
//! a file changed meanwhile closes the connection instead.

use super::{open, permissions, Opened};
use crate::body::{hash_prefix, read_full_at, send_range, CopyError};
use crate::command::CommandError;
use crate::context::Context;
use crate::hashes::Lookup;
use crate::sandbox::{io_error, Root, Work};
use crate::started::log_start;
use sft_io::blocks::shrank;
use sft_io::zblock::BlockCompressor;
use sft_io::{confirm, Job, Version};
use sft_protocol::body::encode_chunk_header;
use sft_protocol::delta::{encode_zstd_chunk, Range};
use sft_protocol::limits::MAX_CHUNK_LEN;
use sft_protocol::verbs::{BodyFraming, GetReply, GetRequest, Verb};
use sft_protocol::WireError;
use std::fs::File;
use std::io;

/// What a block task needs, and gives back with its block.
struct Reading {
    file: File,
    compressor: BlockCompressor,
    hasher: Option<blake3::Hasher>,
    /// The `[offset,length]` spans of the file still to send, the first one from `pos` on.
    spans: Vec<Range>,
    next: usize,
    pos: u64,
}

impl Reading {
    /// The next stretch to read: where, and how much (at most one block).
    fn stretch(&mut self) -> Option<(u64, usize)> {
        while let Some(&[offset, len]) = self.spans.get(self.next) {
            let end = offset + len;
            self.pos = self.pos.max(offset);
            if self.pos < end {
                return Some((self.pos, (end - self.pos).min(MAX_CHUNK_LEN) as usize));
            }
            self.next += 1;
        }
        None
    }
}

/// One block, ready to be written: its chunk header and bytes.
struct Block {
    header: Vec<u8>,
    bytes: Vec<u8>,
    /// The file bytes it carries.
    raw: u64,
}

/// Reads, hashes and compresses the next block (blocking).
fn next_block(mut r: Reading) -> (Reading, io::Result<Block>) {
    let Some((at, len)) = r.stretch() else {
        return (r, Err(io::ErrorKind::UnexpectedEof.into()));
    };
    let mut raw = vec![0u8; len];
    let block = match read_full_at(&r.file, &mut raw, at) {
        Ok(n) if n < len => Err(shrank((len - n) as u64)),
        Err(e) => Err(e),
        Ok(_) => {
            if let Some(h) = r.hasher.as_mut() {
                h.update(&raw);
            }
            r.pos += len as u64;
            let mut packed = Vec::new();
            let mut header = Vec::with_capacity(40);
            match r.compressor.compress(&raw, &mut packed) {
                Ok(true) => {
                    encode_zstd_chunk(packed.len() as u64, len as u64, &mut header);
                    Ok(Block {
                        header,
                        bytes: packed,
                        raw: len as u64,
                    })
                }
                Ok(false) => {
                    encode_chunk_header(len as u64, None, &mut header);
                    Ok(Block {
                        header,
                        bytes: raw,
                        raw: len as u64,
                    })
                }
                Err(e) => Err(e),
            }
        }
    };
    (r, block)
}

/// Serves a `GET` with `compress` at zstd `level` (already checked: version 3, and allowed).
pub(super) async fn run(
    args: GetRequest,
    level: i32,
    ctx: &mut Context<'_>,
) -> Result<(), CommandError> {
    let Opened { file, st, shown } = open(ctx, &args.path).await?;
    let version = Version::from_stat(&st);
    let size = version.size;
    let offset = args.offset.unwrap_or(0);
    if offset > size {
        return Err(WireError::bad_request(format!(
            "offset {offset} is past the end of {shown} ({size} bytes)"
        ))
        .into());
    }
    let compressor = compressor(level)?;
    // A hash the cache holds for this version is vouched for as it is: nothing to hash.
    let cached = args
        .hash
        .then(|| ctx.root.hashes().lookup_version(version))
        .and_then(|l| l.hash);
    let hasher = match args.hash {
        false => None,
        true if cached.is_some() => None,
        true if offset == 0 => Some(blake3::Hasher::new()),
        true => {
            // The hash covers the whole file: the part before `offset` too.
            let reader = file.try_clone().map_err(|e| io_error(&shown, &e))?;
            let hashed = ctx.root.bulk(move || {
                let mut h = blake3::Hasher::new();
                hash_prefix(&reader, &mut h, offset).map(|()| h)
            });
            Some(hashed.io().await.map_err(|e| io_error(&shown, &e))?)
        }
    };
    let reply = GetReply {
        stream: Some(BodyFraming::Chunked),
        offset: args.offset,
        file_size: Some(size),
        mtime: Some(version.mtime.0),
        mode: Some(permissions(&st)),
        ..GetReply::default()
    };
    ctx.reply_ok(&reply).await.map_err(CommandError::Abort)?;
    log_start(ctx, GetRequest::NAME, Some(size - offset));
    let reading = Reading {
        file,
        compressor,
        hasher,
        spans: vec![[offset, size - offset]],
        next: 0,
        pos: offset,
    };
    send(ctx, reading, version, cached).await
}

/// A block compressor at `level`.
pub(super) fn compressor(level: i32) -> Result<BlockCompressor, WireError> {
    BlockCompressor::new(level)
        .map_err(|e| WireError::internal(format!("cannot start compressing: {e}")))
}

/// Sends `spans` of `file` (version `version`, checked to lie inside it) as a compressed
/// chunked body, after a reply that announced it; no hash.
pub(super) async fn send_spans(
    ctx: &mut Context<'_>,
    file: File,
    version: Version,
    spans: Vec<Range>,
    compressor: BlockCompressor,
) -> Result<(), CommandError> {
    let reading = Reading {
        file,
        compressor,
        hasher: None,
        spans,
        next: 0,
        pos: 0,
    };
    send(ctx, reading, version, None).await
}

/// Sends the chunked body: each block read and compressed on the pool while the one before
/// is written; then the terminator, with the hash when hashing (or `cached`, the cache's hash
/// of `version`), once the file's version is confirmed.
async fn send(
    ctx: &mut Context<'_>,
    reading: Reading,
    version: Version,
    cached: Option<blake3::Hash>,
) -> Result<(), CommandError> {
    let mut raw_bytes = 0;
    let mut idle = Some(reading);
    let mut pending: Option<Job<_>> = None;
    loop {
        if pending.is_none() {
            let mut r = idle.take().expect("the reading is back");
            let Some((at, len)) = r.stretch() else {
                idle = Some(r);
                break;
            };
            if r.hasher.is_none() && r.compressor.skipping() {
                // A block the back-off sends raw, and nothing to hash: it goes by sendfile, as
                // an uncompressed GET's body does.
                r.compressor.skip();
                let mut header = Vec::with_capacity(24);
                encode_chunk_header(len as u64, None, &mut header);
                ctx.write_body(&header).await.map_err(CommandError::Abort)?;
                let (file, _) = send_range(ctx, r.file, at, len as u64, None)
                    .await
                    .map_err(|e| ctx.sending_failed(e))?;
                r.file = file;
                r.pos += len as u64;
                raw_bytes += len as u64;
                idle = Some(r);
                continue;
            }
            pending = Some(ctx.root.bulk(move || next_block(r)));
        }
        let task = pending.take().expect("a block is being read");
        let (mut reading, block) = task
            .await
            .map_err(|hung| ctx.sending_failed(CopyError::Read(hung.into())))?;
        let block = block.map_err(|e| ctx.sending_failed(CopyError::Read(e)))?;
        // The next block is read and compressed while this one is written, unless it is one
        // to send by sendfile.
        if reading.stretch().is_some()
            && !(reading.hasher.is_none() && reading.compressor.skipping())
        {
            pending = Some(ctx.root.bulk(move || next_block(reading)));
        } else {
            idle = Some(reading);
        }
        raw_bytes += block.raw;
        let write = async {
            ctx.write_body(&block.header).await?;
            ctx.write_body(&block.bytes).await
        };
        write.await.map_err(CommandError::Abort)?;
    }
    ctx.stats.uncompressed = Some(raw_bytes);
    let done = idle.expect("the last block gives the reading back");
    let file = done.file;
    let blake3 = match done.hasher {
        Some(hasher) => {
            // The terminator vouches for one version: confirmed first, or no terminator.
            let whole = hasher.finalize();
            let check = ctx
                .root
                .bulk(move || confirm(&file, &version, Some(&whole)).map(|()| file));
            let file = check
                .io()
                .await
                .map_err(|e| ctx.sending_failed(CopyError::Read(e)))?;
            let lookup = Lookup {
                version,
                hash: None,
            };
            let insert = move |root: &Root| {
                root.hashes().insert(&lookup, &file, whole);
            };
            // A cache entry: nothing to answer if the storage hangs.
            let _ = ctx.root.blocking(Work::Bulk, insert).await;
            Some(whole.to_hex().to_string())
        }
        None => {
            // The bytes must be one version's all the same: a delta is built from them.
            let check = ctx.root.bulk(move || confirm(&file, &version, None));
            check
                .io()
                .await
                .map_err(|e| ctx.sending_failed(CopyError::Read(e)))?;
            cached.map(|h| h.to_hex().to_string())
        }
    };
    let mut end = Vec::with_capacity(96);
    encode_chunk_header(0, blake3.as_deref(), &mut end);
    ctx.write_body(&end).await.map_err(CommandError::Abort)
}
