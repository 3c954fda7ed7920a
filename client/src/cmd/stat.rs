//! `sft stat SERVER PATH [--json]`: one path's kind, size and modification time.

use super::size::human;
use super::stdout_failed;
use super::terminal;
use super::time::utc;
use crate::{escape, Failure};
use sft_client::{Client, Kind};
use std::io::Write;

/// Describes `path`, as `name value` lines or as the entry's JSON.
pub(crate) async fn run(client: &mut Client, path: &str, json: bool) -> Result<(), Failure> {
    let entry = client.stat(path).await?;
    let mut text = if json {
        terminal::json(&serde_json::to_string(&entry).expect("entries serialize"))
    } else {
        let mut t = format!(
            "name    {}\nkind    {}",
            escape(&entry.name),
            entry.kind.as_str()
        );
        if entry.kind == Kind::File {
            t += &format!("\nsize    {} bytes", entry.size);
            if entry.size >= 1024 {
                t += &format!(" ({})", human(entry.size));
            }
        }
        t += &format!("\nmtime   {} UTC ({})", utc(entry.mtime), entry.mtime);
        if let Some(hash) = &entry.blake3 {
            t += &format!("\nblake3  {}", escape(hash));
        }
        t
    };
    text.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_failed)
}
