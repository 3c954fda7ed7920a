//! Reading the `[offset,length]` ranges a version-3 request names (`SIGN`'s and `GET`'s
//! `ranges`, PROTOCOL.md §8), a bounded batch per trip to the blocking pool.

use sft_io::blocks::{read_full_at, shrank};
use sft_protocol::delta::Range;
use std::fs::File;
use std::io;

/// Bytes read per trip to the blocking pool for a signature (at least one range, whatever its
/// length): as much as one step of a level-1 signature.
pub(crate) const BATCH: u64 = 8 * 1024 * 1024;

/// Reads the first of `ranges` and as many after it as fit `budget` bytes together, each
/// appended to `buf`; returns how many were read. Blocking. A file shorter than a range is an
/// `UnexpectedEof` error: it changed since the ranges were checked against its size.
pub(crate) fn read_batch(
    file: &File,
    ranges: &[Range],
    budget: u64,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut taken = 0;
    let mut bytes = 0u64;
    for &[offset, len] in ranges {
        if taken > 0 && bytes + len > budget {
            break;
        }
        let at = buf.len();
        buf.resize(at + len as usize, 0);
        let n = read_full_at(file, &mut buf[at..], offset)?;
        if (n as u64) < len {
            return Err(shrank(len - n as u64));
        }
        bytes += len;
        taken += 1;
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn batches_are_bounded_and_a_short_file_is_an_error() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            read_batch(&f, &[[1, 2], [5, 3]], BATCH, &mut buf).unwrap(),
            2
        );
        assert_eq!(buf, b"12567");
        let err = read_batch(&f, &[[8, 5]], BATCH, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // Past the batch, the next range waits for the next trip.
        let big = [[0, BATCH], [0, 1]];
        let mut sparse = tempfile::tempfile().unwrap();
        sparse.set_len(BATCH).unwrap();
        sparse.flush().unwrap();
        assert_eq!(
            read_batch(&sparse, &big, BATCH, &mut Vec::new()).unwrap(),
            1
        );
    }
}
