//! Version 3's delta transfers and compressed bodies (PROTOCOL.md §8): the signature format,
//! the chunk kinds of a version-3 chunked body, and their limits.
//!
//! ```text
//! > {"verb":"SIGN","v":3,"path":"vm/disk.img"}
//! < {"ok":true,"stream":"lines","file_size":1073741824,"mtime":1732440000,"mode":420,"level":1}
//! < {"sig":"00000400a1b2c3d4e5f60718…"}        entries: 4-byte LE length, 8-byte digest
//! < {"end":true,"count":4096,"blake3":"5e1f…"}
//! ```
//!
//! Everything here is pure: the chunking itself (which reads files) lives in `sft-io`.

use crate::error::{ErrorCode, WireError};
use crate::header::check_line;
use crate::limits::MAX_CHUNK_LEN;
use crate::verbs::{is_blake3_hex, StreamFormat, Verb};
use serde::{Deserialize, Serialize};

/// Sizes of one level of content-defined chunks (FastCDC 2020, normalization level 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Smallest piece, but for the last one.
    pub min: u32,
    /// Average piece.
    pub avg: u32,
    /// Largest piece.
    pub max: u32,
}

/// Level 1: *segments*, cut over the whole file.
pub const SEGMENTS: Cut = Cut {
    min: 64 * 1024,
    avg: 256 * 1024,
    max: 1024 * 1024,
};

/// Level 0: *chunks*, cut over the bytes of one segment, from its first byte.
pub const CHUNKS: Cut = Cut {
    min: 1024,
    avg: 4 * 1024,
    max: 16 * 1024,
};

/// Bytes of a segment's or chunk's digest: the first bytes of the BLAKE3 hash of its bytes.
pub const DIGEST_LEN: usize = 8;

/// Bytes of one signature entry: a 4-byte little-endian length, then the digest.
pub const ENTRY_LEN: usize = 4 + DIGEST_LEN;

/// Most entries on one `{"sig":…}` line (24 hex digits each: 6 KiB, under the line limit).
pub const MAX_ENTRIES_PER_LINE: usize = 256;

/// Most ranges in one `SIGN` or `GET` request (each `[offset,length]` is at most 44 bytes of
/// JSON, so 256 of them fit a header line).
pub const MAX_RANGES: usize = 256;

/// Longest range a `SIGN` asks the chunks of: one segment.
pub const MAX_SIGN_RANGE: u64 = SEGMENTS.max as u64;

/// Longest copy in a delta body (`{"copy":O,"len":L}`).
pub const MAX_COPY_LEN: u64 = 1 << 30;

/// Files smaller than this are never sent by delta: it could not save enough to pay for its
/// round trips. A client compares its copy's (the basis's) size.
pub const MIN_DELTA_FILE: u64 = 1024 * 1024;

/// The zstd level a client asks for unless told otherwise.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The largest zstd window a receiver accepts (log2): 1 MiB, one block.
pub const MAX_ZSTD_WINDOW_LOG: u32 = 20;

/// The digest of a segment or chunk: the first [`DIGEST_LEN`] bytes of its BLAKE3 hash.
pub type Digest = [u8; DIGEST_LEN];

/// One entry of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The piece's length in bytes.
    pub len: u32,
    /// Its digest.
    pub digest: Digest,
}

/// An item line of a `SIGN` stream: up to [`MAX_ENTRIES_PER_LINE`] entries in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigLine {
    /// The entries, [`ENTRY_LEN`] bytes each, as lower-case hex.
    pub sig: String,
}

/// Appends the item line `{"sig":"…"}\n` holding `entries` (at most
/// [`MAX_ENTRIES_PER_LINE`]) to `out`.
pub fn encode_sig_line(entries: &[Entry], out: &mut Vec<u8>) {
    debug_assert!(entries.len() <= MAX_ENTRIES_PER_LINE);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"{\"sig\":\"");
    for e in entries {
        for b in e.len.to_le_bytes().iter().chain(e.digest.iter()) {
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
    }
    out.extend_from_slice(b"\"}\n");
}

/// Decodes the entries of an item line's `sig` value, appending them to `out`. Anything but
/// whole entries of lower-case hex, or more than [`MAX_ENTRIES_PER_LINE`] of them, or an entry
/// of length 0, is `bad_request`.
pub fn decode_sig(sig: &str, out: &mut Vec<Entry>) -> Result<(), WireError> {
    let bytes = sig.as_bytes();
    if bytes.is_empty()
        || bytes.len() % (2 * ENTRY_LEN) != 0
        || bytes.len() / (2 * ENTRY_LEN) > MAX_ENTRIES_PER_LINE
    {
        return Err(WireError::bad_request(
            "a signature line must hold 1 to 256 entries of 24 hex digits",
        ));
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for entry in bytes.chunks_exact(2 * ENTRY_LEN) {
        let mut raw = [0u8; ENTRY_LEN];
        for (i, pair) in entry.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
                return Err(WireError::bad_request(
                    "a signature line holds something other than lower-case hex",
                ));
            };
            raw[i] = hi << 4 | lo;
        }
        let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if len == 0 {
            return Err(WireError::bad_request("a signature entry of length 0"));
        }
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(&raw[4..]);
        out.push(Entry { len, digest });
    }
    Ok(())
}

/// A `[offset, length]` pair of a `SIGN` or `GET` request.
pub type Range = [u64; 2];

/// Checks `ranges` against a file of `file_size` bytes: 1 to [`MAX_RANGES`] of them, in
/// increasing order, not overlapping, each of 1 to `max_len` bytes and inside the file.
pub fn check_ranges(ranges: &[Range], file_size: u64, max_len: u64) -> Result<(), WireError> {
    if ranges.is_empty() || ranges.len() > MAX_RANGES {
        return Err(WireError::bad_request(format!(
            "\"ranges\" must hold 1 to {MAX_RANGES} ranges, not {}",
            ranges.len()
        )));
    }
    let mut next = 0u64;
    for &[offset, len] in ranges {
        if len == 0 || len > max_len {
            return Err(WireError::bad_request(format!(
                "a range of {len} bytes: each must hold 1 to {max_len}"
            )));
        }
        if offset < next {
            return Err(WireError::bad_request(
                "\"ranges\" must be in increasing order and not overlap",
            ));
        }
        let end = offset.checked_add(len).filter(|&e| e <= file_size);
        let Some(end) = end else {
            return Err(WireError::bad_request(format!(
                "the range [{offset},{len}] is not inside the file ({file_size} bytes)"
            )));
        };
        next = end;
    }
    Ok(())
}

/// How a body is compressed: the value of a request's `compress` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compress {
    /// zstd frames, one per chunk.
    #[default]
    Zstd,
}

/// A delta `SEND`'s `delta` field: what the body is built against, and what it builds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaSpec {
    /// The BLAKE3 hash (64 lower-case hex digits) of the server's file the delta was made
    /// against.
    pub basis: String,
    /// The size of the file the body builds.
    pub file_size: u64,
}

/// `SIGN`: the level-1 signature of a file, or the level-0 signatures of some of its segments.
///
/// Reply: [`SignReply`] and a line stream of [`SigLine`]s ended by a [`SignEnd`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// The file, relative to the served root.
    pub path: String,
    /// The segments whose chunks to describe; absent: the whole file's segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<Range>>,
    /// With `ranges`: the whole file's hash the client saw; `changed` if it is known to differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

impl Verb for SignRequest {
    const NAME: &'static str = "SIGN";
}

/// The reply line of a `SIGN`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignReply {
    /// Always [`StreamFormat::Lines`].
    pub stream: StreamFormat,
    /// The file's size as it was opened.
    pub file_size: u64,
    /// Its modification time, whole seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// Its permission bits (`0o777` at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// 1 for segments, 0 for chunks.
    pub level: u8,
}

/// The end line of a `SIGN` stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignEnd {
    /// Always `true`.
    pub end: bool,
    /// Entries sent.
    pub count: u64,
    /// For a level-1 signature: the whole file's BLAKE3 hash, of the version described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// One chunk of a chunked body (PROTOCOL.md §3.3, §8), as decoded by [`decode_chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// `size` raw bytes follow.
    Raw(u64),
    /// `size` bytes of one zstd frame follow, decompressing to exactly `raw` bytes.
    Zstd {
        /// Bytes on the wire.
        size: u64,
        /// Bytes they decompress to.
        raw: u64,
    },
    /// `len` bytes of the basis from `offset`; nothing follows.
    Copy {
        /// Where in the basis.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// The terminator, with the whole body's hash if it carries one.
    End(Option<String>),
}

/// What a chunked body may hold beyond raw chunks: what its request asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkKinds {
    /// Compressed chunks (`"compress":"zstd"`).
    pub zstd: bool,
    /// Copies (a delta `SEND`).
    pub copy: bool,
}

#[derive(Deserialize)]
struct WireChunk {
    size: Option<u64>,
    zstd: Option<u64>,
    copy: Option<u64>,
    len: Option<u64>,
    blake3: Option<String>,
}

/// Decodes a chunk header line of a body that may hold `kinds`. A line the body cannot hold,
/// or a malformed one, is `bad_request`; a chunk over [`MAX_CHUNK_LEN`] (on the wire or
/// decompressed) `too_large`; a copy over [`MAX_COPY_LEN`] `bad_request`. Whichever, the reader
/// can no longer follow the body.
pub fn decode_chunk(line: &[u8], kinds: ChunkKinds) -> Result<Chunk, WireError> {
    let line = check_line(line)?;
    let w: WireChunk = serde_json::from_slice(line)
        .map_err(|e| WireError::bad_request(format!("malformed chunk header: {e}")))?;
    let too_large = |what: &str, n: u64| {
        WireError::new(
            ErrorCode::TooLarge,
            format!("a chunk of {n} bytes {what} is over the limit of {MAX_CHUNK_LEN}"),
        )
    };
    match (w.size, w.zstd, w.copy, w.len) {
        (Some(0), None, None, None) => match w.blake3 {
            Some(h) if !is_blake3_hex(&h) => Err(WireError::bad_request(
                "a chunk header's \"blake3\" must be 64 lower-case hex digits",
            )),
            h => Ok(Chunk::End(h)),
        },
        (Some(size), None, None, None) if size > MAX_CHUNK_LEN => Err(too_large("", size)),
        (Some(size), None, None, None) => Ok(Chunk::Raw(size)),
        (Some(_), Some(_), None, None) if !kinds.zstd => Err(WireError::bad_request(
            "a compressed chunk in a body that did not ask for compression",
        )),
        (Some(size), Some(raw), None, None) => {
            if size > MAX_CHUNK_LEN {
                Err(too_large("compressed", size))
            } else if raw > MAX_CHUNK_LEN {
                Err(too_large("decompressed", raw))
            } else if raw == 0 {
                Err(WireError::bad_request("a compressed chunk of 0 bytes"))
            } else {
                Ok(Chunk::Zstd { size, raw })
            }
        }
        (None, None, Some(_), Some(_)) if !kinds.copy => Err(WireError::bad_request(
            "a copy in a body that is not a delta",
        )),
        (None, None, Some(offset), Some(len)) => {
            if len == 0 || len > MAX_COPY_LEN {
                Err(WireError::bad_request(format!(
                    "a copy of {len} bytes: each must hold 1 to {MAX_COPY_LEN}"
                )))
            } else {
                Ok(Chunk::Copy { offset, len })
            }
        }
        _ => Err(WireError::bad_request(
            "a chunk header must be {\"size\":N}, {\"size\":N,\"zstd\":M} or {\"copy\":O,\"len\":L}",
        )),
    }
}

/// The bookkeeping of a delta body as its chunks arrive (PROTOCOL.md §8.5): where the file
/// being built stands against the `file_size` it declared, and each copy against the basis. No
/// chunk can take the file past `file_size`, so the work a delta can cause is bounded by it,
/// however often its copies name the same basis bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaBook {
    file_size: u64,
    basis_len: u64,
    written: u64,
    reused: u64,
}

impl DeltaBook {
    /// A delta building `file_size` bytes from a basis of `basis_len` bytes.
    pub fn new(file_size: u64, basis_len: u64) -> Self {
        DeltaBook {
            file_size,
            basis_len,
            written: 0,
            reused: 0,
        }
    }

    /// Records `len` bytes of the body's own (raw or decompressed); `bad_request` past
    /// `file_size`.
    pub fn data(&mut self, len: u64) -> Result<(), WireError> {
        self.advance(len)
    }

    /// Records a copy of `len` basis bytes from `offset`: `bad_request` for one that does not
    /// lie inside the basis, or would take the file past `file_size`.
    pub fn copy(&mut self, offset: u64, len: u64) -> Result<(), WireError> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.basis_len)
        {
            return Err(WireError::bad_request(format!(
                "a copy of [{offset},{len}] does not lie inside the basis ({} bytes)",
                self.basis_len
            )));
        }
        self.advance(len)?;
        self.reused += len;
        Ok(())
    }

    fn advance(&mut self, len: u64) -> Result<(), WireError> {
        match self.written.checked_add(len) {
            Some(end) if end <= self.file_size => {
                self.written = end;
                Ok(())
            }
            _ => Err(WireError::bad_request(format!(
                "the delta builds more than the {} bytes it declared",
                self.file_size
            ))),
        }
    }

    /// Checks, at the terminator, that the file is exactly `file_size` bytes.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.written == self.file_size {
            return Ok(());
        }
        Err(WireError::bad_request(format!(
            "the delta built {} bytes, not the {} it declared",
            self.written, self.file_size
        )))
    }

    /// Bytes of the file so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes of it taken from the basis.
    pub fn reused(&self) -> u64 {
        self.reused
    }
}

/// Appends the header line of a compressed chunk: `size` bytes of zstd that decompress to
/// `raw`.
pub fn encode_zstd_chunk(size: u64, raw: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = writeln!(out, "{{\"size\":{size},\"zstd\":{raw}}}");
}

/// Appends the header line of a copy of `len` basis bytes from `offset`.
pub fn encode_copy_chunk(offset: u64, len: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = writeln!(out, "{{\"copy\":{offset},\"len\":{len}}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sig_lines_round_trip() {
        let entries: Vec<Entry> = (1..=MAX_ENTRIES_PER_LINE as u32)
            .map(|i| Entry {
                len: i * 4099,
                digest: (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes(),
            })
            .collect();
        let mut line = Vec::new();
        encode_sig_line(&entries, &mut line);
        assert!(line.len() <= crate::limits::MAX_HEADER_LEN);
        let item: SigLine = serde_json::from_slice(&line).unwrap();
        let mut back = Vec::new();
        decode_sig(&item.sig, &mut back).unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn bad_sig_lines_are_refused() {
        let mut out = Vec::new();
        for bad in [
            "",
            "0",
            "000000000000000000000000", // length 0
            "01000000000000000000000G",
            "0100000000000000000000AA", // upper case
        ] {
            assert!(decode_sig(bad, &mut out).is_err(), "{bad:?}");
        }
        let too_many = "010000000000000000000000".repeat(MAX_ENTRIES_PER_LINE + 1);
        assert!(decode_sig(&too_many, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn ranges_are_checked() {
        assert!(check_ranges(&[[0, 10], [10, 5]], 15, 10).is_ok());
        for bad in [
            vec![],
            vec![[0, 0]],
            vec![[0, 11]],
            vec![[10, 6]],
            vec![[5, 5], [0, 5]],
            vec![[0, 6], [5, 5]],
            vec![[u64::MAX, 2]],
        ] {
            assert!(check_ranges(&bad, 15, 10).is_err(), "{bad:?}");
        }
        let many = vec![[0, 1]; MAX_RANGES + 1];
        assert!(check_ranges(&many, 1 << 20, 10).is_err());
    }

    #[test]
    fn chunk_kinds_are_enforced() {
        let all = ChunkKinds {
            zstd: true,
            copy: true,
        };
        let none = ChunkKinds::default();
        assert_eq!(decode_chunk(b"{\"size\":5}\n", none), Ok(Chunk::Raw(5)));
        assert_eq!(decode_chunk(b"{\"size\":0}\n", none), Ok(Chunk::End(None)));
        assert!(decode_chunk(b"{\"size\":5,\"zstd\":9}\n", none).is_err());
        assert_eq!(
            decode_chunk(b"{\"size\":5,\"zstd\":9}\n", all),
            Ok(Chunk::Zstd { size: 5, raw: 9 })
        );
        assert!(decode_chunk(b"{\"copy\":5,\"len\":9}\n", none).is_err());
        assert_eq!(
            decode_chunk(b"{\"copy\":5,\"len\":9}\n", all),
            Ok(Chunk::Copy { offset: 5, len: 9 })
        );
        for bad in [
            &b"{\"size\":1048577}\n"[..],
            b"{\"size\":5,\"zstd\":1048577}\n",
            b"{\"size\":5,\"zstd\":0}\n",
            b"{\"copy\":5,\"len\":0}\n",
            b"{\"copy\":5,\"len\":1073741825}\n",
            b"{\"copy\":5}\n",
            b"{\"size\":5,\"copy\":5,\"len\":1}\n",
            b"{\"zstd\":5}\n",
            b"{}\n",
            b"{\"size\":0,\"blake3\":\"xyz\"}\n",
        ] {
            assert!(
                decode_chunk(bad, all).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut line = Vec::new();
        encode_zstd_chunk(7, 70, &mut line);
        encode_copy_chunk(1, 2, &mut line);
        assert_eq!(line, b"{\"size\":7,\"zstd\":70}\n{\"copy\":1,\"len\":2}\n");
    }

    #[test]
    fn a_delta_book_bounds_copies_and_size() {
        let mut book = DeltaBook::new(100, 50);
        book.copy(0, 50).unwrap();
        book.copy(0, 40).unwrap();
        assert!(book.copy(40, 11).is_err(), "outside the basis");
        assert!(book.copy(u64::MAX, 2).is_err());
        assert!(book.data(11).is_err(), "past file_size");
        assert!(book.finish().is_err());
        book.data(10).unwrap();
        book.finish().unwrap();
        assert_eq!((book.written(), book.reused()), (100, 90));
        assert!(
            book.copy(0, 1).is_err(),
            "past file_size by repeating the basis"
        );
    }

    proptest! {
        #[test]
        fn a_delta_book_never_passes_file_size(
            size in 0u64..10_000,
            basis in 0u64..10_000,
            steps in proptest::collection::vec((any::<bool>(), 0u64..5_000, 0u64..5_000), 0..50),
        ) {
            let mut book = DeltaBook::new(size, basis);
            for (copy, a, b) in steps {
                let _ = if copy { book.copy(a, b) } else { book.data(b) };
                prop_assert!(book.written() <= size);
                prop_assert!(book.reused() <= book.written());
            }
        }

        #[test]
        fn decode_chunk_never_panics(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_chunk(&line, ChunkKinds { zstd: true, copy: true });
        }

        #[test]
        fn decode_sig_never_panics(s in "[0-9a-fA-F]{0,120}") {
            let mut out = Vec::new();
            let _ = decode_sig(&s, &mut out);
        }
    }
}
