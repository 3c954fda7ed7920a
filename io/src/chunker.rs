//! Content-defined chunking of files, for delta transfers (PROTOCOL.md §8.1): the same cuts and
//! digests on the server (its signatures) and the client (matching them against its copy).
//!
//! Level 1 cuts a whole file into *segments*, reading it once in large blocks and hashing it
//! whole on the way; level 0 cuts one segment's bytes (at most 1 MiB, in memory) into *chunks*.
//! Both are blocking: run them on the blocking pool.

use crate::blocks::read_full_at;
use fastcdc::v2020::{FastCDC, Normalization};
use sft_protocol::delta::{Cut, Digest, Entry, CHUNKS, DIGEST_LEN, SEGMENTS};
use std::fs::File;
use std::io;

/// The digest of `bytes`: the first bytes of their BLAKE3 hash.
pub fn digest(bytes: &[u8]) -> Digest {
    let mut d = [0u8; DIGEST_LEN];
    d.copy_from_slice(&blake3::hash(bytes).as_bytes()[..DIGEST_LEN]);
    d
}

/// One segment of a file: where it is and its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of its first byte in the file.
    pub offset: u64,
    /// Its length and digest.
    pub entry: Entry,
}

/// How much of the file is read at a time: several segments, so that the carry-over of a cut
/// interrupted by the end of a block stays small next to it.
const BLOCK: usize = 8 * 1024 * 1024;

fn cutter(data: &[u8], cut: Cut) -> FastCDC<'_> {
    FastCDC::with_level(data, cut.min, cut.avg, cut.max, Normalization::Level1)
}

/// Cuts the first `len` bytes of a file into segments one bounded step at a time: each
/// [`Segmenter::step`] reads one block (8 MiB), hashes it into the whole-file hash on a second
/// thread beside the cutting, and returns the segments it completed. A server runs each step as
/// one short task on the blocking pool and sends the entries between steps, so no pool thread
/// waits on a socket; memory is one block, whatever the file's size.
#[derive(Debug)]
pub struct Segmenter {
    len: u64,
    whole: blake3::Hasher,
    buf: Vec<u8>,
    /// `buf[..held]` holds the file's bytes from offset `base` on, not yet cut.
    base: u64,
    held: usize,
    read: u64,
}

impl Segmenter {
    /// A segmenter of the first `len` bytes of a file.
    pub fn new(len: u64) -> Self {
        Segmenter {
            len,
            whole: blake3::Hasher::new(),
            buf: Vec::new(),
            base: 0,
            held: 0,
            read: 0,
        }
    }

    /// Whether every segment was returned: [`Segmenter::finish`] gives the hash.
    pub fn done(&self) -> bool {
        self.read == self.len && self.held == 0
    }

    /// Reads and cuts the next block of `file`, appending the segments completed to `out`.
    /// A file shorter than `len` is an `UnexpectedEof` error.
    pub fn step(&mut self, file: &File, out: &mut Vec<Segment>) -> io::Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; BLOCK.min(self.len as usize).max(1)];
        }
        let want = ((self.len - self.read) as usize).min(self.buf.len() - self.held);
        let held = self.held;
        let n = read_full_at(file, &mut self.buf[held..held + want], self.read)?;
        if n < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than it was",
            ));
        }
        self.read += n as u64;
        self.held += n;
        let last = self.read == self.len;
        let (data, whole) = (&self.buf[..self.held], &mut self.whole);
        let fresh = &data[held..];
        let (hashed, used) = std::thread::scope(|s| {
            let hashing = s.spawn(|| {
                whole.update(fresh);
            });
            let used = cut_block(data, last, self.base, out);
            (hashing.join(), used)
        });
        if hashed.is_err() {
            return Err(io::Error::other("hashing thread panicked"));
        }
        self.buf.copy_within(used..self.held, 0);
        self.held -= used;
        self.base += used as u64;
        Ok(())
    }

    /// The whole file's BLAKE3 hash, once [`Segmenter::done`].
    pub fn finish(&self) -> blake3::Hash {
        debug_assert!(self.done());
        self.whole.finalize()
    }
}

/// Cuts the first `len` bytes of `file` into segments, calling `each` for every one in order,
/// and returns the BLAKE3 hash of those bytes: [`Segmenter`] in a loop, for a caller that may
/// block for the whole file (a client thread). `each` may stop the work with an error.
pub fn segments(
    file: &File,
    len: u64,
    mut each: impl FnMut(Segment) -> io::Result<()>,
) -> io::Result<blake3::Hash> {
    let mut cutter = Segmenter::new(len);
    let mut out = Vec::new();
    while !cutter.done() {
        cutter.step(file, &mut out)?;
        for s in out.drain(..) {
            each(s)?;
        }
    }
    Ok(cutter.finish())
}

/// Cuts `data` (file bytes from `base` on) into segments, appending them to `out`; the last cut
/// is kept back unless `last`, since more data may move it. Returns the bytes used.
fn cut_block(data: &[u8], last: bool, base: u64, out: &mut Vec<Segment>) -> usize {
    let mut used = 0;
    for c in cutter(data, SEGMENTS) {
        let end = c.offset + c.length;
        if end == data.len() && !last {
            break;
        }
        out.push(Segment {
            offset: base + c.offset as u64,
            entry: Entry {
                len: c.length as u32,
                digest: digest(&data[c.offset..end]),
            },
        });
        used = end;
    }
    used
}

/// Cuts one segment's bytes into chunks (level 0), appending their entries to `out`.
pub fn chunks(segment: &[u8], out: &mut Vec<Entry>) {
    for c in cutter(segment, CHUNKS) {
        out.push(Entry {
            len: c.length as u32,
            digest: digest(&segment[c.offset..c.offset + c.length]),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn file_of(data: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        f
    }

    fn all_segments(data: &[u8]) -> (Vec<Segment>, blake3::Hash) {
        let f = file_of(data);
        let mut out = Vec::new();
        let hash = segments(f.as_file(), data.len() as u64, |s| {
            out.push(s);
            Ok(())
        })
        .unwrap();
        (out, hash)
    }

    #[test]
    fn segments_cover_the_file_as_one_cut_in_memory_would() {
        // Over several read blocks, so that cuts across a block's end are exercised.
        let data = noise(3 * BLOCK + 12345, 7);
        let (segs, hash) = all_segments(&data);
        assert_eq!(hash, blake3::hash(&data));
        let expect: Vec<(usize, usize)> = cutter(&data, SEGMENTS)
            .map(|c| (c.offset, c.length))
            .collect();
        let got: Vec<(usize, usize)> = segs
            .iter()
            .map(|s| (s.offset as usize, s.entry.len as usize))
            .collect();
        assert_eq!(got, expect);
        for s in &segs {
            let at = s.offset as usize;
            assert_eq!(s.entry.digest, digest(&data[at..at + s.entry.len as usize]));
        }
    }

    #[test]
    fn an_insertion_moves_only_the_segments_near_it() {
        let old = noise(16 * 1024 * 1024, 3);
        let mut new = old.clone();
        new.splice(5_000_000..5_000_000, noise(1000, 9));
        let (a, _) = all_segments(&old);
        let (b, _) = all_segments(&new);
        let known: std::collections::HashSet<_> = a.iter().map(|s| s.entry).collect();
        let missing = b.iter().filter(|s| !known.contains(&s.entry)).count();
        assert!(missing <= 3, "{missing} of {} segments differ", b.len());
    }

    #[test]
    fn empty_and_short_files() {
        let (segs, hash) = all_segments(b"");
        assert!(segs.is_empty());
        assert_eq!(hash, blake3::hash(b""));
        let (segs, _) = all_segments(b"hello");
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].entry.len, 5);
        let f = file_of(b"short");
        let err = segments(f.as_file(), 10, |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn chunks_cover_a_segment() {
        let data = noise(1024 * 1024, 5);
        let mut out = Vec::new();
        chunks(&data, &mut out);
        assert_eq!(
            out.iter().map(|e| e.len as usize).sum::<usize>(),
            data.len()
        );
        assert!(out.len() > 100);
    }
}
