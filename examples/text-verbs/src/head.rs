//! `HEAD`: send the first lines of a file, as a body.
//!
//! ```text
//! > {"verb":"HEAD","path":"notes.txt","lines":2}
//! < {"ok":true,"size":25}
//! < …the first 25 bytes: two lines…
//! ```
//!
//! A body is announced by the reply's `size` and then exactly that many bytes follow, so the
//! handler measures the lines first, then sends them with [`Context::send_file`], the helper
//! the built-in `GET` uses too.

use futures::AsyncReadExt;
use serde::{Deserialize, Serialize};
use sft_commands::sandbox::Work;
use sft_commands::{BoxFuture, Command, CommandError, Context};
use sft_protocol::verbs::Verb;
use sft_protocol::{Request, WireError};
use std::io;

/// Arguments of `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadRequest {
    /// The file, relative to the served root.
    pub path: String,
    /// How many lines to send (default 10). The last may lack its newline.
    #[serde(default = "ten")]
    pub lines: u64,
}

fn ten() -> u64 {
    10
}

impl Verb for HeadRequest {
    const NAME: &'static str = "HEAD";
}

/// Fields of a successful `HEAD` reply: `size` announces the body that follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadReply {
    /// How many body bytes follow the reply line.
    pub size: u64,
}

/// The length of the first `lines` lines of `data` read so far, if they end within it.
fn lines_end(data: &[u8], lines: u64) -> Option<usize> {
    if lines == 0 {
        return Some(0);
    }
    data.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(lines as usize - 1)
        .map(|(i, _)| i + 1)
}

/// The `HEAD` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Head;

impl Command for Head {
    fn verb(&self) -> &'static str {
        HeadRequest::NAME
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: HeadRequest = request.args()?;
            // Checked through the sandbox, and recorded for the request's log line.
            let rp = ctx.resolve(&args.path)?;
            let open = ctx
                .root
                .blocking(Work::Lookup, move |root| root.open_file(&rp));
            let (file, _len) = open.await??;
            let failed = |e: io::Error| WireError::internal(format!("reading {}: {e}", args.path));
            // Measured through a second handle: the first one is sent afterwards.
            let mut reader = async_std::fs::File::from(file.try_clone().map_err(failed)?);

            // 1. Measure, in bounded chunks: where does line number `lines` end?
            let mut size = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = args.lines;
            while left > 0 {
                let n = reader.read(&mut buf).await.map_err(failed)?;
                if n == 0 {
                    break; // fewer lines than asked: the whole file
                }
                let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                match lines_end(&buf[..n], left) {
                    Some(end) => {
                        size += end as u64;
                        left = 0;
                    }
                    None => {
                        size += n as u64;
                        left -= newlines;
                    }
                }
            }

            // 2. Announce the body, then send exactly `size` bytes. `send_file` keeps the
            // server's stall timeout (a client that stops reading is cut off) and turns a file
            // that shrank meanwhile into an `Abort`: the session closes the connection.
            ctx.reply_ok(&HeadReply { size })
                .await
                .map_err(CommandError::Abort)?;
            ctx.send_file(file, 0, size).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_the_nth_line() {
        assert_eq!(lines_end(b"a\nb\nc", 0), Some(0));
        assert_eq!(lines_end(b"a\nb\nc", 1), Some(2));
        assert_eq!(lines_end(b"a\nb\nc", 2), Some(4));
        assert_eq!(lines_end(b"a\nb\nc", 3), None);
        assert_eq!(lines_end(b"", 1), None);
    }
}
