//! A delta `SEND` (PROTOCOL.md §8.5), and the chunked upload body of version 3 that carries
//! it — copies of the server's file, raw or zstd-compressed literals — which also carries a
//! compressed whole upload (§8.3).

use super::plan::{self, Part};
use super::sign::{self, V3};
use super::{cut_chunks, cut_segments, Outcome};
use crate::client::Transfer;
use crate::conn::{Conn, Exchange};
use crate::error::Error;
use crate::stream::replied_early;
use async_std::task::spawn_blocking;
use sft_io::blocks::read_full_at;
use sft_io::zblock::BlockCompressor;
use sft_io::{confirm, Version};
use sft_protocol::body::encode_chunk_header;
use sft_protocol::delta::{
    encode_copy_chunk, encode_zstd_chunk, Compress, DeltaSpec, MAX_COPY_LEN, MIN_DELTA_FILE,
};
use sft_protocol::encode_request_v;
use sft_protocol::limits::MAX_CHUNK_LEN;
use sft_protocol::verbs::{BodyFraming, SendReady, SendReply, SendStreamRequest};
use sft_protocol::ErrorCode;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The file to upload: open, the version every byte sent must be of, where it is.
#[derive(Debug, Clone)]
pub(crate) struct Source<'a> {
    pub(crate) file: Arc<File>,
    pub(crate) version: Version,
    pub(crate) local: &'a Path,
    /// The time and bits to give the stored file.
    pub(crate) mtime: Option<i64>,
    pub(crate) mode: Option<u32>,
    /// Replace an existing file (a whole upload; a delta always does).
    pub(crate) overwrite: bool,
}

/// Uploads `source` over `remote` by delta, the server's file being the basis.
pub(crate) async fn send(
    conn: &mut Conn,
    source: &Source<'_>,
    remote: &str,
    level: Option<i32>,
) -> Result<Outcome, Error> {
    let local = source.local;
    let cutting = cut_segments(source.file.clone(), source.version.size);
    let mut x = conn.begin()?;
    let signature = sign::whole(&mut x, remote).await;
    let cut = cutting.await.map_err(Error::local(local, "read"));
    let signature = match signature {
        // Nothing there to build on (or not a file): the whole upload says what is wrong.
        Err(Error::Remote(e))
            if matches!(
                e.code,
                ErrorCode::NotFound | ErrorCode::BadRequest | ErrorCode::Changed
            ) =>
        {
            return Ok(Outcome::Whole(0))
        }
        other => other?,
    };
    let (segments, hash) = cut?;
    let mut spent = signature.wire;
    if signature.reply.file_size < MIN_DELTA_FILE {
        return Ok(Outcome::Whole(spent));
    }
    let level1 = plan::level1(&segments, &signature.segments);
    if level1.copies.is_empty() && !segments.is_empty() {
        return Ok(Outcome::Whole(spent));
    }
    let parts = if level1.missing.is_empty() {
        plan::coalesce(level1.copies)
    } else {
        let missing = level1.missing.clone();
        let cutting = spawn_blocking({
            let file = source.file.clone();
            move || cut_chunks(&file, &missing)
        });
        let found = sign::chunks(&mut x, remote, &level1.unused, &signature.blake3).await;
        let chunks = cutting.await.map_err(Error::local(local, "read"));
        let (basis_chunks, wire) = match found {
            Err(Error::Remote(e)) if e.code == ErrorCode::Changed => {
                return Ok(Outcome::Whole(spent))
            }
            other => other?,
        };
        spent += wire;
        plan::plan(&level1.copies, &chunks?, &basis_chunks)
    };
    let delta = DeltaSpec {
        basis: signature.blake3,
        file_size: source.version.size,
    };
    match upload(
        &mut x,
        source,
        remote,
        &parts,
        Some(hash),
        Some(delta),
        level,
    )
    .await
    {
        Ok(mut t) => {
            t.bytes_transferred += spent;
            Ok(Outcome::Done(t))
        }
        // The server's file changed, or a digest matched falsely: whole, once. A server that
        // signs but does not take deltas yet refuses before any body.
        Err(Error::Remote(e))
            if matches!(
                e.code,
                ErrorCode::Changed | ErrorCode::ChecksumMismatch | ErrorCode::Unsupported
            ) =>
        {
            Ok(Outcome::Whole(spent))
        }
        Err(e) => Err(e),
    }
}

/// Uploads `source` whole as a compressed chunked body (not resumable).
pub(crate) async fn send_compressed(
    conn: &mut Conn,
    source: &Source<'_>,
    remote: &str,
    level: i32,
) -> Result<Transfer, Error> {
    let size = source.version.size;
    let whole = match size {
        0 => Vec::new(),
        _ => vec![Part {
            at: 0,
            len: size,
            from: None,
        }],
    };
    let mut x = conn.begin()?;
    upload(&mut x, source, remote, &whole, None, None, Some(level)).await
}

/// One `SEND` with a chunked body built from `parts` (copies need `delta`), its literals
/// compressed at `level` if given. `hash` is the source's whole hash when known beforehand;
/// otherwise the literals are hashed as they are read (they must then be the whole file).
async fn upload(
    x: &mut Exchange<'_>,
    source: &Source<'_>,
    remote: &str,
    parts: &[Part],
    hash: Option<blake3::Hash>,
    delta: Option<DeltaSpec>,
    level: Option<i32>,
) -> Result<Transfer, Error> {
    let local = source.local;
    let size = source.version.size;
    let request = SendStreamRequest {
        path: remote.to_owned(),
        body: BodyFraming::Chunked,
        // A delta replaces its basis by definition.
        overwrite: delta.is_some() || source.overwrite,
        mtime: source.mtime,
        mode: source.mode,
        compress: level.map(|_| Compress::Zstd),
        delta,
    };
    let during = format!("the upload of {remote}");
    x.scratch.clear();
    encode_request_v(&request, V3, &mut x.scratch);
    x.write_scratch("SEND").await?;
    let ready: SendReady = x.reply(&during).await?;
    if ready.offset != 0 {
        return Err(Error::Protocol(format!(
            "{during}: a go-ahead from offset {} for a chunked body",
            ready.offset
        )));
    }
    x.progress_start(remote, Some(size), 0);
    let mut compressor = match level {
        Some(level) => Some(BlockCompressor::new(level).map_err(Error::local(local, "compress"))?),
        None => None,
    };
    let mut hasher = hash.is_none().then(blake3::Hasher::new);
    let mut header = Vec::with_capacity(64);
    let (mut wire, mut compressed) = (0u64, false);
    let mut refused = false;
    'parts: for part in parts {
        let mut done = 0;
        while done < part.len {
            if replied_early(x) {
                refused = true;
                break 'parts;
            }
            header.clear();
            match part.from {
                Some(from) => {
                    let len = (part.len - done).min(MAX_COPY_LEN);
                    encode_copy_chunk(from + done, len, &mut header);
                    x.send_chunk(&header, &during).await?;
                    wire += header.len() as u64;
                    x.progress_advance(len);
                    done += len;
                }
                None => {
                    let len = (part.len - done).min(MAX_CHUNK_LEN) as usize;
                    let at = part.at + done;
                    let file = source.file.clone();
                    let z = compressor.take();
                    let h = hasher.take();
                    let (block, packed, z, h, read) =
                        spawn_blocking(move || read_block(&file, at, len, z, h)).await;
                    (compressor, hasher) = (z, h);
                    read.map_err(Error::local(local, "read"))?;
                    match &packed {
                        Some(packed) => {
                            encode_zstd_chunk(packed.len() as u64, len as u64, &mut header);
                            compressed = true;
                        }
                        None => encode_chunk_header(len as u64, None, &mut header),
                    }
                    let payload = packed.as_deref().unwrap_or(&block);
                    x.send_chunk(&header, &during).await?;
                    x.send_chunk(payload, &during).await?;
                    wire += (header.len() + payload.len()) as u64;
                    x.progress_advance(len as u64);
                    done += len as u64;
                }
            }
        }
    }
    header.clear();
    if refused {
        encode_chunk_header(0, None, &mut header);
        x.send_chunk(&header, &during).await?;
        x.flush(&during).await?;
        let reply = x.reply::<SendReply>(&during).await;
        return match reply {
            Err(e) => Err(e),
            Ok(_) => Err(Error::Protocol(format!(
                "{during}: the server accepted an upload it had interrupted"
            ))),
        };
    }
    let hash = match (hash, hasher) {
        (Some(hash), _) => hash,
        (None, Some(h)) => h.finalize(),
        (None, None) => unreachable!("one of them is kept"),
    };
    // Every byte sent, and the copies' source hash, must be of one version of the file: one
    // that changed meanwhile ends the upload without a terminator (the server drops it).
    let (file, version) = (source.file.clone(), source.version);
    spawn_blocking(move || confirm(&file, &version, Some(&hash)))
        .await
        .map_err(Error::local(local, "read"))?;
    let ours = hash.to_hex().to_string();
    encode_chunk_header(0, Some(&ours), &mut header);
    x.send_chunk(&header, &during).await?;
    wire += header.len() as u64;
    x.flush(&during).await?;
    let reply: SendReply = x.reply(&during).await?;
    if reply.size != size {
        return Err(Error::Protocol(format!(
            "server stored {} of {size} bytes",
            reply.size
        )));
    }
    x.done();
    if let Some(theirs) = reply.blake3.filter(|theirs| *theirs != ours) {
        return Err(Error::Integrity {
            what: remote.to_owned(),
            expected: ours,
            actual: theirs,
        });
    }
    let reused = match request.delta {
        Some(_) => reply.reused.unwrap_or_else(|| plan::reused(parts)),
        None => 0,
    };
    Ok(Transfer {
        size,
        bytes_transferred: wire,
        bytes_reused: reused,
        delta: request.delta.is_some(),
        compressed,
        resumed_from: 0,
        blake3: Some(ours),
    })
}

/// What [`read_block`] hands back: the block, its compressed form if that is smaller, the
/// compressor and hasher it borrowed, and whether the read went well.
type Read = (
    Vec<u8>,
    Option<Vec<u8>>,
    Option<BlockCompressor>,
    Option<blake3::Hasher>,
    io::Result<()>,
);

/// Reads `len` bytes of `file` at `at` (blocking), hashes them into `hasher` and compresses
/// them with `z`, if given.
fn read_block(
    file: &File,
    at: u64,
    len: usize,
    mut z: Option<BlockCompressor>,
    mut hasher: Option<blake3::Hasher>,
) -> Read {
    let mut block = vec![0u8; len];
    let read = match read_full_at(file, &mut block, at) {
        Ok(n) if n < len => Err(sft_io::changed()),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    if read.is_err() {
        return (block, None, z, hasher, read);
    }
    if let Some(h) = &mut hasher {
        h.update(&block);
    }
    let mut packed = None;
    if let Some(c) = &mut z {
        let mut out = Vec::new();
        match c.compress(&block, &mut out) {
            Ok(true) => packed = Some(out),
            Ok(false) => {}
            Err(e) => return (block, None, z, hasher, Err(e)),
        }
    }
    (block, packed, z, hasher, Ok(()))
}
