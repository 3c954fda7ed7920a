//! Many transfers over one connection, pipelined: several requests are on the wire before
//! their replies are read (PROTOCOL.md §1), so a folder of small files does not wait a round
//! trip per file. The server answers strictly in order.

use crate::client::{open_partial, Client, Transfer};
use crate::delta::V3;
use crate::error::Error;
use crate::get::{
    get_file_body, get_reply, has_partial, receive_small, GetOptions, SmallBody, SMALL,
};
use crate::partial::Partial;
use crate::send::{check_reply, read_small, SendOptions, Small};
use crate::walk::Upload;
use async_std::task::spawn_blocking;
use sft_protocol::delta::{Compress, MIN_DELTA_FILE};
use sft_protocol::limits::MIN_KEPT_PARTIAL;
use sft_protocol::verbs::{GetRequest, SendReply, SendRequest};
use sft_protocol::{encode_request, encode_request_v, ErrorCode};
use std::collections::VecDeque;
use std::path::PathBuf;

/// Downloads requested and not yet received, at most: enough to cover the bandwidth-delay
/// product of a long link with small files, whose requests stay within [`WINDOW_REQUEST_BYTES`].
const WINDOW: usize = 1024;
/// …their request bytes, at most (beyond one request): little enough that the server's
/// receive buffer always holds them, so writing requests can never wait for replies nobody
/// reads yet (the server answers strictly in order, PROTOCOL.md §1).
const WINDOW_REQUEST_BYTES: usize = 32 * 1024;
/// …and the body bytes they are known to bring (beyond the one being received), at least
/// while there are more to ask for: more than the bandwidth-delay product of the links sft is
/// used over (8 MiB: 50 ms at 1.3 Gbit/s, 200 ms at 330 Mbit/s), so that the server always has
/// the next reply to send when one ends, and the link never idles between files.
const WINDOW_BODY_BYTES: u64 = 8 << 20;

/// How full the window of pipelined downloads is: one request goes out per reply read, as
/// long as every bound holds.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Requests sent whose replies have not been read.
    pub(crate) requests: usize,
    /// Their request bytes.
    pub(crate) request_bytes: usize,
    /// The body bytes their sizes (as listed) announce.
    pub(crate) body_bytes: u64,
}

impl Window {
    /// Whether one more request may go out.
    pub(crate) fn has_room(&self) -> bool {
        self.requests == 0
            || (self.requests < WINDOW
                && self.request_bytes < WINDOW_REQUEST_BYTES
                && self.body_bytes < WINDOW_BODY_BYTES)
    }

    pub(crate) fn add(&mut self, request_bytes: usize, size: Option<u64>) {
        self.requests += 1;
        self.request_bytes += request_bytes;
        self.body_bytes += size.unwrap_or(0);
    }

    pub(crate) fn remove(&mut self, request_bytes: usize, size: Option<u64>) {
        self.requests -= 1;
        self.request_bytes -= request_bytes;
        self.body_bytes -= size.unwrap_or(0);
    }
}

/// A `GET` written before the replies to earlier requests were read (while a listing still
/// arrived, [`Listing::get_ahead`](crate::Listing::get_ahead)): its reply is owed to
/// [`Client::get_files_with`], which must be given its job first.
#[derive(Debug)]
pub(crate) struct Ahead {
    pub(crate) remote: String,
    pub(crate) verify: bool,
    /// The zstd level it asked for, if any.
    pub(crate) level: Option<i32>,
    pub(crate) request_bytes: usize,
    pub(crate) size: Option<u64>,
}

/// The body bytes a download from `offset` brings, as far as its listed size tells.
fn remaining(job: &GetJob, offset: u64) -> Option<u64> {
    job.size.map(|size| size.saturating_sub(offset))
}

/// Encodes the `GET` of `remote` from `offset` into `scratch`, compressed at `level` if given
/// (a version-3 request).
pub(crate) fn encode_get(
    scratch: &mut Vec<u8>,
    remote: &str,
    offset: u64,
    verify: bool,
    level: Option<i32>,
) {
    scratch.clear();
    let request = GetRequest {
        path: remote.to_owned(),
        offset: (offset > 0).then_some(offset),
        hash: verify,
        compress: level.map(|_| Compress::Zstd),
        level,
        ..GetRequest::default()
    };
    match level {
        Some(_) => encode_request_v(&request, V3, scratch),
        None => encode_request(&request, scratch),
    }
}

/// Eager uploads on the wire at once, at most: their replies (about a hundred bytes each)
/// always fit the socket buffers, so the server never waits to write one while this client
/// writes bodies — and it reads every body whole, so writing never waits on a reply either.
const SEND_WINDOW: usize = 256;
/// …and their body bytes, at most (beyond one upload): a bound on memory, and more than the
/// bandwidth-delay product of the links sft is used over, so that a long link stays full.
const SEND_WINDOW_BYTES: u64 = 8 << 20;
/// The window is topped up as soon as this many uploads have room in it (or the next file's
/// bytes do): small files are read a few at a time by one blocking task, not one by one.
const SEND_REFILL: usize = 8;

/// The protocol version from which a server takes eager uploads. An older one would ignore
/// `eager` and, refusing such an upload, read its body as the next request: eager uploads go
/// only to a server whose `HELLO` says it speaks this version.
const EAGER_PROTOCOL: u32 = 2;

/// Small downloads stored by one blocking task, at most (or 1 MiB of them).
const STORE_BATCH: usize = 32;

/// Outcomes of small downloads a blocking task is storing while the next ones arrive.
type Storing = Option<async_std::task::JoinHandle<Vec<(usize, Result<Transfer, Error>)>>>;

/// Starts storing the small downloads of `batch` (one blocking task), while the caller goes on
/// receiving; first waits for the batch stored before it, if any, and reports each of that one.
async fn store_batch(
    batch: &mut Vec<(usize, PathBuf, SmallBody)>,
    storing: &mut Storing,
    done: &mut impl FnMut(usize, Result<Transfer, Error>),
) {
    stored(storing, done).await;
    if batch.is_empty() {
        return;
    }
    let work = std::mem::take(batch);
    *storing = Some(spawn_blocking(move || {
        work.into_iter()
            .map(|(i, local, small)| (i, small.store(&local)))
            .collect::<Vec<_>>()
    }));
}

/// Waits for the batch being stored, if any, and reports each of it.
async fn stored(storing: &mut Storing, done: &mut impl FnMut(usize, Result<Transfer, Error>)) {
    if let Some(task) = storing.take() {
        for (i, result) in task.await {
            done(i, result);
        }
    }
}

/// Stores every small download received and reports each: before any other outcome, so
/// that outcomes come in order, and before returning.
async fn store_all(
    batch: &mut Vec<(usize, PathBuf, SmallBody)>,
    storing: &mut Storing,
    done: &mut impl FnMut(usize, Result<Transfer, Error>),
) {
    store_batch(batch, storing, done).await;
    stored(storing, done).await;
}

/// Whether `job` may replace its local file by delta (one `lstat`, in place, as for partials):
/// an existing regular file of at least [`MIN_DELTA_FILE`] bytes, with no partial download to
/// continue instead.
fn delta_candidate(job: &GetJob, resume: bool, opts: GetOptions) -> bool {
    opts.delta
        && !(resume && has_partial(&job.local))
        && std::fs::symlink_metadata(&job.local)
            .is_ok_and(|m| m.is_file() && m.len() >= MIN_DELTA_FILE)
}

/// One download of [`Client::get_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetJob {
    /// The file on the server.
    pub remote: String,
    /// Where it goes (written atomically, like [`Client::get_file`]).
    pub local: PathBuf,
    /// Continue from the partial download an earlier attempt left, if any.
    pub resume: bool,
    /// Its size as a listing gave it, if known: what sizes the window of requests in flight
    /// (by the bytes they bring, so that a long link stays full).
    pub size: Option<u64>,
}

impl Client {
    /// Downloads every job as [`Client::get_file`] would, pipelined: a new request goes out
    /// as each reply is read, keeping up to 8 MiB of the files' listed sizes (or 1024 requests,
    /// or 32 KiB of request lines) in flight, enough to keep a long link full.
    /// Each outcome goes to `done(index, result)` as soon as it is known, in the order the
    /// jobs are given (except a job whose partial no longer fits, which is asked for again
    /// from the start). A refusal (not found…) or a failed check of one file does not stop the
    /// others.
    ///
    /// When the connection breaks (cut off, a protocol error, a local write failure), the job
    /// it broke on gets that error and this returns the indices of the jobs that got no
    /// outcome, so that a caller can carry on over a new connection. Otherwise it returns an
    /// empty list.
    pub async fn get_files(
        &mut self,
        jobs: &[GetJob],
        verify: bool,
        done: impl FnMut(usize, Result<Transfer, Error>),
    ) -> Vec<usize> {
        let opts = GetOptions {
            verify,
            ..GetOptions::default()
        };
        self.get_files_with(jobs, opts, done).await
    }

    /// [`Client::get_files`] with every option of [`Client::get_file`] (its `resume` is each
    /// job's own). The downloads a listing requested ahead ([`Listing::get_ahead`]) must be
    /// the first jobs, in the same order, none resuming.
    ///
    /// [`Listing::get_ahead`]: crate::Listing::get_ahead
    pub async fn get_files_with(
        &mut self,
        jobs: &[GetJob],
        opts: GetOptions,
        mut done: impl FnMut(usize, Result<Transfer, Error>),
    ) -> Vec<usize> {
        // Requests sent whose replies are still to come: job, offset asked for, request bytes,
        // and the partial a resume continues (open and locked from the request on).
        let mut inflight: VecDeque<(usize, u64, usize, Option<Partial>)> = VecDeque::new();
        let mut window = Window::default();
        // Replies to requests sent ahead are owed: nothing may be asked before them.
        let level = match self.conn.ahead.is_empty() {
            true => self.conn.compress_level(opts.compress).await,
            false => self.conn.known_compress_level(opts.compress),
        };
        let ahead = std::mem::take(&mut self.conn.ahead);
        let matches = ahead.len() <= jobs.len()
            && ahead.iter().zip(jobs).all(|(a, j)| {
                a.remote == j.remote
                    && a.verify == opts.verify
                    && a.level == level
                    && a.size == j.size
                    && !j.resume
            });
        if !matches {
            // The replies on the wire answer other requests than these jobs'.
            self.conn.mark_broken();
            let e = Error::Protocol("requests sent ahead do not match the downloads".into());
            done(0, Err(e));
            return (1..jobs.len()).collect();
        }
        for (i, a) in ahead.iter().enumerate() {
            inflight.push_back((i, 0, a.request_bytes, None));
            window.add(a.request_bytes, a.size);
        }
        let mut queue: VecDeque<(usize, bool)> = jobs
            .iter()
            .enumerate()
            .skip(ahead.len())
            .map(|(i, j)| (i, j.resume))
            .collect();
        // Small downloads received and checked, stored together by one blocking task; every
        // other outcome waits for them, so that outcomes come in order.
        let mut batch: Vec<(usize, PathBuf, SmallBody)> = Vec::new();
        let mut batch_bytes = 0u64;
        let mut storing: Storing = None;
        let leftovers = |inflight: &VecDeque<(usize, u64, usize, Option<Partial>)>,
                         queue: &VecDeque<_>| {
            inflight
                .iter()
                .map(|&(i, ..)| i)
                .chain(queue.iter().map(|&(i, _)| i))
                .collect::<Vec<usize>>()
        };
        loop {
            // A file that replaces a local one by delta goes by itself, once the window is
            // empty: a delta is several exchanges of its own.
            if let Some(&(i, resume)) = queue.front().filter(|_| inflight.is_empty()) {
                if delta_candidate(&jobs[i], resume, opts) {
                    queue.pop_front();
                    store_all(&mut batch, &mut storing, &mut done).await;
                    batch_bytes = 0;
                    let job = &jobs[i];
                    let result = self
                        .get_file(&job.remote, &job.local, GetOptions { resume, ..opts })
                        .await;
                    done(i, result);
                    if self.conn.is_broken() {
                        return leftovers(&inflight, &queue);
                    }
                    continue;
                }
            }
            // Write what the window takes — once it is full, one request per reply read —
            // under one guard: a failed write breaks the connection.
            let Ok(mut x) = self.conn.begin() else {
                store_all(&mut batch, &mut storing, &mut done).await;
                return leftovers(&inflight, &queue);
            };
            let mut wrote = None;
            while window.has_room() {
                let Some((i, resume)) = queue.pop_front() else {
                    break;
                };
                let job = &jobs[i];
                if delta_candidate(job, resume, opts) {
                    // After the replies in flight.
                    queue.push_front((i, resume));
                    break;
                }
                let partial = match resume {
                    true => match open_partial(&job.local, true).await {
                        Ok(p) => Some(p),
                        Err(e) => {
                            // Nothing was asked for this one; the others go on.
                            done(i, Err(e));
                            continue;
                        }
                    },
                    false => None,
                };
                let offset = match partial.as_ref().map(Partial::len).transpose() {
                    Ok(held) => held.unwrap_or(0),
                    Err(e) => {
                        done(i, Err(Error::local(&job.local, "read")(e)));
                        continue;
                    }
                };
                encode_get(&mut x.scratch, &job.remote, offset, opts.verify, level);
                let len = x.scratch.len();
                let during = format!("the GET {} request", job.remote);
                if let Err(e) = x.queue_scratch(&during).await {
                    done(i, Err(e));
                    drop(x);
                    store_all(&mut batch, &mut storing, &mut done).await;
                    return leftovers(&inflight, &queue);
                }
                inflight.push_back((i, offset, len, partial));
                window.add(len, remaining(job, offset));
                wrote = Some(i);
            }
            if let Some(i) = wrote {
                let during = format!("the GET {} request", jobs[i].remote);
                if let Err(e) = x.flush(&during).await {
                    drop(x);
                    let (first, ..) = inflight.pop_front().expect("a request was written");
                    done(first, Err(e));
                    store_all(&mut batch, &mut storing, &mut done).await;
                    return leftovers(&inflight, &queue);
                }
            }
            x.done();
            drop(x);
            let Some((i, offset, len, partial)) = inflight.pop_front() else {
                store_all(&mut batch, &mut storing, &mut done).await;
                return Vec::new();
            };
            let job = &jobs[i];
            // Counted out before its body arrives: the window then asks for the next file
            // while this one is received.
            window.remove(len, remaining(job, offset));
            // One exchange: this job's reply, body and trailer.
            let Ok(mut x) = self.conn.begin() else {
                inflight.push_front((i, offset, len, partial));
                store_all(&mut batch, &mut storing, &mut done).await;
                return leftovers(&inflight, &queue);
            };
            let result = match get_reply(&mut x, &job.remote, offset).await {
                // The partial is longer than the file now is: ask again, from the start.
                Err(Error::Remote(e)) if offset > 0 && e.code == ErrorCode::BadRequest => {
                    queue.push_front((i, false));
                    continue;
                }
                Err(e) => Err(e),
                Ok(reply)
                    if partial.is_none()
                        && offset == 0
                        && reply.stream.is_none()
                        && reply.body_len() <= SMALL =>
                {
                    let size = reply.body_len();
                    match receive_small(&mut x, &job.remote, &job.local, reply, opts).await {
                        Ok(small) => {
                            drop(x);
                            batch.push((i, job.local.clone(), small));
                            batch_bytes += size;
                            if batch.len() >= STORE_BATCH || batch_bytes >= SMALL {
                                store_batch(&mut batch, &mut storing, &mut done).await;
                                batch_bytes = 0;
                            }
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                Ok(reply) => {
                    get_file_body(&mut x, &job.remote, &job.local, reply, opts, partial).await
                }
            };
            drop(x);
            store_all(&mut batch, &mut storing, &mut done).await;
            batch_bytes = 0;
            done(i, result);
            if self.conn.is_broken() {
                store_all(&mut batch, &mut storing, &mut done).await;
                return leftovers(&inflight, &queue);
            }
        }
    }

    /// Uploads every job as [`Client::send_upload`] would, pipelined: small files (up to
    /// 1 MiB) are read whole, hashed, and sent eagerly — each body right behind its request,
    /// with up to 64 of them in flight — to a server that takes eager uploads (protocol
    /// version 2, asked once with `HELLO`); larger files, and every file to an older server,
    /// go one at a time after a go-ahead, resumable. Each outcome goes to `done(index,
    /// result)` as soon as it is known. A refusal (`exists`…) or a local file that cannot be
    /// read (or changed while it was read) does not stop the others.
    ///
    /// When the connection breaks, the job it broke on gets that error and this returns the
    /// indices of the jobs that got no outcome (so that a caller can carry on over a new
    /// connection); otherwise an empty list.
    pub async fn send_files(
        &mut self,
        jobs: &[Upload],
        options: SendOptions,
        mut done: impl FnMut(usize, Result<Transfer, Error>),
    ) -> Vec<usize> {
        // Whether a file goes eagerly (read whole, behind its request): a small one with no
        // partial that resuming could continue (the server keeps none below MIN_KEPT_PARTIAL).
        let goes_eager = |size: u64| size <= SMALL && (!options.resume || size < MIN_KEPT_PARTIAL);
        let mut eager = self.takes_eager().await;
        // Eager uploads sent whose replies are still to come, and their body bytes.
        let mut inflight: VecDeque<(usize, SendRequest)> = VecDeque::new();
        let mut inflight_bytes = 0u64;
        // Jobs to send after a go-ahead, in order, once the window is drained.
        let mut later: VecDeque<usize> = VecDeque::new();
        let mut next = 0;
        loop {
            if self.conn.is_broken() {
                return inflight
                    .iter()
                    .map(|(i, _)| *i)
                    .chain(later)
                    .chain(next..jobs.len())
                    .collect();
            }
            // A batch of small files, read by one blocking task.
            let mut batch = Vec::new();
            let mut batch_bytes = 0;
            while eager && later.is_empty() && next < jobs.len() {
                let room = SEND_WINDOW - inflight.len() - batch.len();
                let size = jobs[next].size;
                if !goes_eager(size) {
                    break;
                }
                if room == 0
                    || (!(inflight.is_empty() && batch.is_empty())
                        && inflight_bytes + batch_bytes + size > SEND_WINDOW_BYTES)
                {
                    break;
                }
                batch.push(next);
                batch_bytes += size;
                next += 1;
            }
            if !batch.is_empty() {
                let uploads: Vec<(usize, Upload)> =
                    batch.iter().map(|&i| (i, jobs[i].clone())).collect();
                let read = spawn_blocking(move || {
                    uploads
                        .into_iter()
                        .map(|(i, u)| (i, read_small(&u, options)))
                        .collect::<Vec<_>>()
                })
                .await;
                let mut read = read.into_iter();
                let Ok(mut x) = self.conn.begin() else {
                    continue;
                };
                for (i, small) in read.by_ref() {
                    let small = match small {
                        Ok(Some(small)) => small,
                        Ok(None) => {
                            later.push_back(i);
                            continue;
                        }
                        Err(e) => {
                            done(i, Err(Error::local(&jobs[i].local, "read")(e)));
                            continue;
                        }
                    };
                    let Small { args, body } = small;
                    let during = format!("the upload of {}", args.path);
                    x.scratch.clear();
                    encode_request(&args, &mut x.scratch);
                    x.progress_start(&args.path, Some(args.size), 0);
                    let sent = match x.queue_scratch(&during).await {
                        Ok(()) => x.send_chunk(&body, &during).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        done(i, Err(e));
                        break;
                    }
                    x.progress_advance(args.size);
                    inflight_bytes += args.size;
                    inflight.push_back((i, args));
                }
                let flushed = match read.len() {
                    0 => x.flush("the uploads").await,
                    _ => Ok(()), // a write failed: the guard breaks the connection
                };
                match flushed {
                    Ok(()) if read.len() == 0 => x.done(),
                    _ => {
                        drop(x);
                        // The ones not written yet get no outcome here.
                        let rest: Vec<usize> = read.map(|(i, _)| i).collect();
                        return inflight
                            .iter()
                            .map(|(i, _)| *i)
                            .chain(rest)
                            .chain(later)
                            .chain(next..jobs.len())
                            .collect();
                    }
                }
                drop(x);
            }
            // Read replies: while there are more small files to send, until the window has
            // room for a few more (or the next one's bytes), so that it stays full; all of
            // them before a large file (or at the end).
            let more =
                eager && later.is_empty() && next < jobs.len() && goes_eager(jobs[next].size);
            let next_size = jobs.get(next).map_or(0, |j| j.size);
            while !inflight.is_empty()
                && (!more
                    || inflight.len() > SEND_WINDOW - SEND_REFILL
                    || inflight_bytes + next_size > SEND_WINDOW_BYTES)
            {
                let (i, args) = inflight.pop_front().expect("one is in flight");
                inflight_bytes -= args.size;
                let Ok(mut x) = self.conn.begin() else {
                    inflight.push_front((i, args));
                    break;
                };
                let during = format!("the upload of {}", args.path);
                let reply = x.reply::<SendReply>(&during).await;
                let result = match reply {
                    // A server that does not take eager uploads after all: the normal way.
                    Err(Error::Remote(e))
                        if e.code == ErrorCode::BadRequest && e.message.contains("eager") =>
                    {
                        eager = false;
                        later.push_back(i);
                        continue;
                    }
                    Err(e) => Err(e),
                    Ok(reply) => match check_reply(&reply, &args, args.blake3.as_deref()) {
                        Ok(()) => Ok(Transfer {
                            size: args.size,
                            bytes_transferred: args.size,
                            resumed_from: 0,
                            blake3: reply.blake3.or(args.blake3),
                            ..Transfer::default()
                        }),
                        Err(e) => Err(e),
                    },
                };
                if matches!(result, Ok(_) | Err(Error::Integrity { .. })) {
                    x.done();
                }
                drop(x);
                done(i, result);
                if self.conn.is_broken() {
                    break;
                }
            }
            if self.conn.is_broken() || !inflight.is_empty() {
                continue;
            }
            // The window is empty: files that go after a go-ahead, one at a time.
            if let Some(i) = later.pop_front().or_else(|| {
                (next < jobs.len() && (!eager || !goes_eager(jobs[next].size))).then(|| {
                    next += 1;
                    next - 1
                })
            }) {
                let result = self.send_upload(&jobs[i], options).await;
                done(i, result);
                continue;
            }
            if next >= jobs.len() && later.is_empty() {
                return Vec::new();
            }
        }
    }

    /// Whether the server takes eager uploads.
    async fn takes_eager(&mut self) -> bool {
        self.conn.caps().await.protocol >= EAGER_PROTOCOL
    }
}
