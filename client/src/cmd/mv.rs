//! `sft mv SERVER FROM TO [--overwrite]`: move a file or folder on the server, atomically.

use super::local::{remote_join, remote_name};
use super::terminal::json as safe;
use crate::{escape, Failure};
use sft_client::{Client, Error, Kind};

/// Moves `from` to `to` — into `to` when that is a folder or ends in `/`, as `mv` and scp do.
/// Prints nothing on success unless `verbose` (a line on standard error) or `json`
/// (`{"from":…,"to":…,"kind":…}` on standard output, `to` where it went).
pub(crate) async fn run(
    client: &mut Client,
    from: &str,
    to: &str,
    overwrite: bool,
    verbose: bool,
    json: bool,
) -> Result<(), Failure> {
    let to = destination(client, from, to).await?;
    let kind = client.rename(from, &to, overwrite).await?;
    if json {
        let line = serde_json::json!({"from": from, "to": to, "kind": kind.as_str()});
        println!("{}", safe(&line.to_string()));
    }
    if verbose {
        eprintln!(
            "moved {} → {} ({})",
            escape(from),
            escape(&to),
            kind.as_str()
        );
    }
    Ok(())
}

/// Where `from` goes: inside `to` when `to` ends in `/` or is a folder (one `STAT`), else `to`
/// itself. What is then at the new path follows RENAME's rules (`--overwrite`; a folder is
/// never replaced).
async fn destination(client: &mut Client, from: &str, to: &str) -> Result<String, Failure> {
    let into = to.ends_with('/')
        || match client.stat_quick(to).await {
            Ok(entry) => entry.kind == Kind::Folder,
            Err(Error::Remote(_)) => false,
            Err(e) => return Err(e.into()),
        };
    if !into {
        return Ok(to.to_owned());
    }
    let name = remote_name(from).ok_or_else(|| {
        Failure::Usage(format!(
            "{} names nothing to move into {}",
            escape(from),
            escape(to)
        ))
    })?;
    Ok(remote_join(to, name))
}
