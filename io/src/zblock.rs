//! zstd compression of a body, one block (at most 1 MiB) at a time (PROTOCOL.md §8.3), for both
//! the server and the client.
//!
//! The compressor sends a block raw whenever compressing it does not make it smaller, and once
//! blocks stop shrinking it stops trying for a while (a few blocks, then more and more, up to
//! [`MAX_SKIP`]), trying a block again now and then: incompressible data (media, archives,
//! encrypted files) then costs almost no CPU. The decompressor writes each frame into a buffer
//! of exactly its declared size, with a bounded window: a frame that claims more, or needs a
//! larger window, is refused, so a decompression bomb costs one block of memory.

use sft_protocol::delta::MAX_ZSTD_WINDOW_LOG;
use std::io;
use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::{CParameter, DParameter};

/// Blocks skipped at most, after a run of blocks that did not shrink, before trying again.
pub const MAX_SKIP: u32 = 64;

/// A block compressor with its back-off.
pub struct BlockCompressor {
    ctx: Compressor<'static>,
    /// Blocks to send raw without trying.
    skip: u32,
    /// How many to skip after the next block that does not shrink.
    backoff: u32,
}

impl std::fmt::Debug for BlockCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCompressor")
            .field("skip", &self.skip)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl BlockCompressor {
    /// A compressor at zstd `level` (clamped to what zstd knows).
    pub fn new(level: i32) -> io::Result<Self> {
        let level = level.clamp(*zstd::compression_level_range().start(), 19);
        let mut ctx = Compressor::new(level)?;
        // A frame's window never needs to be over one block: the receiver refuses more.
        ctx.set_parameter(CParameter::WindowLog(MAX_ZSTD_WINDOW_LOG))?;
        ctx.set_parameter(CParameter::ChecksumFlag(false))?;
        Ok(BlockCompressor {
            ctx,
            skip: 0,
            backoff: 1,
        })
    }

    /// Whether the back-off says the next block goes raw without a try: a sender may then
    /// send it by other means (`sendfile`), and calls [`BlockCompressor::skip`] instead of
    /// [`BlockCompressor::compress`].
    pub fn skipping(&self) -> bool {
        self.skip > 0
    }

    /// Counts one block sent raw without a try (while [`BlockCompressor::skipping`]).
    pub fn skip(&mut self) {
        self.skip = self.skip.saturating_sub(1);
    }

    /// Compresses `block` into `out` (cleared first) and returns `true`, or returns `false`
    /// when the block is to be sent raw: it did not shrink, or the back-off says not to try.
    pub fn compress(&mut self, block: &[u8], out: &mut Vec<u8>) -> io::Result<bool> {
        out.clear();
        if block.is_empty() {
            return Ok(false);
        }
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(false);
        }
        // Room for anything smaller than the block itself: zstd stops when it does not fit,
        // which is the answer "send it raw".
        out.reserve(block.len());
        let room = block.len() - 1;
        out.resize(room, 0);
        match self.ctx.compress_to_buffer(block, &mut out[..]) {
            Ok(n) if n < block.len() => {
                out.truncate(n);
                self.backoff = 1;
                Ok(true)
            }
            // Too big for the room: incompressible.
            Ok(_) | Err(_) => {
                out.clear();
                self.skip = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_SKIP);
                Ok(false)
            }
        }
    }
}

/// A block decompressor with the receiver's bounds.
pub struct BlockDecompressor {
    ctx: Decompressor<'static>,
}

impl std::fmt::Debug for BlockDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDecompressor").finish()
    }
}

impl BlockDecompressor {
    /// A decompressor that refuses windows over 1 MiB.
    pub fn new() -> io::Result<Self> {
        let mut ctx = Decompressor::new()?;
        ctx.set_parameter(DParameter::WindowLogMax(MAX_ZSTD_WINDOW_LOG))?;
        Ok(BlockDecompressor { ctx })
    }

    /// Decompresses the one frame `frame` into `out`, which must come out exactly `raw` bytes
    /// long (`raw` is at most one block: the caller checked the chunk header). Anything else —
    /// not zstd, more or fewer bytes, a window over 1 MiB, trailing data — is an
    /// `InvalidData` error, and `out` holds nothing meaningful.
    pub fn decompress(&mut self, frame: &[u8], raw: usize, out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.resize(raw, 0);
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        let n = self
            .ctx
            .decompress_to_buffer(frame, &mut out[..])
            .map_err(|e| bad(format!("a compressed chunk does not decompress: {e}")))?;
        if n != raw {
            return Err(bad(format!(
                "a compressed chunk decompressed to {n} bytes, not the {raw} declared"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shrinks_and_round_trips() {
        let text: Vec<u8> = (0..200_000)
            .flat_map(|i: u32| format!("{{\"n\":{i},\"msg\":\"hello\"}}\n").into_bytes())
            .take(1 << 20)
            .collect();
        let mut c = BlockCompressor::new(3).unwrap();
        let mut z = Vec::new();
        assert!(c.compress(&text, &mut z).unwrap());
        assert!(z.len() < text.len() / 4);
        let mut d = BlockDecompressor::new().unwrap();
        let mut back = Vec::new();
        d.decompress(&z, text.len(), &mut back).unwrap();
        assert_eq!(back, text);
        // A declared size that differs either way is refused.
        assert!(d.decompress(&z, text.len() - 1, &mut back).is_err());
        assert!(d.decompress(&z, text.len() + 1, &mut back).is_err());
        assert!(d.decompress(b"not zstd at all", 10, &mut back).is_err());
    }

    #[test]
    fn noise_goes_raw_and_backs_off() {
        let mut x = 99u64;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut c = BlockCompressor::new(3).unwrap();
        let mut z = Vec::new();
        let tried: Vec<bool> = (0..8)
            .map(|_| {
                let before = c.skip;
                assert!(!c.compress(&noise, &mut z).unwrap());
                before == 0
            })
            .collect();
        // Tried, skipped 1, tried, skipped 2, tried, skipped 4…
        assert_eq!(tried, [true, false, true, false, false, true, false, false]);
    }

    #[test]
    fn a_bomb_is_refused_within_its_declared_size() {
        let zeros = vec![0u8; 64 << 20];
        let bomb = zstd::bulk::compress(&zeros, 19).unwrap();
        let mut d = BlockDecompressor::new().unwrap();
        let mut out = Vec::new();
        assert!(d.decompress(&bomb, 1 << 20, &mut out).is_err());
        assert!(out.capacity() < 2 << 20);
    }
}
