//! `SIGN`: the digests of a file's content-defined segments, or of the chunks of some of its
//! segments, for a delta transfer (PROTOCOL.md §8.2).
//!
//! ```text
//! > {"verb":"SIGN","v":3,"path":"vm/disk.img"}
//! < {"ok":true,"stream":"lines","file_size":1073741824,"mtime":1732440000,"mode":420,"level":1}
//! < {"sig":"00000400a1b2c3d4e5f60718…"}
//! < {"end":true,"count":4096,"blake3":"5e1f…"}
//! ```
//!
//! A level-1 signature is sent as it is computed: one 8 MiB step of the file at a time, each a
//! short task on the blocking pool ([`Segmenter`]), the entries written between steps, so no
//! pool thread waits on the client and the memory is one step's. At most
//! [`Limits::signing`](crate::Limits) are computed at once; a `SIGN` that finds none free waits.
//! Once complete, and only if the file is still the version it was when opened, the signature
//! goes into the root's signature cache and its whole-file hash into the hash cache (so `GET`,
//! `STAT` and a delta `SEND` find it); a later `SIGN` of that version is streamed from the cache.
//! A file changed while it was read ends the stream with a `changed` error line, and nothing
//! is cached. Level 0 (`ranges`) reads the segments asked for, at most 1 MiB each, and cuts them
//! afresh.

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::get::{open, permissions, Opened};
use crate::ranges::{read_batch, BATCH};
use crate::sandbox::{Root, Work};
use crate::signatures::{Signature, MAX_CACHED_ENTRIES};
use crate::version3::{expected_hash, still};
use sft_io::chunker::{chunks, Segmenter};
use sft_io::{confirm, Version};
use sft_protocol::delta::{
    check_ranges, encode_sig_line, Entry, Range, SignEnd, SignReply, SignRequest,
    MAX_ENTRIES_PER_LINE, MAX_SIGN_RANGE,
};
use sft_protocol::verbs::{StreamFormat, Verb};
use sft_protocol::{ErrorCode, Request, WireError};
use std::fs::File;
use std::io;

/// The `SIGN` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sign;

impl Command for Sign {
    fn verb(&self) -> &'static str {
        SignRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "a file's content-defined segment digests, or its segments' chunk digests (delta)"
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: SignRequest = request.args()?;
            let expected = expected_hash(args.blake3.as_deref())?;
            let Opened { file, st, shown } = open(ctx, &args.path).await?;
            let version = Version::from_stat(&st);
            let mode = permissions(&st);
            let reply = |level| SignReply {
                stream: StreamFormat::Lines,
                file_size: version.size,
                mtime: Some(version.mtime.0),
                mode: Some(mode),
                level,
            };
            match args.ranges {
                None => level1(ctx, file, version, reply(1)).await,
                Some(ranges) => {
                    check_ranges(&ranges, version.size, MAX_SIGN_RANGE)?;
                    let known = ctx.root.hashes().lookup_version(version).hash;
                    still(known, expected, &shown)?;
                    level0(ctx, file, version, ranges, reply(0)).await
                }
            }
        })
    }
}

/// Writes signature entries as `{"sig":…}` lines, full ones as soon as they fill.
struct Lines {
    pending: Vec<Entry>,
    out: Vec<u8>,
    count: u64,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            pending: Vec::with_capacity(MAX_ENTRIES_PER_LINE),
            out: Vec::new(),
            count: 0,
        }
    }

    /// Adds `entries`; full lines are written out (buffered).
    async fn add(&mut self, ctx: &mut Context<'_>, entries: &[Entry]) -> io::Result<()> {
        for e in entries {
            self.pending.push(*e);
            if self.pending.len() == MAX_ENTRIES_PER_LINE {
                self.line(ctx).await?;
            }
        }
        Ok(())
    }

    async fn line(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.out.clear();
        encode_sig_line(&self.pending, &mut self.out);
        self.count += self.pending.len() as u64;
        self.pending.clear();
        ctx.write_body(&self.out).await
    }

    /// Writes what is left, then the end line.
    async fn end(mut self, ctx: &mut Context<'_>, blake3: Option<String>) -> io::Result<()> {
        self.line(ctx).await?;
        let end = SignEnd {
            end: true,
            count: self.count,
            blake3,
        };
        ctx.write_line(&end).await
    }
}

/// The whole file's segments: from the cache, or computed (waiting for a place among the
/// signatures computed at once) and then cached.
async fn level1(
    ctx: &mut Context<'_>,
    file: File,
    version: Version,
    reply: SignReply,
) -> Result<(), CommandError> {
    let cached = ctx.root.signatures().get(&version);
    // Waiting for a place: another `SIGN` of this file may have cached it meanwhile.
    let (cached, _place) = match cached {
        Some(sig) => (Some(sig), None),
        None => {
            let place = ctx.limits.signing.take().await;
            (ctx.root.signatures().get(&version), Some(place))
        }
    };
    let abort = CommandError::Abort;
    ctx.reply_ok(&reply).await.map_err(abort)?;
    let mut lines = Lines::new();
    if let Some(sig) = cached {
        log::debug!(session = ctx.session, entries = sig.entries.len(); "SIGN: from the cache");
        lines.add(ctx, &sig.entries).await.map_err(abort)?;
        let hash = Some(sig.hash.to_hex().to_string());
        return lines.end(ctx, hash).await.map_err(abort);
    }
    let mut segmenter = Segmenter::new(version.size);
    // What the cache will keep: nothing once the signature grows past what it could hold.
    let mut kept = Some(Vec::new());
    let mut file = file;
    let mut step = Vec::new();
    while !segmenter.done() {
        let run = move |_: &Root| {
            let read = segmenter.step(&file, &mut step);
            (segmenter, file, step, read)
        };
        let read;
        (segmenter, file, step, read) = match ctx.root.blocking(Work::Bulk, run).await {
            Ok(done) => done,
            Err(hung) => return failed(ctx, &hung.into()).await,
        };
        if let Err(e) = read {
            return failed(ctx, &e).await;
        }
        let entries: Vec<Entry> = step.iter().map(|s| s.entry).collect();
        step.clear();
        lines.add(ctx, &entries).await.map_err(abort)?;
        // Sent as computed: a client sees the signature grow, not a silence the size of
        // the file.
        ctx.flush().await.map_err(abort)?;
        kept = kept
            .filter(|k| k.len() + entries.len() <= MAX_CACHED_ENTRIES)
            .map(|mut k| {
                k.extend_from_slice(&entries);
                k
            });
    }
    let hash = segmenter.finish();
    let keep = move |root: &Root| {
        confirm(&file, &version, Some(&hash))?;
        let lookup = crate::hashes::Lookup {
            version,
            hash: None,
        };
        root.hashes().insert(&lookup, &file, hash);
        if let Some(entries) = kept {
            let sig = Signature {
                version,
                entries,
                hash,
            };
            root.signatures().insert(&file, sig);
        }
        Ok::<_, io::Error>(())
    };
    match ctx.root.blocking(Work::Bulk, keep).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return failed(ctx, &sft_io::changed()).await,
        Err(hung) => return failed(ctx, &hung.into()).await,
    }
    lines
        .end(ctx, Some(hash.to_hex().to_string()))
        .await
        .map_err(abort)
}

/// The chunks of each range, in order, cut afresh.
async fn level0(
    ctx: &mut Context<'_>,
    file: File,
    version: Version,
    ranges: Vec<Range>,
    reply: SignReply,
) -> Result<(), CommandError> {
    let _place = ctx.limits.signing.take().await;
    let abort = CommandError::Abort;
    ctx.reply_ok(&reply).await.map_err(abort)?;
    let mut lines = Lines::new();
    let (mut file, mut ranges, mut at) = (file, ranges, 0);
    let mut entries = Vec::new();
    while at < ranges.len() {
        let run = move |_: &Root| {
            let mut buf = Vec::new();
            let read = read_batch(&file, &ranges[at..], BATCH, &mut buf);
            if let Ok(n) = read {
                let mut from = 0;
                for &[_, len] in &ranges[at..at + n] {
                    chunks(&buf[from..from + len as usize], &mut entries);
                    from += len as usize;
                }
            }
            (file, ranges, entries, read)
        };
        let read;
        (file, ranges, entries, read) = match ctx.root.blocking(Work::Bulk, run).await {
            Ok(done) => done,
            Err(hung) => return failed(ctx, &hung.into()).await,
        };
        match read {
            Ok(n) => at += n,
            Err(e) => return failed(ctx, &e).await,
        }
        lines.add(ctx, &entries).await.map_err(abort)?;
        entries.clear();
    }
    let check = move |_: &Root| confirm(&file, &version, None);
    match ctx.root.blocking(Work::Bulk, check).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return failed(ctx, &sft_io::changed()).await,
        Err(hung) => return failed(ctx, &hung.into()).await,
    }
    lines.end(ctx, None).await.map_err(abort)
}

/// Ends a stream whose file could not be read to the end with an error line: `changed` when
/// the file changed meanwhile (replaced by another upload, perhaps through another server: an
/// expected race, which the client meets by transferring the file whole), `internal` when
/// reading failed. The connection stays in step.
async fn failed(ctx: &mut Context<'_>, e: &io::Error) -> Result<(), CommandError> {
    let shown = ctx.stats.path.clone().unwrap_or_default();
    // A file that ended early, or whose version moved (`sft_io::changed`), changed.
    let changed = e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::Other;
    let err = if changed {
        WireError::new(
            ErrorCode::Changed,
            format!("{shown} changed while it was read; look at it again"),
        )
    } else {
        WireError::internal(format!("reading {shown} failed: {e}"))
    };
    ctx.reply_error(&err).await.map_err(CommandError::Abort)
}
