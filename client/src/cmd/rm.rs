//! `sft rm SERVER PATH... [--folder]`: remove files (or empty folders) on the server.

use super::terminal::json as safe;
use crate::{escape, Failure};
use sft_client::{Client, Error};

/// Removes each of `paths` in turn, going on past a refusal. Prints nothing on success unless
/// `verbose` (a line per path on standard error) or `json` (a JSON line per path on standard
/// output, `{"path":…,"kind":…}` or `{"path":…,"error":{…},"exit_code":N}`). One path that
/// fails is that failure; with several, the first failure's code.
pub(crate) async fn run(
    client: &mut Client,
    paths: &[String],
    folder: bool,
    verbose: bool,
    json: bool,
) -> Result<(), Failure> {
    if let [path] = paths {
        let kind = client.delete(path, folder).await?;
        report_ok(path, kind, verbose, json);
        return Ok(());
    }
    let mut first: Option<(sft_client::ExitCode, &'static str)> = None;
    let mut failed = 0;
    for (i, path) in paths.iter().enumerate() {
        match client.delete(path, folder).await {
            Ok(kind) => report_ok(path, kind, verbose, json),
            Err(e) => {
                failed += 1;
                first.get_or_insert((e.exit_code(), e.code_name()));
                report_err(path, &e, json);
                if client.is_broken() {
                    let left = paths.len() - i - 1;
                    if left > 0 {
                        eprintln!("error: {left} more path(s) not removed: the connection could not go on");
                        failed += left;
                    }
                    break;
                }
            }
        }
    }
    match first {
        None => Ok(()),
        Some((code, name)) => Err(Failure::Batch {
            code,
            name,
            message: format!("{failed} of {} paths not removed", paths.len()),
        }),
    }
}

fn report_ok(path: &str, kind: sft_client::Kind, verbose: bool, json: bool) {
    if json {
        let line = serde_json::json!({"path": path, "kind": kind.as_str()});
        println!("{}", safe(&line.to_string()));
    }
    if verbose {
        eprintln!("removed {} ({})", escape(path), kind.as_str());
    }
}

fn report_err(path: &str, e: &Error, json: bool) {
    if json {
        let line = serde_json::json!({
            "path": path,
            "error": {"code": e.code_name(), "message": escape(&e.to_string())},
            "exit_code": e.exit_code() as i32,
        });
        println!("{}", safe(&line.to_string()));
    }
    eprintln!("error: {}: {}", escape(path), escape(&e.to_string()));
}
