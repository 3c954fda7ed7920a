//! Keeping what a server sends from driving the terminal: names, messages and reply lines are
//! shown with the rules of [`sft_protocol::escape`], which the server's log keeps too.

pub(crate) use sft_protocol::escape::{escape, escape_json as json};

/// Standard output for JSON lines from the network (a `sft call` line stream), each escaped
/// with [`json`] as it is written. Lines are at most a header line long (PROTOCOL.md §3.2),
/// so at most one is held.
#[derive(Debug)]
pub(crate) struct JsonLines<W> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: std::io::Write> JsonLines<W> {
    pub(crate) fn new(inner: W) -> Self {
        JsonLines {
            inner,
            pending: Vec::new(),
        }
    }

    fn write_lines(&mut self, all: bool) -> std::io::Result<()> {
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            self.inner.write_all(json(&text).as_bytes())?;
            self.inner.write_all(b"\n")?;
        }
        if all && !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            self.inner.write_all(json(&text).as_bytes())?;
        }
        Ok(())
    }
}

impl<W: std::io::Write + Unpin> futures::AsyncWrite for JsonLines<W> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.pending.extend_from_slice(buf);
        std::task::Poll::Ready(this.write_lines(false).map(|()| buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::Poll::Ready(this.write_lines(true).and_then(|()| this.inner.flush()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}
