//! Looking at the served folder: `STAT` one path, `LIST` a folder entry by entry.

use crate::client::Client;
use crate::conn::{Exchange, StreamItem};
use crate::error::Error;
use crate::many::{encode_get, Ahead, GetJob, Window};
use sft_protocol::verbs::{
    Entry, ListEnd, ListHash, ListReply, ListRequest, StatReply, StatRequest,
};

impl Client {
    /// Describes `remote` (a file, folder or symlink; `""` for the served folder itself).
    pub async fn stat(&mut self, remote: &str) -> Result<Entry, Error> {
        self.stat_with(remote, true).await
    }

    /// Describes `remote` from its metadata alone: unlike [`Client::stat`], the server reads
    /// no file to hash it (the entry's `blake3` is then absent).
    pub async fn stat_quick(&mut self, remote: &str) -> Result<Entry, Error> {
        self.stat_with(remote, false).await
    }

    async fn stat_with(&mut self, remote: &str, hash: bool) -> Result<Entry, Error> {
        let request = StatRequest {
            path: remote.to_owned(),
            hash,
        };
        let reply: StatReply = self.conn.ask(&request, &format!("STAT {remote}")).await?;
        Ok(reply.entry)
    }

    /// Starts listing the folder `remote` (`""` for the served folder), recursively or not.
    /// Entries then arrive one at a time from [`Listing::next`], so a huge tree is never held
    /// in memory.
    pub async fn list(&mut self, remote: &str, recursive: bool) -> Result<Listing<'_>, Error> {
        self.list_with(remote, recursive, ListHash::None).await
    }

    /// Like [`Client::list`], with `hash` saying which regular files' entries carry their
    /// BLAKE3 (what a folder sync compares; servers that predate it send none).
    pub async fn list_with(
        &mut self,
        remote: &str,
        recursive: bool,
        hash: ListHash,
    ) -> Result<Listing<'_>, Error> {
        let mut x = self.conn.begin()?;
        x.request(&ListRequest {
            path: remote.to_owned(),
            recursive,
            hash,
        })
        .await?;
        let reply: ListReply = x.reply(&format!("LIST {remote}")).await?;
        Ok(Listing {
            x,
            path: reply.path,
            end: None,
            finished: false,
        })
    }
}

/// A `LIST` in progress. Read it to its end: dropping it earlier leaves the rest of the stream
/// on the wire, so the connection is then unusable.
#[derive(Debug)]
pub struct Listing<'c> {
    /// The exchange, done once the stream ended in step.
    x: Exchange<'c>,
    path: String,
    end: Option<ListEnd>,
    finished: bool,
}

impl Listing<'_> {
    /// The listed folder as the server resolved it (`.` for the served folder).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The next entry, or `None` once the listing is complete. A server that failed midway
    /// (a folder removed while it was read…) ends the listing with `Error::Remote`; the
    /// connection stays usable.
    pub async fn next(&mut self) -> Result<Option<Entry>, Error> {
        if self.finished {
            return Ok(None);
        }
        let during = format!("the listing of {}", self.path);
        let item = self.x.stream_line(&during).await.inspect_err(|_| {
            self.finished = true;
        })?;
        let line = &self.x.line;
        let malformed = |e: serde_json::Error| Error::Protocol(format!("{during}: {e}"));
        let parsed = match item {
            StreamItem::Item => serde_json::from_slice::<Entry>(line).map(Some),
            StreamItem::End => serde_json::from_slice::<ListEnd>(line).map(|end| {
                self.end = Some(end);
                None
            }),
            StreamItem::Error(e) => {
                self.finished = true;
                self.x.done();
                return Err(Error::Remote(e));
            }
        };
        match parsed {
            Ok(entry) => {
                if entry.is_none() {
                    self.finished = true;
                    self.x.done();
                }
                Ok(entry)
            }
            Err(e) => {
                self.finished = true;
                Err(malformed(e))
            }
        }
    }

    /// Requests the download of `job` now, while the listing still arrives, if the window
    /// of requests in flight has room (else returns `false`, and nothing was sent): its reply
    /// follows the listing's end, so the server has it to send as soon as the listing ends,
    /// without waiting a round trip. The job must then be given, first and in the order
    /// requested, to [`Client::get_files_with`] (with `verify` and `compress` as its options
    /// say; `compress` counts only if the server already said it compresses), once the
    /// listing is read to its end; no other request may go on the connection before. A job
    /// that resumes a partial cannot be requested ahead.
    pub async fn get_ahead(
        &mut self,
        job: &GetJob,
        verify: bool,
        compress: Option<i32>,
    ) -> Result<bool, Error> {
        let mut window = Window::default();
        for a in &self.x.ahead {
            window.add(a.request_bytes, a.size);
        }
        if job.resume || !window.has_room() {
            return Ok(false);
        }
        let conn = &mut *self.x;
        let level = conn.known_compress_level(compress);
        encode_get(&mut conn.scratch, &job.remote, 0, verify, level);
        let line = std::mem::take(&mut conn.scratch);
        let during = format!("the GET {} request", job.remote);
        let written = conn.write_buffered(&line, &during).await;
        conn.scratch = line;
        if let Err(e) = written {
            self.finished = true;
            conn.mark_broken();
            return Err(e);
        }
        conn.ahead.push_back(Ahead {
            remote: job.remote.clone(),
            verify,
            level,
            request_bytes: conn.scratch.len(),
            size: job.size,
        });
        Ok(true)
    }

    /// The end line's summary (how many entries, how many left out), once `next` returned
    /// `None`.
    pub fn end(&self) -> Option<&ListEnd> {
        self.end.as_ref()
    }
}
