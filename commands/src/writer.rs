//! The connection's writer: buffered, paced, and able to send a file zero-copy itself.

use async_std::io::BufWriter;
use futures::AsyncWrite;
use sft_io::{Pace, PaceRule, PacedWrite, StreamWrite};
use std::fs::File;
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

/// The connection's buffered writer (plain TCP or TLS). Every write and flush through it keeps
/// the connection's [`Pace`]: a client that stops reading fails the write after the stall
/// timeout (or below the minimum rate) instead of holding the session forever. The session
/// restarts the pace for each request, and flushes the writer after it.
///
/// Verbs never hold it: they write through the [`Context`](crate::Context)'s methods, and send
/// files with [`Context::send_file`](crate::Context::send_file), which asks the writer whether
/// it can send zero-copy (`sendfile(2)`) and has it do so.
#[derive(Debug)]
pub struct Writer {
    inner: BufWriter<PacedWrite<StreamWrite>>,
}

impl Writer {
    /// A writer of `capacity` bytes' buffer onto `stream`, every wait within `rule`.
    pub fn new(stream: StreamWrite, rule: PaceRule, capacity: usize) -> Writer {
        Writer {
            inner: BufWriter::with_capacity(capacity, PacedWrite::new(stream, rule)),
        }
    }

    /// The pace its writes keep (the session restarts it for each request).
    #[inline]
    pub fn pace_mut(&mut self) -> &mut Pace {
        self.inner.get_mut().pace_mut()
    }

    /// Whether a body of `len` bytes goes out with `sendfile(2)`: on a plain TCP connection
    /// (under TLS every byte goes through the session), on a platform that has it, and when
    /// the body is large enough to be worth it (smaller ones are copied into the buffer right
    /// behind the reply line, so that both leave in one write).
    pub(crate) fn zero_copy(&self, len: u64) -> bool {
        sft_io::ZERO_COPY
            && len >= sft_io::SENDFILE_MIN
            && self.inner.get_ref().get_ref().tcp().is_some()
    }

    /// How a body of `len` bytes goes out (`sendfile` or `copy`) and why, for a debug line:
    /// [`Writer::zero_copy`]'s reasons.
    pub(crate) fn why_zero_copy(&self, len: u64) -> (&'static str, &'static str) {
        if !sft_io::ZERO_COPY {
            ("copy", "this platform has no sendfile")
        } else if self.inner.get_ref().get_ref().tcp().is_none() {
            ("copy", "TLS: every byte goes through the session")
        } else if len < sft_io::SENDFILE_MIN {
            (
                "copy",
                "small: copied behind the reply line, to leave in one write",
            )
        } else {
            ("sendfile", "plain TCP and a large body")
        }
    }

    /// Sends `file` from `*pos` to `end` with `sendfile(2)`, after what is buffered, advancing
    /// `*pos`; every wait keeps the pace, and `sent` hears of every step. Only where
    /// [`Writer::zero_copy`] said so; a file that ends early is an `UnexpectedEof`.
    #[cfg(target_os = "linux")]
    pub(crate) async fn sendfile(
        &mut self,
        file: &File,
        pos: &mut u64,
        end: u64,
        sent: impl FnMut(u64),
    ) -> io::Result<()> {
        futures::AsyncWriteExt::flush(&mut self.inner).await?;
        let (socket, pace) = self.inner.get_mut().parts_mut();
        let socket = socket
            .tcp()
            .ok_or_else(|| io::Error::other("sendfile needs a plain socket"))?;
        sft_io::sendfile(file, pos, end, socket, pace, sent).await
    }
}

impl AsyncWrite for Writer {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    #[inline]
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
