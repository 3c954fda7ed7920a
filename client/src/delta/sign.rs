//! `SIGN` (PROTOCOL.md §8.2): asking the server for the signature of its version of a file.

use super::plan::locate;
use crate::conn::Exchange;
use crate::conn::StreamItem;
use crate::error::Error;
use sft_io::chunker::Segment;
use sft_protocol::delta::{decode_sig, Entry, Range, SigLine, SignEnd, SignReply, SignRequest};
use sft_protocol::encode_request_v;

/// The protocol version of the requests of a delta.
pub(crate) const V3: u32 = 3;

/// The level-1 signature of the server's file.
#[derive(Debug)]
pub(crate) struct Signature {
    /// The reply line: the file's size, time and bits as the server opened it.
    pub(crate) reply: SignReply,
    /// Its segments, in file order.
    pub(crate) segments: Vec<Segment>,
    /// The whole file's BLAKE3 hash.
    pub(crate) blake3: String,
    /// Bytes the stream took on the wire.
    pub(crate) wire: u64,
}

/// Asks for the level-1 signature of `remote`.
pub(crate) async fn whole(x: &mut Exchange<'_>, remote: &str) -> Result<Signature, Error> {
    let request = SignRequest {
        path: remote.to_owned(),
        ..SignRequest::default()
    };
    x.scratch.clear();
    encode_request_v(&request, V3, &mut x.scratch);
    x.write_scratch("SIGN").await?;
    let during = format!("the signature of {remote}");
    let (reply, entries, end, wire) = read(x, 1, &during).await?;
    let segments = locate(&entries, 0);
    let covered: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
    if covered != reply.file_size {
        return Err(Error::Protocol(format!(
            "{during}: segments of {covered} bytes for a file of {}",
            reply.file_size
        )));
    }
    let Some(blake3) = end.blake3 else {
        return Err(Error::Protocol(format!(
            "{during}: no \"blake3\" at its end"
        )));
    };
    Ok(Signature {
        reply,
        segments,
        blake3,
        wire,
    })
}

/// Asks for the level-0 signatures of `segments` (each one segment of the file whose level-1
/// signature hashed to `blake3`), in requests of at most 256 ranges; returns their chunks,
/// located in the file, and the bytes the streams took.
pub(crate) async fn chunks(
    x: &mut Exchange<'_>,
    remote: &str,
    segments: &[Segment],
    blake3: &str,
) -> Result<(Vec<Segment>, u64), Error> {
    let ranges: Vec<Range> = segments
        .iter()
        .map(|s| [s.offset, u64::from(s.entry.len)])
        .collect();
    let mut request = SignRequest {
        path: remote.to_owned(),
        ranges: Some(Vec::new()),
        blake3: Some(blake3.to_owned()),
    };
    x.scratch.clear();
    encode_request_v(&request, V3, &mut x.scratch);
    let base = x.scratch.len();
    let during = format!("the chunk signatures of {remote}");
    let mut found = Vec::new();
    let mut wire = 0;
    for batch in super::plan::batches(&ranges, base) {
        x.scratch.clear();
        request.ranges = Some(batch);
        encode_request_v(&request, V3, &mut x.scratch);
        x.write_scratch("SIGN").await?;
        let (_, entries, _, w) = read(x, 0, &during).await?;
        wire += w;
        // Each range's entries add up to its length, in order.
        let mut entries = entries.into_iter();
        for &[offset, len] in request.ranges.as_deref().unwrap_or_default() {
            let mut got: Vec<Entry> = Vec::new();
            let mut sum = 0u64;
            while sum < len {
                let Some(e) = entries.next() else {
                    return Err(Error::Protocol(format!(
                        "{during}: too few entries for the range [{offset},{len}]"
                    )));
                };
                sum += u64::from(e.len);
                got.push(e);
            }
            if sum != len {
                return Err(Error::Protocol(format!(
                    "{during}: entries of {sum} bytes for the range [{offset},{len}]"
                )));
            }
            found.extend(locate(&got, offset));
        }
        if entries.next().is_some() {
            return Err(Error::Protocol(format!(
                "{during}: more entries than ranges"
            )));
        }
    }
    Ok((found, wire))
}

/// Reads a `SIGN` reply and its stream, expecting `level`: the reply, the entries, the end
/// line and the bytes on the wire. An error line ends it in step, as `Error::Remote`.
async fn read(
    x: &mut Exchange<'_>,
    level: u8,
    during: &str,
) -> Result<(SignReply, Vec<Entry>, SignEnd, u64), Error> {
    let reply: SignReply = x.reply(during).await?;
    let mut wire = x.line.len() as u64;
    if reply.level != level {
        return Err(Error::Protocol(format!(
            "{during}: a level-{} signature where level {level} was asked for",
            reply.level
        )));
    }
    let mut entries = Vec::new();
    loop {
        let item = x.stream_line(during).await?;
        wire += x.line.len() as u64;
        let bad = |e: String| Error::Protocol(format!("{during}: {e}"));
        match item {
            StreamItem::Item => {
                let line: SigLine =
                    serde_json::from_slice(&x.line).map_err(|e| bad(e.to_string()))?;
                decode_sig(&line.sig, &mut entries).map_err(|e| bad(e.message))?;
            }
            StreamItem::End => {
                let end: SignEnd =
                    serde_json::from_slice(&x.line).map_err(|e| bad(e.to_string()))?;
                if end.count != entries.len() as u64 {
                    return Err(bad(format!(
                        "its end counts {} entries, {} came",
                        end.count,
                        entries.len()
                    )));
                }
                x.done();
                return Ok((reply, entries, end, wire));
            }
            StreamItem::Error(e) => {
                x.done();
                return Err(Error::Remote(e));
            }
        }
    }
}
