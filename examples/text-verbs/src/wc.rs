//! `WC`: count the lines, words and bytes of a file, like `wc`.
//!
//! ```text
//! > {"verb":"WC","path":"notes.txt"}
//! < {"ok":true,"lines":3,"words":12,"bytes":80}
//! ```
//!
//! The reply carries no body, so it names the byte count `bytes`, not `size`: a reply's `size`
//! declares a body (PROTOCOL.md §3.1).

use futures::AsyncReadExt;
use serde::{Deserialize, Serialize};
use sft_commands::sandbox::Work;
use sft_commands::{BoxFuture, Command, CommandError, Context};
use sft_protocol::verbs::Verb;
use sft_protocol::{Request, WireError};

/// Arguments of `WC`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WcRequest {
    /// The file, relative to the served root.
    pub path: String,
}

impl Verb for WcRequest {
    const NAME: &'static str = "WC";
}

/// Fields of a successful `WC` reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WcReply {
    /// Newline characters.
    pub lines: u64,
    /// Runs of bytes that are not ASCII white space.
    pub words: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Counts lines, words and bytes over chunks, a word possibly spanning two chunks.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    counts: WcReply,
    in_word: bool,
}

impl Counter {
    /// Counts one more chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            let space = b.is_ascii_whitespace();
            if !space && !self.in_word {
                self.counts.words += 1;
            }
            self.in_word = !space;
            self.counts.lines += u64::from(b == b'\n');
        }
        self.counts.bytes += chunk.len() as u64;
    }

    /// The counts so far.
    pub fn counts(&self) -> WcReply {
        self.counts
    }
}

/// The `WC` handler: reads the file in bounded chunks, whatever its size.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wc;

impl Command for Wc {
    fn verb(&self) -> &'static str {
        WcRequest::NAME
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            // A missing or mistyped argument becomes a `bad_request` reply.
            let args: WcRequest = request.args()?;
            // Every path goes through the sandbox: `..`, absolute paths, symlinks out of the
            // root and the reserved `.sft/` folder are refused here. The path is recorded for
            // the request's log line, refused or not.
            let rp = ctx.resolve(&args.path)?;
            let open = ctx
                .root
                .blocking(Work::Lookup, move |root| root.open_file(&rp));
            let (file, _len) = open.await??;
            let mut file = async_std::fs::File::from(file);
            let mut counter = Counter::default();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).await.map_err(|e| {
                    // Nothing was written yet: an error reply, and the connection goes on.
                    WireError::internal(format!("reading {}: {e}", args.path))
                })?;
                if n == 0 {
                    break;
                }
                counter.feed(&buf[..n]);
            }
            ctx.reply_ok(&counter.counts())
                .await
                .map_err(CommandError::Abort)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_wc_across_chunk_boundaries() {
        let text = b"one two\n  three\tfour\n\nfive";
        for split in 0..text.len() {
            let mut c = Counter::default();
            c.feed(&text[..split]);
            c.feed(&text[split..]);
            let want = WcReply {
                lines: 3,
                words: 5,
                bytes: text.len() as u64,
            };
            assert_eq!(c.counts(), want, "split at {split}");
        }
        assert_eq!(Counter::default().counts(), WcReply::default());
    }
}
