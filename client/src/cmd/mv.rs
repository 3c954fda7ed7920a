//! `sft mv SERVER FROM TO [--overwrite]`: move a file or folder on the server, atomically.

use super::terminal::json as safe;
use crate::{escape, Failure};
use sft_client::Client;

/// Moves `from` to `to`. Prints nothing on success unless `verbose` (a line on standard error)
/// or `json` (`{"from":…,"to":…,"kind":…}` on standard output).
pub(crate) async fn run(
    client: &mut Client,
    from: &str,
    to: &str,
    overwrite: bool,
    verbose: bool,
    json: bool,
) -> Result<(), Failure> {
    let kind = client.rename(from, to, overwrite).await?;
    if json {
        let line = serde_json::json!({"from": from, "to": to, "kind": kind.as_str()});
        println!("{}", safe(&line.to_string()));
    }
    if verbose {
        eprintln!(
            "moved {} → {} ({})",
            escape(from),
            escape(to),
            kind.as_str()
        );
    }
    Ok(())
}
