//! Local file I/O for transfers. The block pipelines, `sendfile` and file versions are the
//! same as the server's, from `sft-io`; what is the client's own is here.

use sft_io::blocks::read_full_at;
use std::fs::File;
use std::io::{self, Write};

pub(crate) use sft_io::{CHUNK, RECV, SENDFILE_MIN, ZERO_COPY};

/// Hashes the first `len` bytes of `file` into a fresh hasher, blocks split across every core
/// (blocking).
pub(crate) fn hash_prefix(file: &File, len: u64) -> io::Result<blake3::Hasher> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; (len.min(8 << 20)) as usize];
    let mut pos = 0;
    while pos < len {
        let want = (len - pos).min(buf.len() as u64) as usize;
        let n = read_full_at(file, &mut buf[..want], pos)?;
        if n < want {
            return Err(sft_io::blocks::shrank(len - pos - n as u64));
        }
        hasher.update_rayon(&buf[..n]);
        pos += n as u64;
    }
    Ok(hasher)
}

/// Adapts a blocking writer — standard output of a command-line tool — to `AsyncWrite`: each
/// write happens in place, in the large blocks the download path hands over, without a round
/// trip through the blocking pool. Meant for a task that owns its thread, like a CLI's
/// `block_on`; a server's tasks should not block like this.
#[derive(Debug)]
pub struct BlockingWriter<W>(pub W);

impl<W: Write + Unpin> futures::AsyncWrite for BlockingWriter<W> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
