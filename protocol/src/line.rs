//! Finding the end of a header line in bytes as they arrive, without ever buffering past the limit.

use crate::limits::MAX_HEADER_LEN;
use futures_io::AsyncBufRead;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

/// What [`scan_line`] found in the bytes available so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineScan {
    /// The line ends within the available bytes: take this many (the `\n` included) and decode.
    Complete(usize),
    /// No `\n` yet: take all available bytes into the line and read more.
    Partial,
    /// The line cannot end within [`MAX_HEADER_LEN`] bytes: reject it, read no further.
    TooLong,
}

/// Scans `avail` (bytes read but not yet consumed) for the end of a header line of which
/// `already` bytes were taken before.
pub fn scan_line(already: usize, avail: &[u8]) -> LineScan {
    let room = MAX_HEADER_LEN.saturating_sub(already);
    let window = &avail[..avail.len().min(room)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => LineScan::Complete(i + 1),
        None if already.saturating_add(avail.len()) >= MAX_HEADER_LEN => LineScan::TooLong,
        None => LineScan::Partial,
    }
}

/// Reads one header line into `line` (which must be empty) from any buffered byte stream.
///
/// Returns `Ok(false)` on a clean end of stream before any byte; `UnexpectedEof` on an end in the
/// middle of a line; `InvalidData` once the line would exceed [`MAX_HEADER_LEN`] — having
/// buffered no more than that. Cancel-safe between polls: bytes taken stay in `line`.
pub async fn read_line<R: AsyncBufRead + Unpin + ?Sized>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> io::Result<bool> {
    poll_fn(|cx| loop {
        let avail = match Pin::new(&mut *reader).poll_fill_buf(cx) {
            Poll::Ready(Ok(avail)) => avail,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if avail.is_empty() {
            return Poll::Ready(if line.is_empty() {
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            });
        }
        let (take, done) = match scan_line(line.len(), avail) {
            LineScan::Complete(n) => (n, true),
            LineScan::Partial => (avail.len(), false),
            LineScan::TooLong => return Poll::Ready(Err(io::ErrorKind::InvalidData.into())),
        };
        line.extend_from_slice(&avail[..take]);
        Pin::new(&mut *reader).consume(take);
        if done {
            return Poll::Ready(Ok(true));
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_end() {
        assert_eq!(scan_line(0, b"abc\ndef"), LineScan::Complete(4));
        assert_eq!(scan_line(0, b"abc"), LineScan::Partial);
        assert_eq!(scan_line(10, b"\n"), LineScan::Complete(1));
        assert_eq!(scan_line(0, b""), LineScan::Partial);
    }

    #[test]
    fn limit_is_inclusive_of_the_newline() {
        let mut exact = vec![b'a'; MAX_HEADER_LEN - 1];
        exact.push(b'\n');
        assert_eq!(scan_line(0, &exact), LineScan::Complete(MAX_HEADER_LEN));

        let mut over = vec![b'a'; MAX_HEADER_LEN];
        over.push(b'\n');
        assert_eq!(scan_line(0, &over), LineScan::TooLong);
        assert_eq!(scan_line(MAX_HEADER_LEN - 1, b"a"), LineScan::TooLong);
        assert_eq!(scan_line(MAX_HEADER_LEN - 1, b"\n"), LineScan::Complete(1));
    }

    #[test]
    fn split_arrivals_accumulate() {
        let mut taken = 0;
        for chunk in [&b"{\"verb\""[..], b":\"GET\"", b"}\nrest"] {
            match scan_line(taken, chunk) {
                LineScan::Partial => taken += chunk.len(),
                LineScan::Complete(n) => {
                    taken += n;
                    break;
                }
                LineScan::TooLong => panic!(),
            }
        }
        assert_eq!(taken, b"{\"verb\":\"GET\"}\n".len());
    }

    fn read_all(input: &[u8]) -> Vec<io::Result<Vec<u8>>> {
        let mut reader = futures_util_lite::Slow(input);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            match futures_util_lite::block_on(read_line(&mut reader, &mut line)) {
                Ok(true) => out.push(Ok(line)),
                Ok(false) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    #[test]
    fn reads_lines_from_a_trickling_stream() {
        let got = read_all(b"{\"a\":1}\n{\"b\":2}\n");
        let lines: Vec<_> = got.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(
            lines,
            vec![b"{\"a\":1}\n".to_vec(), b"{\"b\":2}\n".to_vec()]
        );
    }

    #[test]
    fn end_mid_line_and_over_long_lines_are_errors() {
        let got = read_all(b"{\"a\":1}\n{\"b\"");
        assert_eq!(
            got[1].as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let long = vec![b'x'; MAX_HEADER_LEN * 3];
        let got = read_all(&long);
        assert_eq!(
            got[0].as_ref().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    /// A reader that hands out 3 bytes per poll, and a minimal executor for it.
    mod futures_util_lite {
        use super::*;
        use std::task::{Context, Waker};

        pub(super) struct Slow<'a>(pub(super) &'a [u8]);

        impl futures_io::AsyncRead for Slow<'_> {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                let n = buf.len().min(self.0.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.get_mut().0 = &self.0[n..];
                Poll::Ready(Ok(n))
            }
        }

        impl AsyncBufRead for Slow<'_> {
            fn poll_fill_buf(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
                let this = self.get_mut();
                let n = this.0.len().min(3);
                Poll::Ready(Ok(&this.0[..n]))
            }
            fn consume(self: Pin<&mut Self>, amt: usize) {
                let this = self.get_mut();
                this.0 = &this.0[amt..];
            }
        }

        pub(super) fn block_on<F: std::future::Future>(f: F) -> F::Output {
            let mut f = std::pin::pin!(f);
            let mut cx = Context::from_waker(Waker::noop());
            loop {
                if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                    return v;
                }
            }
        }
    }
}
