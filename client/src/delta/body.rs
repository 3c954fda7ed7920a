//! Reply bodies of version 3: sized, or chunked with zstd-compressed chunks (PROTOCOL.md §8.3),
//! read as one stream of the file's bytes whichever they are.

use crate::conn::Exchange;
use crate::error::Error;
use async_std::task::spawn_blocking;
use sft_io::zblock::BlockDecompressor;
use sft_protocol::delta::{decode_chunk, Chunk, ChunkKinds};
use sft_protocol::verbs::GetReply;

/// The body of one reply, being read.
#[derive(Debug)]
pub(crate) struct ReplyBody {
    /// Raw bytes still to come of a sized body; `None`: chunked.
    left: Option<u64>,
    /// The current decompressed chunk of a chunked body, and how much of it was taken.
    data: Vec<u8>,
    pos: usize,
    /// Bytes of the current raw chunk still on the wire: read straight into the caller's
    /// buffer, never through `data`.
    raw_left: u64,
    frame: Vec<u8>,
    zstd: Option<BlockDecompressor>,
    /// The terminator's hash, once it was read.
    ended: Option<Option<String>>,
    /// Bytes of the body as they crossed the network (chunk headers included).
    pub(crate) wire: u64,
    /// Whether any chunk came compressed.
    pub(crate) compressed: bool,
}

impl ReplyBody {
    /// The body announced by `reply`: chunked when it says `"stream":"chunked"`.
    pub(crate) fn of(reply: &GetReply) -> ReplyBody {
        ReplyBody {
            left: reply.stream.is_none().then(|| reply.body_len()),
            data: Vec::new(),
            pos: 0,
            raw_left: 0,
            frame: Vec::new(),
            zstd: None,
            ended: None,
            wire: 0,
            compressed: false,
        }
    }

    /// Fills `out` with the body's next bytes; a body that ends first is a protocol error.
    pub(crate) async fn fill(
        &mut self,
        x: &mut Exchange<'_>,
        out: &mut [u8],
        during: &str,
    ) -> Result<(), Error> {
        if let Some(left) = &mut self.left {
            if (out.len() as u64) > *left {
                return Err(Error::Protocol(format!("{during}: the body is too short")));
            }
            x.fill(out, during).await.map_err(|(_, e)| e)?;
            *left -= out.len() as u64;
            self.wire += out.len() as u64;
            return Ok(());
        }
        let mut at = 0;
        while at < out.len() {
            if self.ready(x, during).await? == 0 {
                return Err(Error::Protocol(format!(
                    "{during}: the body ended {} bytes early",
                    out.len() - at
                )));
            }
            let want = out.len() - at;
            if self.raw_left > 0 {
                let n = self.raw_left.min(want as u64) as usize;
                x.fill(&mut out[at..at + n], during)
                    .await
                    .map_err(|(_, e)| e)?;
                self.raw_left -= n as u64;
                at += n;
                continue;
            }
            let n = (self.data.len() - self.pos).min(want);
            out[at..at + n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            at += n;
        }
        Ok(())
    }

    /// How many bytes can be taken now without reading another chunk header (at most one
    /// block of a sized body); reads the next chunk when the current one is used up. 0 at the
    /// end of the body.
    pub(crate) async fn ready(
        &mut self,
        x: &mut Exchange<'_>,
        during: &str,
    ) -> Result<usize, Error> {
        if let Some(left) = self.left {
            return Ok(left.min(crate::files::CHUNK as u64) as usize);
        }
        loop {
            if self.raw_left > 0 {
                return Ok(self.raw_left as usize);
            }
            if self.pos < self.data.len() {
                return Ok(self.data.len() - self.pos);
            }
            if !self.load(x, during).await? {
                return Ok(0);
            }
        }
    }

    /// The next piece of the body, as it arrived (a chunk, decompressed; at most one block of
    /// a sized body); `None` at its end.
    pub(crate) async fn next(
        &mut self,
        x: &mut Exchange<'_>,
        during: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        let n = self.ready(x, during).await?;
        if n == 0 {
            return Ok(None);
        }
        let mut block = vec![0u8; n];
        self.fill(x, &mut block, during).await?;
        Ok(Some(block))
    }

    /// Reads what is left of the body up to its end, which must come now: a sized body must be
    /// used up, a chunked one's terminator is read. Returns the terminator's hash, if any.
    pub(crate) async fn finish(
        &mut self,
        x: &mut Exchange<'_>,
        during: &str,
    ) -> Result<Option<String>, Error> {
        match self.left {
            Some(0) => Ok(None),
            Some(left) => Err(Error::Protocol(format!(
                "{during}: {left} body bytes more than asked for"
            ))),
            None if self.pos < self.data.len() || self.raw_left > 0 => Err(Error::Protocol(
                format!("{during}: the body is longer than asked for"),
            )),
            None => match self.load(x, during).await? {
                true => Err(Error::Protocol(format!(
                    "{during}: the body is longer than asked for"
                ))),
                false => Ok(self.ended.clone().flatten()),
            },
        }
    }

    /// Reads and drops the rest of the body (to stay in step after giving up on it).
    pub(crate) async fn skip(&mut self, x: &mut Exchange<'_>, during: &str) -> Result<(), Error> {
        while self.next(x, during).await?.is_some() {}
        Ok(())
    }

    /// Reads the next chunk of a chunked body into `data`; `false` at the terminator.
    async fn load(&mut self, x: &mut Exchange<'_>, during: &str) -> Result<bool, Error> {
        if self.ended.is_some() {
            return Ok(false);
        }
        x.read_line(during).await?;
        self.wire += x.line.len() as u64;
        let kinds = ChunkKinds {
            zstd: true,
            copy: false,
        };
        let chunk = decode_chunk(&x.line, kinds)
            .map_err(|e| Error::Protocol(format!("{during}: a bad chunk header: {}", e.message)))?;
        self.pos = 0;
        match chunk {
            Chunk::End(hash) => {
                self.data.clear();
                self.ended = Some(hash);
                Ok(false)
            }
            Chunk::Raw(size) => {
                self.data.clear();
                self.raw_left = size;
                self.wire += size;
                Ok(true)
            }
            Chunk::Zstd { size, raw } => {
                self.frame.resize(size as usize, 0);
                x.fill(&mut self.frame, during).await.map_err(|(_, e)| e)?;
                self.wire += size;
                self.compressed = true;
                let mut z = match self.zstd.take() {
                    Some(z) => z,
                    None => BlockDecompressor::new().map_err(|e| {
                        Error::Protocol(format!("{during}: no zstd decompressor: {e}"))
                    })?,
                };
                let frame = std::mem::take(&mut self.frame);
                let mut data = std::mem::take(&mut self.data);
                let (z, frame, data, done) = spawn_blocking(move || {
                    let done = z.decompress(&frame, raw as usize, &mut data);
                    (z, frame, data, done)
                })
                .await;
                (self.zstd, self.frame, self.data) = (Some(z), frame, data);
                done.map_err(|e| {
                    Error::Protocol(format!("{during}: bad data from the server: {e}"))
                })?;
                Ok(true)
            }
            Chunk::Copy { .. } => unreachable!("copies are refused by the kinds"),
        }
    }
}
