//! Looking at the served folder: `STAT` one path, `LIST` a folder entry by entry.

use crate::client::{Client, StreamItem};
use crate::error::Error;
use sft_protocol::verbs::{Entry, ListEnd, ListReply, ListRequest, StatReply, StatRequest};

impl Client {
    /// Describes `remote` (a file, folder or symlink; `""` for the served folder itself).
    pub async fn stat(&mut self, remote: &str) -> Result<Entry, Error> {
        self.request(&StatRequest {
            path: remote.to_owned(),
            hash: true,
        })
        .await?;
        let reply: StatReply = self.reply(&format!("STAT {remote}")).await?;
        Ok(reply.entry)
    }

    /// Starts listing the folder `remote` (`""` for the served folder), recursively or not.
    /// Entries then arrive one at a time from [`Listing::next`], so a huge tree is never held
    /// in memory.
    pub async fn list(&mut self, remote: &str, recursive: bool) -> Result<Listing<'_>, Error> {
        self.request(&ListRequest {
            path: remote.to_owned(),
            recursive,
            ..Default::default()
        })
        .await?;
        let reply: ListReply = self.reply(&format!("LIST {remote}")).await?;
        Ok(Listing {
            client: self,
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
    client: &'c mut Client,
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
        let item = self.client.stream_line(&during).await.inspect_err(|_| {
            self.finished = true;
        })?;
        let line = &self.client.line;
        let malformed = |e: serde_json::Error| Error::Protocol(format!("{during}: {e}"));
        let parsed = match item {
            StreamItem::Item => serde_json::from_slice::<Entry>(line).map(Some),
            StreamItem::End => serde_json::from_slice::<ListEnd>(line).map(|end| {
                self.end = Some(end);
                None
            }),
            StreamItem::Error(e) => {
                self.finished = true;
                return Err(Error::Remote(e));
            }
        };
        match parsed {
            Ok(entry) => {
                self.finished = entry.is_none();
                Ok(entry)
            }
            Err(e) => {
                self.finished = true;
                self.client.broken = true;
                Err(malformed(e))
            }
        }
    }

    /// The end line's summary (how many entries, how many left out), once `next` returned
    /// `None`.
    pub fn end(&self) -> Option<&ListEnd> {
        self.end.as_ref()
    }
}

impl Drop for Listing<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.client.broken = true;
        }
    }
}
