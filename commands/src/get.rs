//! `GET`: download a file, or the rest of it from an offset, optionally with its BLAKE3 hash.
//!
//! ```text
//! > {"verb":"GET","path":"docs/report.pdf","hash":true}
//! < {"ok":true,"size":48213,"trailer":true}
//! < …48213 raw bytes…
//! < {"blake3":"5e1f…"}
//! ```
//!
//! A hash already in the cache comes in the reply line; otherwise it is computed while the
//! bytes are sent (the first byte never waits for a whole-file hash) and comes in a trailer.
//!
//! The bytes sent are one version of the file: its [`Version`] is taken when it is opened and
//! confirmed after the last byte left. A file rewritten meanwhile cuts the connection before
//! the trailer, so the client never sees a complete, verified transfer of a torn file.

mod parts;
mod zstd;

use crate::body::{hash_prefix, read_full_at, send_range};
use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::hashes::Lookup;
use crate::sandbox::{io_error, Root, Work};
use crate::started::log_start;
use crate::version3::{compress_level, needs_v3};
use sft_io::{confirm, Version};
use sft_protocol::verbs::{GetReply, GetRequest, GetTrailer, Verb};
use sft_protocol::{ErrorCode, Request, WireError};
use std::fs::File;

/// The `GET` handler: streams a regular file inside the root, in bounded chunks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Get;

impl Command for Get {
    fn verb(&self) -> &'static str {
        GetRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "download a file, or its rest from an offset, with its BLAKE3 hash"
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let mut args: GetRequest = request.args()?;
            if let Some(ranges) = args.ranges.take() {
                needs_v3(&request, "\"ranges\"")?;
                let level = match args.compress {
                    Some(_) => Some(compress_level(ctx.limits, args.level)?),
                    None => None,
                };
                return parts::run(args, ranges, level, ctx).await;
            }
            if args.compress.is_some() {
                needs_v3(&request, "\"compress\"")?;
                let level = compress_level(ctx.limits, args.level)?;
                return zstd::run(args, level, ctx).await;
            }
            let (given, want_hash) = (args.offset, args.hash);
            let offset = given.unwrap_or(0);
            let Opened { file, st, shown } = open(ctx, &args.path).await?;
            let size = st.st_size as u64;
            if offset > size {
                return Err(WireError::bad_request(format!(
                    "offset {offset} is past the end of {shown} ({size} bytes)"
                ))
                .into());
            }
            let version = Version::from_stat(&st);
            let lookup = want_hash.then(|| ctx.root.hashes().lookup_version(version));
            if size <= SMALL_FILE {
                log::debug!(session = ctx.session, bytes = size, how = "copy", why = "small: read whole, sent with the reply line"; "sending a file body");
                let mode = permissions(&st);
                return send_small(ctx, file, version, mode, given, lookup, &shown).await;
            }
            let hasher = match lookup {
                Some(l) if l.hash.is_none() => {
                    // Resuming: the whole file's hash needs the part the client already has.
                    let reader = file.try_clone().map_err(|e| io_error(&shown, &e))?;
                    let what = shown.clone();
                    let hasher = ctx
                        .root
                        .bulk(move || {
                            let mut hasher = blake3::Hasher::new();
                            hash_prefix(&reader, &mut hasher, offset).map(|()| hasher)
                        })
                        .io()
                        .await
                        .map_err(|e| io_error(&what, &e))?;
                    Some(hasher)
                }
                _ => None,
            };
            let reply = GetReply {
                size: Some(size - offset),
                stream: None,
                offset: given,
                file_size: given.map(|_| size),
                blake3: lookup.and_then(|l| l.hash).map(|h| h.to_hex().to_string()),
                trailer: hasher.is_some(),
                mtime: Some(version.mtime.0),
                mode: Some(permissions(&st)),
            };
            ctx.reply_ok(&reply).await.map_err(CommandError::Abort)?;
            let body = size - offset;
            log_start(ctx, GetRequest::NAME, Some(body));
            if hasher.is_none() {
                // Nothing to vouch for: the public helper any verb sends a file with.
                return ctx.send_file(file, offset, body).await.map(|_| ());
            }
            // The reply promised `size` bytes of one version: a file that shrank, failed to
            // read or changed leaves the connection out of step, so it is closed.
            let hashing = hasher.map(|h| (h, version));
            let (file, hash) = send_range(ctx, file, offset, body, hashing)
                .await
                .map_err(|e| ctx.sending_failed(e))?;
            if let (Some(hash), Some(lookup)) = (hash, lookup) {
                let trailer = GetTrailer {
                    blake3: hash.to_hex().to_string(),
                };
                ctx.write_trailer(&trailer)
                    .await
                    .map_err(CommandError::Abort)?;
                let insert = move |root: &Root| root.hashes().insert(&lookup, &file, hash);
                // A cache entry: nothing to answer if the storage hangs.
                let _ = ctx.root.blocking(Work::Bulk, insert).await;
            }
            Ok(())
        })
    }
}

/// A regular file a request reads, open.
pub(crate) struct Opened {
    pub(crate) file: File,
    /// Its metadata as opened.
    pub(crate) st: rustix::fs::Stat,
    /// Its path as shown in messages.
    pub(crate) shown: String,
}

/// Opens the regular file at `path` to read it (`GET`, `SIGN`). Resolving and opening touch
/// only metadata: a lookup, which the root's policy runs in place on a local file system.
/// Reading the file is bulk work.
pub(crate) async fn open(ctx: &mut Context<'_>, path: &str) -> Result<Opened, WireError> {
    let rp = ctx.resolve(path)?;
    let shown = rp.to_string();
    let open = ctx
        .root
        .blocking(Work::Lookup, move |root| root.open_file_stat(&rp));
    let (file, st) = open.await??;
    Ok(Opened { file, st, shown })
}

/// The permission bits a `GET` or `SIGN` reply reports: no set-id or sticky bits.
#[allow(clippy::unnecessary_cast)] // the field types differ between targets
pub(crate) fn permissions(st: &rustix::fs::Stat) -> u32 {
    st.st_mode as u32 & 0o777
}

/// Files up to this size are read whole in place, hashed if asked (the hash then comes in the
/// reply line), and sent with the reply in one write.
const SMALL_FILE: u64 = 64 * 1024;

/// The small-file path: one read (where the root's policy says: in place on a local file
/// system), one write, no allocation. When a
/// hash was asked, the file is read whole before anything is sent and its version confirmed,
/// so a file that changes while it is read is simply read again (a few times at most).
async fn send_small(
    ctx: &mut Context<'_>,
    file: File,
    opened: Version,
    mode: u32,
    given: Option<u64>,
    lookup: Option<Lookup>,
    shown: &str,
) -> Result<(), CommandError> {
    let offset = given.unwrap_or(0);
    // The read is a lookup's worth of work: the root's policy decides where it runs. The
    // connection's body buffer goes with it and comes back filled.
    let buf = std::mem::take(ctx.body_buffer());
    let root = ctx.root.clone();
    let read = move || {
        let mut buf = buf;
        let read = read_small(&root, &file, opened, lookup, &mut buf);
        (buf, read)
    };
    let (buf, read) = ctx.root.offload(Work::Lookup, read).await?;
    *ctx.body_buffer() = buf;
    let (hash, before) = match read {
        Ok(read) => read,
        Err(SmallReadError::Io(e)) => return Err(io_error(shown, &e).into()),
        Err(SmallReadError::Changing) => {
            return Err(WireError::new(
                ErrorCode::Internal,
                format!("{shown} is being changed as it is read; try again later"),
            )
            .into())
        }
    };
    let size = before.size;
    if offset > size {
        return Err(WireError::bad_request(format!(
            "offset {offset} is past the end of {shown} ({size} bytes)"
        ))
        .into());
    }
    let reply = GetReply {
        size: Some(size - offset),
        stream: None,
        offset: given,
        file_size: given.map(|_| size),
        blake3: hash.map(|h| h.to_hex().to_string()),
        trailer: false,
        // The version whose bytes are sent (re-read if the file changed meanwhile).
        mtime: Some(before.mtime.0),
        mode: Some(mode),
    };
    ctx.reply_ok_with_body_buffer(&reply, offset as usize)
        .await
        .map_err(CommandError::Abort)
}

/// Why a small file could not be read.
enum SmallReadError {
    Io(std::io::Error),
    /// It kept changing while it was read.
    Changing,
}

/// Reads the small file `file`, opened as `opened`, whole into `buf` (blocking): with its hash
/// when `lookup` asks for one (from the cache, or computed and cached), its version confirmed so
/// that a file changed while it is read is read again (a few times at most). Returns the hash
/// and the version whose bytes `buf` holds.
fn read_small(
    root: &Root,
    file: &File,
    opened: Version,
    lookup: Option<Lookup>,
    buf: &mut Vec<u8>,
) -> Result<(Option<blake3::Hash>, Version), SmallReadError> {
    let mut before = opened;
    let mut cached = lookup.and_then(|l| l.hash);
    let mut tries = 0;
    loop {
        buf.resize(before.size as usize, 0);
        let n = read_full_at(file, buf, 0).map_err(SmallReadError::Io)?;
        buf.truncate(n);
        if lookup.is_none() {
            // No hash vouches for these bytes: they are sent as read (as the large-file path
            // does), without a second `fstat` on this hot path.
            before.size = n as u64;
            return Ok((None, before));
        }
        let hash = cached.unwrap_or_else(|| blake3::hash(buf));
        let whole = Some(hash).filter(|_| before.is_racy());
        if n as u64 == before.size && confirm(file, &before, whole.as_ref()).is_ok() {
            if cached.is_none() {
                let read = Lookup {
                    version: before,
                    hash: None,
                };
                root.hashes().insert(&read, file, hash);
            }
            return Ok((Some(hash), before));
        }
        tries += 1;
        before = Version::of(file).map_err(SmallReadError::Io)?;
        if tries == 3 || before.size > opened.size.max(SMALL_FILE) {
            return Err(SmallReadError::Changing);
        }
        cached = None;
    }
}
