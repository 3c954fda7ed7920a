//! How `get` and `send` move a file's bytes: by delta or whole, compressed or not.

use super::ui::Ui;
use sft_client::Client;
use sft_protocol::delta::DEFAULT_ZSTD_LEVEL;
use structopt::StructOpt;

// Flattened into `get` and `send`. A plain comment, not a doc comment: structopt would show a
// flattened struct's doc as the subcommand's `about`.
#[derive(Debug, StructOpt)]
pub(crate) struct Wire {
    /// Always transfer whole files: no delta (as rsync -W). By default a file that replaces an
    /// older version of at least 1 MiB at the destination moves only the parts that differ,
    /// when the server speaks protocol version 3.
    #[structopt(short = "W", long)]
    pub(crate) whole_file: bool,
    /// Compress the bytes on the wire with zstd, if the server allows it (blocks that do not
    /// shrink go as they are). Worth it on slow links with compressible files.
    #[structopt(short = "z", long)]
    pub(crate) compress: bool,
    /// The zstd level with -z (1 fastest … 19 smallest; default 3; the server may cap it).
    #[structopt(long, value_name = "N")]
    pub(crate) compress_level: Option<i32>,
}

impl Wire {
    /// Whether deltas are allowed.
    pub(crate) fn delta(&self) -> bool {
        !self.whole_file
    }

    /// The zstd level to ask for, if any.
    pub(crate) fn compress(&self) -> Option<i32> {
        let level = self.compress_level.unwrap_or(DEFAULT_ZSTD_LEVEL);
        self.compress.then_some(level)
    }
}

impl Wire {
    /// Says, once, that -z was asked of a server that does not compress.
    pub(crate) async fn notice(&self, client: &mut Client, ui: &Ui) {
        if self.compress && !client.compresses().await {
            ui.note("the server does not compress (-z): the bytes go uncompressed");
        }
    }
}
