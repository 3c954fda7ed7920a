//! `sft ls SERVER [DIR] [-r] [--json]`: a folder's entries, printed as they arrive.

use super::stdout_failed;
use super::terminal::json as safe;
use super::time::utc;
use crate::{escape, Failure};
use sft_client::{Client, Entry, Error, Kind};
use std::io::{BufWriter, Write};

/// Lists `dir`: a table, or one JSON document (`{"path":…,"recursive":…,"entries":[…],
/// "count":N,"skipped":K}`) written entry by entry, so a huge tree is never held in memory.
pub(crate) async fn run(
    client: &mut Client,
    dir: &str,
    recursive: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut listing = client.list(dir, recursive).await?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        let path = safe(&serde_json::to_string(listing.path()).expect("strings serialize"));
        write!(
            out,
            "{{\"path\":{path},\"recursive\":{recursive},\"entries\":["
        )
        .map_err(stdout_failed)?;
    }
    let mut shown = 0u64;
    let failed = loop {
        let entry = match listing.next().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        if let Some(err) = &entry.error {
            eprintln!(
                "warning: {}: contents not listed: {}",
                escape(&entry.name),
                escape(&err.message)
            );
        }
        if json {
            if shown > 0 {
                out.write_all(b",").map_err(stdout_failed)?;
            }
            let line = serde_json::to_string(&entry).expect("entries serialize");
            out.write_all(safe(&line).as_bytes())
                .map_err(stdout_failed)?;
        } else {
            writeln!(out, "{}", row(&entry)).map_err(stdout_failed)?;
        }
        shown += 1;
    };
    let end = listing.end().cloned();
    drop(listing);
    if json {
        // Keep the document valid JSON whenever the server ended the stream itself.
        match (&failed, &end) {
            (None, Some(end)) => writeln!(
                out,
                "],\"count\":{},\"skipped\":{}}}",
                end.count, end.skipped
            ),
            (Some(Error::Remote(e)), _) => writeln!(
                out,
                "],\"error\":{}}}",
                safe(&serde_json::to_string(e).expect("errors serialize"))
            ),
            _ => Ok(()),
        }
        .map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)?;
    if let Some(end) = end.filter(|end| end.skipped > 0) {
        eprintln!(
            "warning: {} entries not shown: names that are not UTF-8, or too long to send",
            end.skipped
        );
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `kind  size  date time  name`; sizes are shown for files only.
fn row(e: &Entry) -> String {
    let size = match e.kind {
        Kind::File => e.size.to_string(),
        _ => "-".into(),
    };
    format!(
        "{:<7} {:>12}  {}  {}",
        e.kind.as_str(),
        size,
        utc(e.mtime),
        escape(&e.name)
    )
}
