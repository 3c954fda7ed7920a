//! `sft ls SERVER [DIR] [-r] [-h] [--json]`: a folder's entries sorted by name (like `ls`),
//! or the line of a file.

use super::size::human;
use super::stdout_failed;
use super::terminal::json as safe;
use super::time::utc;
use crate::{escape, Failure};
use sft_client::{Client, Entry, Error, Kind};
use std::io::{BufWriter, IsTerminal, Write};

/// How `sft ls` shows its entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Look {
    /// One JSON document (sizes always in bytes).
    pub(crate) json: bool,
    /// Sizes as `1.5 MiB` rather than bytes.
    pub(crate) human: bool,
    /// A header line naming the columns (on a terminal).
    pub(crate) header: bool,
}

impl Look {
    /// `-h` / `--bytes` as given; else human sizes and a header on a terminal, raw bytes and
    /// no header in a pipe or a file.
    pub(crate) fn new(json: bool, human: bool, bytes: bool) -> Look {
        let terminal = std::io::stdout().is_terminal();
        Look {
            json,
            human: !json && !bytes && (human || terminal),
            header: !json && terminal,
        }
    }
}

/// Lists `dir`: a table sorted by name, or one JSON document (`{"path":…,"recursive":…,
/// "entries":[…],"count":N,"skipped":K}`) written entry by entry as they arrive, so a huge
/// tree is never held in memory. `dir` naming a file shows that file, as `ls` does.
pub(crate) async fn run(
    client: &mut Client,
    dir: &str,
    recursive: bool,
    look: Look,
) -> Result<(), Failure> {
    let refused = match folder(client, dir, recursive, look).await {
        Err(Refused(e)) if !client.is_broken() => e,
        Err(Refused(e)) => return Err(e.into()),
        Ok(result) => return result,
    };
    match client.stat(dir).await {
        Ok(entry) if entry.kind != Kind::Folder => one(&entry, dir, recursive, look),
        _ => Err(refused.into()),
    }
}

/// The server would not list DIR: maybe it is a file.
struct Refused(Error);

/// Lists the folder `dir`; `Err` when the server refused to.
async fn folder(
    client: &mut Client,
    dir: &str,
    recursive: bool,
    look: Look,
) -> Result<Result<(), Failure>, Refused> {
    let mut listing = match client.list(dir, recursive).await {
        Ok(listing) => listing,
        Err(e @ Error::Remote(_)) => return Err(Refused(e)),
        Err(e) => return Ok(Err(e.into())),
    };
    Ok(print(&mut listing, recursive, look).await)
}

/// Prints what `listing` holds, as it arrives (JSON) or sorted at its end (a table).
async fn print(
    listing: &mut sft_client::Listing<'_>,
    recursive: bool,
    look: Look,
) -> Result<(), Failure> {
    let json = look.json;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut rows = Vec::new();
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
            rows.push(entry);
        }
        shown += 1;
    };
    if !json {
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        if look.header && !rows.is_empty() {
            writeln!(out, "{}", header(look)).map_err(stdout_failed)?;
        }
        for entry in &rows {
            writeln!(out, "{}", row(entry, look)).map_err(stdout_failed)?;
        }
    }
    let end = listing.end().cloned();
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

/// The listing of a file: its own line (named as it was asked for), or a JSON document with
/// it as the only entry.
fn one(entry: &Entry, path: &str, recursive: bool, look: Look) -> Result<(), Failure> {
    let mut entry = entry.clone();
    entry.name = path.to_owned();
    let mut out = std::io::stdout().lock();
    let text = if look.json {
        let path = serde_json::to_string(path).expect("strings serialize");
        let entry = serde_json::to_string(&entry).expect("entries serialize");
        safe(&format!(
            "{{\"path\":{path},\"recursive\":{recursive},\"entries\":[{entry}],\"count\":1,\"skipped\":0}}"
        ))
    } else if look.header {
        format!("{}\n{}", header(look), row(&entry, look))
    } else {
        row(&entry, look)
    };
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(stdout_failed)
}

/// The width of the size column: bytes up to a terabyte, or `1023 KiB`.
fn size_width(look: Look) -> usize {
    if look.human {
        9
    } else {
        12
    }
}

/// The column names, above the rows on a terminal.
fn header(look: Look) -> String {
    format!(
        "{:<7} {:>w$}  {:<19}  NAME",
        "KIND",
        "SIZE",
        "MODIFIED (UTC)",
        w = size_width(look)
    )
}

/// `kind  size  date time  name`; sizes are shown for files only.
fn row(e: &Entry, look: Look) -> String {
    let size = match e.kind {
        Kind::File if look.human => human(e.size),
        Kind::File => e.size.to_string(),
        _ => "-".into(),
    };
    format!(
        "{:<7} {:>w$}  {}  {}",
        e.kind.as_str(),
        size,
        utc(e.mtime),
        escape(&e.name),
        w = size_width(look)
    )
}
