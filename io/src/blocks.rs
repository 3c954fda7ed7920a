//! Positioned, blocking reads of a file range (run them on the blocking pool).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Block size for file reads and writes: memory per transfer is bounded by a few blocks,
/// whatever the file size.
pub const CHUNK: usize = 256 * 1024;

/// Most bytes taken from a socket per read: a small, cache-resident window (measured: receiving
/// 1 GiB in 64 KiB reads costs about half the kernel time of 256 KiB reads).
pub const RECV: usize = 64 * 1024;

/// Fills `buf` from `file` at `pos`, stopping early only at the end of the file.
pub fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                crate::pool::progress();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// An `UnexpectedEof` for a file that ended `short` bytes before it was expected to.
pub fn shrank(short: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the file ended {short} bytes early (it shrank)"),
    )
}

/// Feeds bytes `start..start + len` of `file` to `hasher`. A file that ends early is an
/// `UnexpectedEof`.
pub fn hash_range(
    file: &File,
    hasher: &mut blake3::Hasher,
    start: u64,
    len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; len.min(4 * CHUNK as u64) as usize];
    let mut pos = start;
    let end = start + len;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let n = read_full_at(file, &mut buf[..want], pos)?;
        if n < want {
            return Err(shrank(end - pos - n as u64));
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

/// The hash of the first `len` bytes of `file` in a fresh hasher (resuming needs the prefix).
pub fn hash_prefix(file: &File, len: u64) -> io::Result<blake3::Hasher> {
    let mut hasher = blake3::Hasher::new();
    hash_range(file, &mut hasher, 0, len)?;
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn hashes_a_range_and_reports_a_short_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        let mut h = blake3::Hasher::new();
        hash_range(&f, &mut h, 100, 900).unwrap();
        assert_eq!(h.finalize(), blake3::hash(&[7u8; 900]));
        let e = hash_range(&f, &mut blake3::Hasher::new(), 0, 1001).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            hash_prefix(&f, 10).unwrap().finalize(),
            blake3::hash(&[7u8; 10])
        );
    }
}
