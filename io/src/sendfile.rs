//! Zero-copy sending from a file to a socket.

use crate::blocks::shrank;
use crate::pace::Pace;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// Sends `file` from `*pos` to `end` straight from the page cache to `socket` with
/// `sendfile(2)`, advancing `*pos`; `sent` hears of every step. The socket's readiness comes
/// from the runtime's reactor (through a second handle on it), so no thread blocks, and every
/// wait keeps `pace`. A file that ends early is an `UnexpectedEof`.
pub async fn sendfile<S: AsFd>(
    file: &File,
    pos: &mut u64,
    end: u64,
    socket: &S,
    pace: &mut Pace,
    mut sent: impl FnMut(u64),
) -> io::Result<()> {
    let dup = socket.as_fd().try_clone_to_owned()?;
    let sock = async_io::Async::new(std::net::TcpStream::from(dup))?;
    while *pos < end {
        let want = (end - *pos).min(1 << 30) as usize;
        let before = *pos;
        let step = sock.write_with(|s| {
            rustix::fs::sendfile(s, file, Some(&mut *pos), want).map_err(io::Error::from)
        });
        let n = pace.limit(step).await?;
        if n == 0 {
            return Err(shrank(end - before));
        }
        pace.advance(n as u64);
        sent(n as u64);
    }
    Ok(())
}
