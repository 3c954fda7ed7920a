//! Many downloads over one connection, pipelined: several GET requests are on the wire before
//! their replies are read (PROTOCOL.md §1), so a folder of small files does not wait a round
//! trip per file. The server answers strictly in order.

use crate::client::{open_partial, Client, Transfer};
use crate::error::Error;
use crate::partial::Partial;
use futures::AsyncWriteExt;
use sft_protocol::verbs::GetRequest;
use sft_protocol::{encode_request, ErrorCode};
use std::collections::VecDeque;
use std::path::PathBuf;

/// Requests on the wire at once, at most…
const WINDOW: usize = 32;
/// …and their bytes, at most (beyond one request): little enough that the server's receive
/// buffers always hold them, so writing requests can never wait for replies nobody reads yet.
const WINDOW_BYTES: usize = 16 * 1024;

/// One download of [`Client::get_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetJob {
    /// The file on the server.
    pub remote: String,
    /// Where it goes (written atomically, like [`Client::get_file`]).
    pub local: PathBuf,
    /// Continue from the partial download an earlier attempt left, if any.
    pub resume: bool,
}

impl Client {
    /// Downloads every job as [`Client::get_file`] would, with up to 32 requests in flight.
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
        mut done: impl FnMut(usize, Result<Transfer, Error>),
    ) -> Vec<usize> {
        let mut queue: VecDeque<(usize, bool)> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (i, j.resume))
            .collect();
        // Requests sent whose replies are still to come: job, offset asked for, request bytes,
        // and the partial a resume continues (open and locked from the request on).
        let mut inflight: VecDeque<(usize, u64, usize, Option<Partial>)> = VecDeque::new();
        let mut inflight_bytes = 0;
        let leftovers = |inflight: &VecDeque<(usize, u64, usize, Option<Partial>)>,
                         queue: &VecDeque<_>| {
            inflight
                .iter()
                .map(|&(i, ..)| i)
                .chain(queue.iter().map(|&(i, _)| i))
                .collect::<Vec<usize>>()
        };
        if self.broken {
            return leftovers(&inflight, &queue);
        }
        loop {
            let mut wrote = None;
            while inflight.len() < WINDOW && (inflight.is_empty() || inflight_bytes < WINDOW_BYTES)
            {
                let Some((i, resume)) = queue.pop_front() else {
                    break;
                };
                let job = &jobs[i];
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
                self.scratch.clear();
                encode_request(
                    &GetRequest {
                        path: job.remote.clone(),
                        offset: (offset > 0).then_some(offset),
                        hash: verify,
                    },
                    &mut self.scratch,
                );
                let len = self.scratch.len();
                let during = format!("the GET {} request", job.remote);
                let written = self.writer.write_all(&self.scratch).await;
                if let Err(e) = written {
                    self.broken = true;
                    done(i, Err(Error::cut_off(during)(e)));
                    return leftovers(&inflight, &queue);
                }
                inflight.push_back((i, offset, len, partial));
                inflight_bytes += len;
                wrote = Some(i);
            }
            if let Some(i) = wrote {
                if let Err(e) = self.writer.flush().await {
                    self.broken = true;
                    let during = format!("the GET {} request", jobs[i].remote);
                    let (first, ..) = inflight.pop_front().expect("a request was written");
                    done(first, Err(Error::cut_off(during)(e)));
                    return leftovers(&inflight, &queue);
                }
            }
            let Some((i, offset, len, partial)) = inflight.pop_front() else {
                return Vec::new();
            };
            inflight_bytes -= len;
            let job = &jobs[i];
            let result = match self.get_reply(&job.remote, offset).await {
                // The partial is longer than the file now is: ask again, from the start.
                Err(Error::Remote(e)) if offset > 0 && e.code == ErrorCode::BadRequest => {
                    queue.push_front((i, false));
                    continue;
                }
                Err(e) => Err(e),
                Ok(reply) => {
                    self.get_file_body(&job.remote, &job.local, reply, verify, partial)
                        .await
                }
            };
            done(i, result);
            if self.broken {
                return leftovers(&inflight, &queue);
            }
        }
    }
}
