//! `GET` with `ranges` (version 3, PROTOCOL.md §8.4): only the bytes of a file a delta still
//! lacks, in order, as one sized body.
//!
//! ```text
//! > {"verb":"GET","v":3,"path":"vm/disk.img","ranges":[[263800,8190],[900000,4096]],"blake3":"5e1f…"}
//! < {"ok":true,"size":12286,"file_size":1073741824,"mtime":1732440000,"mode":420}
//! < …12286 bytes…
//! ```
//!
//! With `compress`, the same bytes go as a compressed chunked body (see `zstd.rs`), without a
//! hash in its terminator. Large ranges go out like any body (`sendfile(2)` where it applies); runs of small ones are
//! read together on the blocking pool and written behind each other. The file's version is
//! taken when it is opened and confirmed after the last byte: a file rewritten meanwhile closes
//! the connection, so a pipelined next request fails and the client starts over.

use super::{open, permissions, Opened};
use crate::body::send_range;
use crate::command::CommandError;
use crate::context::Context;
use crate::ranges::read_batch;
use crate::sandbox::{Root, Work};
use crate::started::log_start;
use crate::version3::{expected_hash, still};
use sft_io::{confirm, Version, SENDFILE_MIN};
use sft_protocol::delta::{check_ranges, Range};
use sft_protocol::verbs::{BodyFraming, GetReply, GetRequest, Verb};
use sft_protocol::WireError;

/// Bytes of small ranges read per trip to the blocking pool.
const SMALL_BATCH: u64 = 1024 * 1024;

/// Serves a `GET` with `ranges` (already checked to be a version-3 request).
pub(super) async fn run(
    args: GetRequest,
    ranges: Vec<Range>,
    level: Option<i32>,
    ctx: &mut Context<'_>,
) -> Result<(), CommandError> {
    if args.offset.is_some() {
        return Err(WireError::bad_request("\"ranges\" excludes \"offset\"").into());
    }
    let expected = expected_hash(args.blake3.as_deref())?;
    let Opened { file, st, shown } = open(ctx, &args.path).await?;
    let version = Version::from_stat(&st);
    check_ranges(&ranges, version.size, u64::MAX)?;
    still(
        ctx.root.hashes().lookup_version(version).hash,
        expected,
        &shown,
    )?;
    let total: u64 = ranges.iter().map(|r| r[1]).sum();
    if let Some(level) = level {
        let compressor = super::zstd::compressor(level)?;
        let reply = GetReply {
            stream: Some(BodyFraming::Chunked),
            file_size: Some(version.size),
            mtime: Some(version.mtime.0),
            mode: Some(permissions(&st)),
            ..GetReply::default()
        };
        ctx.reply_ok(&reply).await.map_err(CommandError::Abort)?;
        log_start(ctx, GetRequest::NAME, Some(total));
        return super::zstd::send_spans(ctx, file, version, ranges, compressor).await;
    }
    let reply = GetReply {
        size: Some(total),
        file_size: Some(version.size),
        mtime: Some(version.mtime.0),
        mode: Some(permissions(&st)),
        ..GetReply::default()
    };
    ctx.reply_ok(&reply).await.map_err(CommandError::Abort)?;
    log_start(ctx, GetRequest::NAME, Some(total));
    let mut file = file;
    let mut at = 0;
    let mut buf = Vec::new();
    while at < ranges.len() {
        let [offset, len] = ranges[at];
        if len >= SENDFILE_MIN {
            file = send_range(ctx, file, offset, len, None)
                .await
                .map_err(|e| ctx.sending_failed(e))?
                .0;
            at += 1;
            continue;
        }
        let small = ranges[at..]
            .iter()
            .take_while(|r| r[1] < SENDFILE_MIN)
            .count();
        let batch = ranges[at..at + small].to_vec();
        let job = move |_: &Root| {
            let mut out = buf;
            out.clear();
            let read = read_batch(&file, &batch, SMALL_BATCH, &mut out);
            (file, out, read)
        };
        let read;
        (file, buf, read) = ctx.root.blocking(Work::Bulk, job).await?;
        let n = read.map_err(|e| ctx.sending_failed(crate::body::CopyError::Read(e)))?;
        ctx.write_body(&buf).await.map_err(CommandError::Abort)?;
        at += n;
    }
    // The bytes sent must be one version's: the client builds its file from them.
    let check = move |_: &Root| confirm(&file, &version, None);
    ctx.root
        .blocking(Work::Bulk, check)
        .await
        .unwrap_or_else(|hung| Err(hung.into()))
        .map_err(|e| ctx.sending_failed(crate::body::CopyError::Read(e)))
}
