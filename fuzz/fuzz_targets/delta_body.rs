//! A delta upload's body as a receiver follows it: arbitrary chunk header lines (each may be
//! followed by a zstd frame) through `decode_chunk`, the `DeltaBook` that bounds copies and
//! size, and the bounded `BlockDecompressor`. Never panics; the file never passes its declared
//! size; a frame that decompresses gives exactly the bytes its header declared.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sft_io::zblock::BlockDecompressor;
use sft_protocol::delta::{decode_chunk, Chunk, ChunkKinds, DeltaBook};

fuzz_target!(|input: (u16, u32, Vec<u8>)| {
    let (file_size, basis_len, bytes) = input;
    let (file_size, basis_len) = (u64::from(file_size), u64::from(basis_len));
    let kinds = ChunkKinds {
        zstd: true,
        copy: true,
    };
    let mut book = DeltaBook::new(file_size, basis_len);
    let mut d = BlockDecompressor::new().expect("a decompressor");
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let (line, after) = rest.split_at(end + 1);
        rest = after;
        let Ok(chunk) = decode_chunk(line, kinds) else {
            return;
        };
        let booked = match chunk {
            Chunk::End(_) => {
                let _ = book.finish();
                return;
            }
            Chunk::Raw(len) => book.data(len),
            Chunk::Copy { offset, len } => {
                let r = book.copy(offset, len);
                if r.is_ok() {
                    assert!(offset + len <= basis_len);
                }
                r
            }
            Chunk::Zstd { size, raw } => {
                let take = (size as usize).min(rest.len());
                let (frame, after) = rest.split_at(take);
                rest = after;
                if d.decompress(frame, raw as usize, &mut out).is_ok() {
                    assert_eq!(out.len() as u64, raw);
                }
                assert!(out.capacity() <= 2 << 20, "more memory than one block");
                book.data(raw)
            }
        };
        assert!(book.written() <= file_size);
        assert!(book.reused() <= book.written());
        if booked.is_err() {
            return;
        }
    }
});
