//! The downloads of `get -r` (with what the listing said of each file), kept in an unlinked temporary file instead of in memory: a
//! listing of any length (a hostile server can send millions of names) costs the same few
//! hundred KiB, read back a batch at a time.

use super::mirror::{Gap, Seen};
use sft_client::{Entry, Kind as EntryKind};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a record asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Create the folder `base/rel`.
    Folder,
    /// Download `remote` to `base/rel`.
    File,
}

/// One planned step.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) kind: Kind,
    /// The local folder the download goes into (nothing below it is followed).
    pub(crate) base: PathBuf,
    /// The checked relative path below `base`.
    pub(crate) rel: PathBuf,
    /// The remote path (files).
    pub(crate) remote: String,
    /// What the listing said of the remote file (size, time, hash when it had one): what a
    /// sync compares with the local copy. `None` when the file was named, not listed.
    pub(crate) listed: Option<Entry>,
}

/// Records written one by one, then read back from the start (as often as needed).
#[derive(Debug)]
pub(crate) struct Plan {
    out: BufWriter<File>,
    /// Files planned.
    pub(crate) files: usize,
    /// With `--delete`: every name the listings held, whatever its kind.
    pub(crate) seen: Option<Seen>,
    /// With `--delete`: the first thing a listing could not tell.
    pub(crate) gap: Option<Gap>,
}

impl Plan {
    pub(crate) fn new() -> io::Result<Plan> {
        Ok(Plan {
            out: BufWriter::new(tempfile::tempfile()?),
            files: 0,
            seen: None,
            gap: None,
        })
    }

    /// The same, keeping what `--delete` needs to know (when `yes`).
    pub(crate) fn for_delete(self, yes: bool) -> Plan {
        Plan {
            seen: yes.then(Seen::default),
            ..self
        }
    }

    /// A listing held `rel` (any kind): `--delete` keeps it.
    pub(crate) fn saw(&mut self, rel: &Path) {
        if let Some(seen) = &mut self.seen {
            seen.insert(rel);
        }
    }

    /// A listing could not tell everything: `--delete` removes nothing.
    pub(crate) fn gap(&mut self, gap: Gap) {
        self.gap.get_or_insert(gap);
    }

    pub(crate) fn push(
        &mut self,
        kind: Kind,
        base: &Path,
        rel: &Path,
        remote: &str,
        listed: Option<&Entry>,
    ) -> io::Result<()> {
        self.out.write_all(&[match kind {
            Kind::Folder => b'D',
            Kind::File => b'F',
        }])?;
        for part in [
            base.as_os_str().as_bytes(),
            rel.as_os_str().as_bytes(),
            remote.as_bytes(),
        ] {
            self.out.write_all(&(part.len() as u64).to_le_bytes())?;
            self.out.write_all(part)?;
        }
        match listed {
            None => self.out.write_all(&[0])?,
            Some(entry) => {
                let hash = entry.blake3.as_deref().unwrap_or("");
                self.out.write_all(&[1])?;
                self.out.write_all(&entry.size.to_le_bytes())?;
                self.out.write_all(&entry.mtime.to_le_bytes())?;
                self.out.write_all(&(hash.len() as u64).to_le_bytes())?;
                self.out.write_all(hash.as_bytes())?;
            }
        }
        if kind == Kind::File {
            self.files += 1;
        }
        Ok(())
    }

    /// Every record, from the first.
    pub(crate) fn read(&mut self) -> io::Result<Records> {
        self.out.flush()?;
        let mut file = self.out.get_ref().try_clone()?;
        file.rewind()?;
        Ok(Records(BufReader::new(file)))
    }
}

/// Reads a [`Plan`] back.
#[derive(Debug)]
pub(crate) struct Records(BufReader<File>);

impl Records {
    fn part(&mut self) -> io::Result<Vec<u8>> {
        let mut part = vec![0u8; self.u64()? as usize];
        self.0.read_exact(&mut part)?;
        Ok(part)
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut n = [0u8; 8];
        self.0.read_exact(&mut n)?;
        Ok(u64::from_le_bytes(n))
    }

    fn listed(&mut self, remote: &str) -> io::Result<Option<Entry>> {
        let mut flag = [0u8];
        self.0.read_exact(&mut flag)?;
        if flag[0] == 0 {
            return Ok(None);
        }
        let size = self.u64()?;
        let mtime = self.u64()? as i64;
        let hash = String::from_utf8(self.part()?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Some(Entry {
            name: remote.to_owned(),
            kind: EntryKind::File,
            size,
            mtime,
            blake3: (!hash.is_empty()).then_some(hash),
            mode: None,
            error: None,
        }))
    }
}

impl Iterator for Records {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<io::Result<Record>> {
        let mut kind = [0u8];
        match self.0.read(&mut kind) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(e)),
        }
        let kind = if kind[0] == b'D' {
            Kind::Folder
        } else {
            Kind::File
        };
        let read = (|| {
            let base = PathBuf::from(std::ffi::OsStr::from_bytes(&self.part()?));
            let rel = PathBuf::from(std::ffi::OsStr::from_bytes(&self.part()?));
            let remote = String::from_utf8(self.part()?)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let listed = self.listed(&remote)?;
            Ok(Record {
                kind,
                base,
                rel,
                remote,
                listed,
            })
        })();
        Some(read)
    }
}
