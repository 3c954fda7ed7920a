//! A connection's two halves, over plain TCP or over an encrypted stream (TLS).
//!
//! Plain TCP keeps what only a socket can do: its halves are two handles on the one socket,
//! and [`StreamWrite::tcp`] gives `sendfile(2)` the socket. Any other stream (a TLS session
//! holds one state for both directions) is split with a lock between the halves, each taken
//! only for the length of one poll.

use async_std::net::TcpStream;
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A byte stream both ways, owned and movable between tasks: what [`split`] takes.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Duplex for T {}

/// The reading half of a connection.
pub enum StreamRead {
    /// A plain TCP socket.
    Plain(TcpStream),
    /// Anything else, TLS for one.
    Boxed(ReadHalf<Box<dyn Duplex>>),
}

/// The writing half of a connection.
pub enum StreamWrite {
    /// A plain TCP socket.
    Plain(TcpStream),
    /// Anything else, TLS for one.
    Boxed(WriteHalf<Box<dyn Duplex>>),
}

/// The halves of a plain TCP connection.
pub fn split_plain(stream: TcpStream) -> (StreamRead, StreamWrite) {
    (
        StreamRead::Plain(stream.clone()),
        StreamWrite::Plain(stream),
    )
}

/// The halves of any other stream (a TLS session over TCP).
pub fn split(stream: impl Duplex) -> (StreamRead, StreamWrite) {
    let boxed: Box<dyn Duplex> = Box::new(stream);
    let (r, w) = boxed.split();
    (StreamRead::Boxed(r), StreamWrite::Boxed(w))
}

impl StreamWrite {
    /// The socket, when the connection is plain TCP: bytes written to it directly
    /// (`sendfile(2)`) reach the peer as they are. `None` under TLS, where every byte must go
    /// through the session.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            StreamWrite::Plain(s) => Some(s),
            StreamWrite::Boxed(_) => None,
        }
    }
}

impl fmt::Debug for StreamRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamRead::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            StreamRead::Boxed(_) => f.write_str("Boxed"),
        }
    }
}

impl fmt::Debug for StreamWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamWrite::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            StreamWrite::Boxed(_) => f.write_str("Boxed"),
        }
    }
}

impl AsyncRead for StreamRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamRead::Plain(s) => Pin::new(s).poll_read(cx, buf),
            // rustls's own words for a close without close_notify carry a link to its manual.
            StreamRead::Boxed(s) => match Pin::new(s).poll_read(cx, buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection without ending the TLS session",
                    )))
                }
                other => other,
            },
        }
    }
}

impl AsyncWrite for StreamWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(s) => Pin::new(s).poll_write(cx, buf),
            StreamWrite::Boxed(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            StreamWrite::Boxed(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(s) => Pin::new(s).poll_flush(cx),
            StreamWrite::Boxed(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(s) => Pin::new(s).poll_close(cx),
            StreamWrite::Boxed(s) => Pin::new(s).poll_close(cx),
        }
    }
}
