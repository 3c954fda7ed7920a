//! A delta `GET` (PROTOCOL.md §8.4): the local file is the basis, the server's the source. Only
//! the bytes the basis lacks cross the network; the new version is built in the partial file
//! beside the destination and renamed into place only if it hashes to what the server's
//! signature vouches for.

use super::body::ReplyBody;
use super::plan::{self, Part};
use super::sign::{self, V3};
use super::{cut_chunks, cut_segments, Outcome};
use crate::client::{partial_path, Transfer};
use crate::conn::{Conn, Exchange};
use crate::error::Error;
use crate::files::CHUNK;
use crate::get::{place, GetOptions, Stamp};
use crate::partial::Partial;
use async_std::task::spawn_blocking;
use sft_io::blocks::read_full_at;
use sft_io::{BlockSink, Pool, Version};
use sft_protocol::delta::{Compress, Range, MIN_DELTA_FILE};
use sft_protocol::encode_request_v;
use sft_protocol::verbs::{GetReply, GetRequest};
use sft_protocol::ErrorCode;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Request bytes on the wire at once, beyond one request: as for pipelined downloads, little
/// enough that the server's receive buffer always holds them while it sends a reply nobody
/// reads yet.
const WINDOW_BYTES: usize = 16 * 1024;

/// The local file at `local`, opened as a basis: a regular file (not through a symlink) of at
/// least [`MIN_DELTA_FILE`] bytes; `None` when it is not one.
pub(crate) fn open_basis(local: &Path) -> io::Result<Option<(File, Version)>> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(local)
    {
        Ok(file) => file,
        // Nothing there, a symlink, a folder: no basis; the whole download says what is wrong.
        Err(_) => return Ok(None),
    };
    let version = Version::of(&file)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() < MIN_DELTA_FILE {
        return Ok(None);
    }
    Ok(Some((file, version)))
}

/// Downloads `remote` over `local` by delta, `local` being open as `basis`.
pub(crate) async fn get(
    conn: &mut Conn,
    remote: &str,
    local: &Path,
    (basis, version): (File, Version),
    opts: GetOptions,
    compress: Option<i32>,
) -> Result<Outcome, Error> {
    let basis = Arc::new(basis);
    // The basis is cut on a blocking thread while the server's signature arrives.
    let cutting = cut_segments(basis.clone(), version.size);
    let mut x = conn.begin()?;
    let signature = sign::whole(&mut x, remote).await;
    let cut = cutting.await.map_err(Error::local(local, "read"));
    let signature = match signature {
        Err(Error::Remote(e)) if e.code == ErrorCode::Changed => return Ok(Outcome::Whole(0)),
        other => other?,
    };
    let (basis_segments, basis_hash) = cut?;
    let mut spent = signature.wire;
    let stamp = Stamp {
        mtime: signature.reply.mtime.filter(|_| opts.times),
        mode: signature
            .reply
            .mode
            .filter(|_| opts.mode)
            .map(|m| m & 0o777),
    };
    let size = signature.reply.file_size;
    if size == version.size && basis_hash.to_hex().as_str() == signature.blake3 {
        // The same file: only its time and bits may differ.
        let basis = basis.clone();
        spawn_blocking(move || stamp.apply(&basis))
            .await
            .map_err(Error::local(local, "set the time of"))?;
        return Ok(Outcome::Done(Transfer {
            size,
            bytes_transferred: spent,
            bytes_reused: size,
            delta: true,
            blake3: Some(signature.blake3),
            ..Transfer::default()
        }));
    }
    let level1 = plan::level1(&signature.segments, &basis_segments);
    if level1.copies.is_empty() {
        // Nothing in common at this scale: a delta would only add round trips.
        return Ok(Outcome::Whole(spent));
    }
    let parts = if level1.missing.is_empty() {
        plan::coalesce(level1.copies)
    } else {
        let unused = level1.unused.clone();
        let cutting = spawn_blocking({
            let basis = basis.clone();
            move || cut_chunks(&basis, &unused)
        });
        let found = sign::chunks(&mut x, remote, &level1.missing, &signature.blake3).await;
        let basis_chunks = cutting.await.map_err(Error::local(local, "read"));
        let (chunks, wire) = match found {
            Err(Error::Remote(e)) if e.code == ErrorCode::Changed => {
                return Ok(Outcome::Whole(spent))
            }
            other => other?,
        };
        spent += wire;
        plan::plan(&level1.copies, &chunks, &basis_chunks?)
    };
    drop(x);
    let partial = {
        let at = local.to_owned();
        spawn_blocking(move || Partial::open(&at, false))
            .await
            .map_err(Error::local(
                partial_path(local),
                "open the partial download",
            ))?
    };
    let rebuilt = rebuild(
        conn,
        remote,
        &partial,
        &basis,
        &parts,
        &signature.blake3,
        compress,
    )
    .await;
    let (file, hash, wire, compressed) = match rebuilt {
        Ok(done) => done,
        Err(e) => {
            spawn_blocking(move || partial.discard()).await;
            return match e {
                Error::Remote(e) if e.code == ErrorCode::Changed => Ok(Outcome::Whole(spent)),
                e => Err(e),
            };
        }
    };
    spent += wire;
    // The new version is kept only if it is the server's (a digest may match falsely, the
    // file may have changed there) and was built from one version of the basis.
    let basis_held = {
        let basis = basis.clone();
        spawn_blocking(move || sft_io::confirm(&basis, &version, None)).await
    };
    if hash.to_hex().as_str() != signature.blake3 || basis_held.is_err() {
        spawn_blocking(move || partial.discard()).await;
        return Ok(Outcome::Whole(spent));
    }
    place(partial, file, stamp, local).await?;
    Ok(Outcome::Done(Transfer {
        size,
        bytes_transferred: spent,
        bytes_reused: plan::reused(&parts),
        delta: true,
        compressed,
        resumed_from: 0,
        blake3: Some(signature.blake3),
    }))
}

/// Writes the new version into `partial`: copies from `basis`, literals from `GET`s with
/// `ranges` (pipelined). Returns the file, its hash, the bytes the replies took on the wire,
/// and whether any came compressed.
async fn rebuild(
    conn: &mut Conn,
    remote: &str,
    partial: &Partial,
    basis: &Arc<File>,
    parts: &[Part],
    blake3: &str,
    compress: Option<i32>,
) -> Result<(File, blake3::Hash, u64, bool), Error> {
    let file = partial
        .file()
        .map_err(Error::local(partial.path(), "write"))?;
    let mut sink = BlockSink::new(
        Some(file),
        0,
        Some(blake3::Hasher::new()),
        &Pool::unbounded(),
    );
    let mut fetches = Fetches::new(remote, &plan::literals(parts), blake3, compress);
    let during = format!("the download of {remote}");
    let mut x = conn.begin()?;
    let size = parts.last().map_or(0, |p| p.at + p.len);
    x.progress_start(remote, Some(size), 0);
    let (mut wire, mut compressed) = (0, false);
    let mut current: Option<(ReplyBody, usize)> = None;
    let written = |e| Error::local(partial.path(), "write")(e);
    for part in parts {
        let mut done = 0;
        while done < part.len {
            let len = (part.len - done).min(CHUNK as u64) as usize;
            let mut block = sink.buffer(len);
            match part.from {
                Some(from) => {
                    let at = from + done;
                    let basis = basis.clone();
                    let (read, b) = spawn_blocking(move || {
                        let n = read_full_at(&basis, &mut block, at);
                        (n, block)
                    })
                    .await;
                    block = b;
                    if read.map_err(Error::local(partial.path(), "read the basis of"))? < len {
                        return Err(Error::local(partial.path(), "read the basis of")(
                            sft_io::changed(),
                        ));
                    }
                }
                None => {
                    if current.is_none() {
                        current = Some(fetches.next_reply(&mut x).await?);
                    }
                    let (body, _) = current.as_mut().expect("a reply is being read");
                    body.fill(&mut x, &mut block, &during).await?;
                }
            }
            sink.write(block).await.map_err(written)?;
            x.progress_advance(len as u64);
            done += len as u64;
        }
        if part.from.is_none() {
            let (body, left) = current.as_mut().expect("a reply is being read");
            *left -= 1;
            if *left == 0 {
                body.finish(&mut x, &during).await?;
                wire += body.wire;
                compressed |= body.compressed;
                current = None;
                if fetches.idle() {
                    x.done();
                }
            }
        }
    }
    x.done();
    let done = sink.finish().await;
    done.written.map_err(written)?;
    let file = done.file.expect("the sink writes to a file");
    let hash = done.hasher.expect("the sink hashes").finalize();
    Ok((file, hash, wire, compressed))
}

/// The `GET`s with `ranges` of one delta: written ahead of their replies within a window.
#[derive(Debug)]
struct Fetches {
    /// Request lines not written yet, with how many ranges each asks for and their bytes.
    queued: VecDeque<(Vec<u8>, usize, u64)>,
    /// Requests written whose replies are still to come: ranges, bytes, line length.
    inflight: VecDeque<(usize, u64, usize)>,
    inflight_bytes: usize,
    remote: String,
}

impl Fetches {
    fn new(remote: &str, literals: &[Range], blake3: &str, compress: Option<i32>) -> Fetches {
        let mut request = GetRequest {
            path: remote.to_owned(),
            ranges: Some(Vec::new()),
            blake3: Some(blake3.to_owned()),
            compress: compress.map(|_| Compress::Zstd),
            level: compress,
            ..GetRequest::default()
        };
        let mut line = Vec::new();
        encode_request_v(&request, V3, &mut line);
        let queued = plan::batches(literals, line.len())
            .into_iter()
            .map(|batch| {
                let n = batch.len();
                let bytes = batch.iter().map(|r| r[1]).sum();
                request.ranges = Some(batch);
                let mut line = Vec::new();
                encode_request_v(&request, V3, &mut line);
                (line, n, bytes)
            })
            .collect();
        Fetches {
            queued,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            remote: remote.to_owned(),
        }
    }

    /// Whether every reply was read.
    fn idle(&self) -> bool {
        self.queued.is_empty() && self.inflight.is_empty()
    }

    /// Writes what the window takes, then reads the next reply: its body, and how many ranges
    /// it holds. An error reply leaves the exchange in step (the other replies are read and
    /// dropped).
    async fn next_reply(&mut self, x: &mut Exchange<'_>) -> Result<(ReplyBody, usize), Error> {
        let during = format!("GET {}", self.remote);
        let mut wrote = false;
        while let Some((line, ..)) = self.queued.front() {
            if !self.inflight.is_empty() && self.inflight_bytes + line.len() > WINDOW_BYTES {
                break;
            }
            let (line, n, bytes) = self.queued.pop_front().expect("one is queued");
            x.scratch.clear();
            x.scratch.extend_from_slice(&line);
            x.queue_scratch(&during).await?;
            self.inflight.push_back((n, bytes, line.len()));
            self.inflight_bytes += line.len();
            wrote = true;
        }
        if wrote {
            x.flush(&during).await?;
        }
        let Some((n, bytes, len)) = self.inflight.pop_front() else {
            return Err(Error::Protocol(format!(
                "{during}: more bytes asked than planned"
            )));
        };
        self.inflight_bytes -= len;
        let reply: GetReply = match x.reply(&during).await {
            Ok(reply) => reply,
            Err(e @ Error::Remote(_)) => {
                self.drain(x, &during).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if reply.stream.is_none() && reply.size != Some(bytes) {
            return Err(Error::Protocol(format!(
                "{during}: {} bytes for ranges of {bytes}",
                reply.body_len()
            )));
        }
        Ok((ReplyBody::of(&reply), n))
    }

    /// Reads and drops the replies still to come, so that the connection is in step again.
    async fn drain(&mut self, x: &mut Exchange<'_>, during: &str) -> Result<(), Error> {
        x.out_of_step();
        self.queued.clear();
        while self.inflight.pop_front().is_some() {
            match x.reply::<GetReply>(during).await {
                Ok(reply) => ReplyBody::of(&reply).skip(x, during).await?,
                Err(Error::Remote(_)) => {}
                Err(e) => return Err(e),
            }
            x.out_of_step();
        }
        x.done();
        Ok(())
    }
}
