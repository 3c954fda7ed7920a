//! `SEND` of a sized body: one upload from a reader or a local file, after a go-ahead
//! (resumable), or — for a small file read whole — eager, its body right behind the request.

use crate::client::{Client, Transfer};
use crate::conn::{Conn, Exchange};
use crate::delta::send::Source;
use crate::delta::{self, Outcome};
use crate::error::Error;
use crate::files::{self, CHUNK};
use crate::walk::Upload;
use async_std::task::spawn_blocking;
use futures::{AsyncRead, AsyncReadExt};
use sft_io::{confirm, FileSource, Pace, PaceRule, Pool, Version};
use sft_protocol::delta::MIN_DELTA_FILE;
use sft_protocol::encode_trailer;
use sft_protocol::verbs::{SendReady, SendReply, SendRequest, SendTrailer};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

/// Options of an upload.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Replace an existing remote file.
    pub overwrite: bool,
    /// Declare the file's BLAKE3 hash, so the server stores it only if it arrived intact (on by
    /// default; also what makes an interrupted upload resumable).
    pub verify: bool,
    /// Continue an interrupted upload the server kept.
    pub resume: bool,
    /// Give the remote file the local file's modification time (whole seconds; on by default).
    pub times: bool,
    /// Give the remote file the local file's permission bits (`0o777` at most; off by
    /// default: the server's umask decides for a new file).
    pub mode: bool,
    /// With `overwrite`, replace a remote file of at least 1 MiB by delta: only the parts that
    /// differ cross the network (on by default; used with a server that speaks protocol
    /// version 3, PROTOCOL.md §8.5).
    pub delta: bool,
    /// Send the bytes zstd-compressed at this level, if the server allows compression (`None`,
    /// the default: uncompressed). A compressed upload cannot be resumed.
    pub compress: Option<i32>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            overwrite: false,
            verify: true,
            resume: false,
            times: true,
            mode: false,
            delta: true,
            compress: None,
        }
    }
}

impl SendOptions {
    /// The time and bits to declare for a file described by `meta`.
    fn stamp(&self, meta: &std::fs::Metadata) -> (Option<i64>, Option<u32>) {
        (
            self.times.then(|| meta.mtime()),
            self.mode.then(|| meta.mode() & 0o777),
        )
    }
}

impl Client {
    /// Uploads exactly `size` bytes read from `source` to `remote`, unverified.
    /// Without `overwrite` an existing remote file makes this fail with `exists`.
    pub async fn send<R>(
        &mut self,
        source: &mut R,
        size: u64,
        remote: &str,
        overwrite: bool,
    ) -> Result<u64, Error>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let args = SendRequest {
            path: remote.to_owned(),
            size,
            overwrite,
            ..Default::default()
        };
        let during = format!("the upload of {remote}");
        let mut x = self.conn.begin()?;
        let ready: SendReady = send_start(&mut x, &args, &during).await?;
        let mut left = size - ready.offset;
        let mut buf = vec![0u8; left.min(CHUNK as u64) as usize];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match source.read(&mut buf[..want]).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("it ended {left} bytes early"),
                )),
                other => other,
            };
            // The server waits for bytes we cannot give: closing makes it drop the upload.
            let n = n.map_err(Error::local("-", "read"))?;
            x.send_chunk(&buf[..n], &during).await?;
            left -= n as u64;
        }
        send_finish(&mut x, &args, &during, None).await?;
        x.done();
        Ok(size)
    }

    /// Uploads the local file `local` to `remote`. With `verify` (the default) the file's
    /// BLAKE3 hash is computed first and declared, and the server stores the file only if what
    /// it received matches; with `resume`, an upload the server kept is continued.
    pub async fn send_file(
        &mut self,
        local: &Path,
        remote: &str,
        opts: SendOptions,
    ) -> Result<Transfer, Error> {
        let path = local.to_owned();
        let opened = spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a regular file",
                ));
            }
            Ok((file, meta))
        })
        .await;
        let (file, meta) = opened.map_err(Error::local(local, "read"))?;
        send_opened(&mut self.conn, file, &meta, local, remote, opts).await
    }

    /// Uploads a file found by [`walk`](crate::walk) (or named with [`Upload::named`]) like
    /// [`Client::send_file`] — but only if the file opened is still the one found: a file
    /// swapped for a symlink or replaced since is refused with a local error, and nothing of
    /// it is sent (the connection stays usable).
    pub async fn send_upload(
        &mut self,
        upload: &Upload,
        opts: SendOptions,
    ) -> Result<Transfer, Error> {
        let found = upload.clone();
        let opened = spawn_blocking(move || found.open()).await;
        let (file, meta) = opened.map_err(Error::local(&upload.local, "read"))?;
        send_opened(
            &mut self.conn,
            file,
            &meta,
            &upload.local,
            &upload.remote,
            opts,
        )
        .await
    }
}

/// Sends the request and reads the go-ahead.
async fn send_start(
    x: &mut Exchange<'_>,
    args: &SendRequest,
    during: &str,
) -> Result<SendReady, Error> {
    x.request(args).await?;
    let ready: SendReady = x.reply(during).await?;
    if ready.offset > args.size {
        return Err(Error::Protocol(format!(
            "go-ahead from offset {} past the size",
            ready.offset
        )));
    }
    Ok(ready)
}

/// Flushes the body and reads the final reply, checking it against `args` and `ours`.
async fn send_finish(
    x: &mut Exchange<'_>,
    args: &SendRequest,
    during: &str,
    ours: Option<&str>,
) -> Result<SendReply, Error> {
    x.flush(during).await?;
    let reply: SendReply = x.reply(during).await?;
    check_reply(&reply, args, ours)?;
    Ok(reply)
}

/// Checks a final reply to `args` against the hash sent (`ours`).
pub(crate) fn check_reply(
    reply: &SendReply,
    args: &SendRequest,
    ours: Option<&str>,
) -> Result<(), Error> {
    if reply.size != args.size {
        return Err(Error::Protocol(format!(
            "server stored {} of {} bytes",
            reply.size, args.size
        )));
    }
    if let (Some(ours), Some(theirs)) = (ours, reply.blake3.as_deref()) {
        if ours != theirs {
            return Err(Error::Integrity {
                what: args.path.clone(),
                expected: ours.into(),
                actual: theirs.into(),
            });
        }
    }
    Ok(())
}

/// Uploads the open regular file `file` (described by `meta`, found at `local`), after a
/// go-ahead.
async fn send_opened(
    conn: &mut Conn,
    file: std::fs::File,
    meta: &std::fs::Metadata,
    local: &Path,
    remote: &str,
    opts: SendOptions,
) -> Result<Transfer, Error> {
    let path = local.to_owned();
    let (mtime, mode) = opts.stamp(meta);
    let meta = meta.clone();
    // The version every byte sent must be of (checked again after the last one left).
    let version = Version::of(&file).map_err(Error::local(local, "read"))?;
    let (size, id) = spawn_blocking(move || upload_id(&path, &meta)).await;
    if size != version.size {
        return Err(Error::local(local, "read")(sft_io::changed()));
    }
    let mut spent = 0;
    if opts.delta || opts.compress.is_some() {
        let source = Source {
            file: Arc::new(file.try_clone().map_err(Error::local(local, "read"))?),
            version,
            local,
            mtime,
            mode,
            overwrite: opts.overwrite,
        };
        let level = conn.compress_level(opts.compress).await;
        if opts.delta && opts.overwrite && size >= MIN_DELTA_FILE && conn.caps().await.sign {
            match delta::send::send(conn, &source, remote, level).await? {
                Outcome::Done(t) => return Ok(t),
                Outcome::Whole(moved) => spent = moved,
            }
        }
        if let Some(level) = level {
            let mut t = delta::send::send_compressed(conn, &source, remote, level).await?;
            t.bytes_transferred += spent;
            return Ok(t);
        }
    }
    // Verified uploads hash while they send and give the hash in a trailer; an id derived
    // from the local file lets an interrupted one be resumed.
    let args = SendRequest {
        path: remote.to_owned(),
        size,
        overwrite: opts.overwrite,
        trailer: opts.verify,
        upload_id: opts.verify.then_some(id),
        resume: opts.resume && opts.verify,
        mtime,
        mode,
        ..Default::default()
    };
    let during = format!("the upload of {remote}");
    let mut x = conn.begin()?;
    let ready = send_start(&mut x, &args, &during).await?;
    x.progress_start(remote, Some(size), ready.offset);
    let body = size - ready.offset;
    // A rate limit paces every byte through this process, and TLS encrypts every byte in it:
    // no zero-copy then.
    let plain = x.writer.get_ref().tcp().is_some();
    let hash = if files::ZERO_COPY && body >= files::SENDFILE_MIN && x.rate.is_none() && plain {
        send_zero_copy(
            &mut x,
            file,
            ready.offset,
            version,
            opts.verify,
            local,
            &during,
        )
        .await?
    } else {
        let hasher = if opts.verify {
            // Resuming: the whole file's hash needs the part the server already holds.
            let offset = ready.offset;
            let reader = file.try_clone().map_err(Error::local(local, "read"))?;
            let prefix = spawn_blocking(move || files::hash_prefix(&reader, offset)).await;
            Some(prefix.map_err(Error::local(local, "read"))?)
        } else {
            None
        };
        // The version is confirmed after the last block is read: a file rewritten while
        // it is sent ends the upload with an error before the trailer, never "verified".
        let mut reader = FileSource::new(
            file,
            ready.offset,
            body,
            hasher,
            Some(version),
            &Pool::unbounded(),
        );
        while let Some(chunk) = reader.next().await {
            let chunk = chunk.map_err(Error::local(local, "read"))?;
            x.send_chunk(&chunk, &during).await?;
            x.progress_advance(chunk.len() as u64);
        }
        reader.hash()
    };
    let ours = hash.map(|h| h.to_hex().to_string());
    if let Some(hash) = &ours {
        let mut line = Vec::with_capacity(96);
        encode_trailer(
            &SendTrailer {
                blake3: hash.clone(),
            },
            &mut line,
        );
        x.send_chunk(&line, &during).await?;
    }
    let reply = send_finish(&mut x, &args, &during, ours.as_deref()).await;
    // The final reply was read (or refused): in step, whatever it says.
    let reply = match reply {
        Err(e @ (Error::Integrity { .. } | Error::Remote(_))) => return x.finish(Err(e)),
        other => other?,
    };
    x.done();
    Ok(Transfer {
        size,
        bytes_transferred: size - ready.offset + spent,
        resumed_from: ready.offset,
        blake3: reply.blake3.or(ours),
        ..Transfer::default()
    })
}

/// Sends bytes `offset..` of `file` with `sendfile(2)` (no copy through this process),
/// while a blocking task reads the whole file and hashes it (when verifying); then confirms
/// the file is still `version`, so a file rewritten meanwhile is never reported verified.
async fn send_zero_copy(
    x: &mut Exchange<'_>,
    file: std::fs::File,
    offset: u64,
    version: Version,
    verify: bool,
    local: &Path,
    during: &str,
) -> Result<Option<blake3::Hash>, Error> {
    let size = version.size;
    x.flush(during).await?;
    let hashing = match verify {
        true => {
            let reader = file.try_clone().map_err(Error::local(local, "read"))?;
            Some(spawn_blocking(move || files::hash_prefix(&reader, size)))
        }
        false => None,
    };
    let mut sent = offset;
    let result = {
        let progress = x.progress.clone();
        let mut pace = Pace::new(PaceRule {
            stall: x.stall.limit,
            min_rate: 0,
        });
        let Some(socket) = x.writer.get_ref().tcp() else {
            return Err(Error::Protocol("sendfile needs a plain connection".into()));
        };
        sft_io::sendfile(&file, &mut sent, size, socket, &mut pace, |n| {
            if let Some(p) = &progress {
                p.advance(n);
            }
        })
        .await
    };
    if let Err(e) = result {
        // A file that ended early is a local problem; anything else, the connection's.
        return Err(match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::local(local, "read")(e),
            _ => Error::cut_off(during)(e),
        });
    }
    let hash = match hashing {
        Some(task) => Some(task.await.map_err(Error::local(local, "read"))?.finalize()),
        None => None,
    };
    let confirmed = spawn_blocking(move || confirm(&file, &version, hash.as_ref())).await;
    confirmed.map_err(Error::local(local, "read"))?;
    Ok(hash)
}

/// A small file read whole, hashed, ready to go as an eager upload.
#[derive(Debug)]
pub(crate) struct Small {
    pub(crate) args: SendRequest,
    pub(crate) body: Vec<u8>,
}

/// Reads the small file `upload` whole (blocking), for an eager upload: its bytes, their hash,
/// and the request; `None` if it is no longer small. A file that changed while it was read is
/// an error (nothing is sent).
pub(crate) fn read_small(upload: &Upload, opts: SendOptions) -> io::Result<Option<Small>> {
    let (file, meta) = upload.open()?;
    if meta.len() > crate::get::SMALL {
        return Ok(None);
    }
    let version = Version::from_meta(&meta);
    let mut body = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut io::Read::take(&file, meta.len() + 1), &mut body)?;
    if body.len() as u64 != meta.len() {
        return Err(sft_io::changed());
    }
    let hash = blake3::hash(&body);
    confirm(&file, &version, Some(&hash))?;
    let (mtime, mode) = opts.stamp(&meta);
    Ok(Some(Small {
        args: SendRequest {
            path: upload.remote.clone(),
            size: meta.len(),
            overwrite: opts.overwrite,
            blake3: opts.verify.then(|| hash.to_hex().to_string()),
            eager: true,
            mtime,
            mode,
            ..Default::default()
        },
        body,
    }))
}

/// Names an upload of the local file at `path` so that the server can keep it for a resume:
/// a hash of the file's identity and version (path, device, inode, size, modification time),
/// stable while the file is unchanged and unguessable to other clients. Returns the size too.
fn upload_id(path: &Path, meta: &std::fs::Metadata) -> (u64, String) {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut h = blake3::Hasher::new();
    h.update(absolute.as_os_str().as_encoded_bytes());
    for n in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
    ] {
        h.update(&n.to_le_bytes());
    }
    (meta.len(), h.finalize().to_hex()[..32].to_owned())
}
