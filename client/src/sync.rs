//! What a folder sync asks the server before it transfers anything: listings whose entries
//! carry the hashes the server already knows (or all of them), a `STAT` that reads no file,
//! and the same BLAKE3 of a local file, computed in short blocking steps.

use crate::client::{Client, StreamItem};
use crate::error::Error;
use async_std::task::spawn_blocking;
use sft_protocol::verbs::{
    Entry, ListEnd, ListHash, ListReply, ListRequest, StatReply, StatRequest,
};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// How much of a local file one blocking step of [`hash_file`] reads: a pool thread is never
/// held long, whatever the file's size.
const HASH_STEP: u64 = 8 * 1024 * 1024;

impl Client {
    /// Like [`Client::list`], with `hash` saying which regular files' entries carry their
    /// BLAKE3 (servers that predate it send none: the entries then lack `blake3`).
    pub async fn list_hashed(
        &mut self,
        remote: &str,
        recursive: bool,
        hash: ListHash,
    ) -> Result<HashedListing<'_>, Error> {
        self.request(&ListRequest {
            path: remote.to_owned(),
            recursive,
            hash,
        })
        .await?;
        let reply: ListReply = self.reply(&format!("LIST {remote}")).await?;
        Ok(HashedListing {
            client: self,
            path: reply.path,
            end: None,
            finished: false,
        })
    }

    /// Describes `remote` from its metadata alone: unlike [`Client::stat`], the server reads
    /// no file to hash it (the entry's `blake3` is then absent).
    pub async fn stat_quick(&mut self, remote: &str) -> Result<Entry, Error> {
        self.request(&StatRequest {
            path: remote.to_owned(),
            hash: false,
        })
        .await?;
        let reply: StatReply = self.reply(&format!("STAT {remote}")).await?;
        Ok(reply.entry)
    }
}

/// A `LIST` in progress from [`Client::list_hashed`]; read it to its end (dropping it earlier
/// leaves the connection unusable), like a [`Listing`](crate::Listing).
#[derive(Debug)]
pub struct HashedListing<'c> {
    client: &'c mut Client,
    path: String,
    end: Option<ListEnd>,
    finished: bool,
}

impl HashedListing<'_> {
    /// The listed folder as the server resolved it (`.` for the served folder).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The next entry, or `None` once the listing is complete; see
    /// [`Listing::next`](crate::Listing::next).
    pub async fn next(&mut self) -> Result<Option<Entry>, Error> {
        if self.finished {
            return Ok(None);
        }
        let during = format!("the listing of {}", self.path);
        let item = self.client.stream_line(&during).await.inspect_err(|_| {
            self.finished = true;
        })?;
        let line = &self.client.line;
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
                Err(Error::Protocol(format!("{during}: {e}")))
            }
        }
    }

    /// The end line's summary, once `next` returned `None`.
    pub fn end(&self) -> Option<&ListEnd> {
        self.end.as_ref()
    }
}

impl Drop for HashedListing<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.client.broken = true;
        }
    }
}

/// The BLAKE3 of the local file at `path` (lower-case hex), read in steps of a few MiB, each a
/// short blocking task. Without `follow`, a symlink at `path` is refused (`O_NOFOLLOW`), as is
/// anything but a regular file.
pub async fn hash_file(path: &Path, follow: bool) -> io::Result<String> {
    let at = path.to_owned();
    let file = spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let mut flags = rustix::fs::OFlags::NONBLOCK;
        if !follow {
            flags |= rustix::fs::OFlags::NOFOLLOW;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(at)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok::<File, io::Error>(file)
    })
    .await?;
    let mut state = Some((file, blake3::Hasher::new()));
    loop {
        let (file, mut hasher) = state.take().expect("put back after each step");
        let (file, hasher, done) = spawn_blocking(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut read = 0u64;
            let mut file = file;
            while read < HASH_STEP {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok::<_, io::Error>((file, hasher, true));
                }
                hasher.update(&buf[..n]);
                read += n as u64;
            }
            Ok((file, hasher, false))
        })
        .await?;
        if done {
            return Ok(hasher.finalize().to_hex().to_string());
        }
        state = Some((file, hasher));
    }
}
