//! `sft rm SERVER PATH... [--folder]` and `sft mkdir SERVER PATH...`: one request per path on
//! the server, going on past a refusal.

use super::terminal::json as safe;
use crate::{escape, Failure};
use sft_client::{Client, Error, ExitCode};

/// What is done to each path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change {
    /// Remove a file or symlink, or with `folder` an empty folder (`DELETE`).
    Remove { folder: bool },
    /// Create a folder and its missing parents (`MKDIR`).
    Mkdir,
}

/// What was done to one path: the JSON field that says so, and the words for a person.
struct Done {
    field: (&'static str, serde_json::Value),
    said: String,
}

impl Change {
    async fn apply(self, client: &mut Client, path: &str) -> Result<Done, Error> {
        Ok(match self {
            Change::Remove { folder } => {
                let kind = client.delete(path, folder).await?.as_str();
                Done {
                    field: ("kind", kind.into()),
                    said: format!("removed {} ({kind})", escape(path)),
                }
            }
            Change::Mkdir => {
                let created = client.mkdir(path).await?;
                let said = match created {
                    true => format!("created {}", escape(path)),
                    false => format!("{} exists already", escape(path)),
                };
                Done {
                    field: ("created", created.into()),
                    said,
                }
            }
        })
    }

    /// The past participle a summary of failures uses.
    fn not_done(self) -> &'static str {
        match self {
            Change::Remove { .. } => "removed",
            Change::Mkdir => "created",
        }
    }
}

/// Applies `change` to each of `paths` in turn, going on past a refusal. Prints nothing on
/// success unless `verbose` (a line per path on standard error) or `json` (a JSON line per path
/// on standard output, `{"path":…,"kind":…}` (rm), `{"path":…,"created":…}` (mkdir) or
/// `{"path":…,"error":{…},"exit_code":N}`). One path that fails is that failure; with several,
/// the first failure's code.
pub(crate) async fn run(
    client: &mut Client,
    change: Change,
    paths: &[String],
    verbose: bool,
    json: bool,
) -> Result<(), Failure> {
    if let [path] = paths {
        let done = change.apply(client, path).await?;
        report_ok(path, done, verbose, json);
        return Ok(());
    }
    let mut first: Option<(ExitCode, &'static str)> = None;
    let mut failed = 0;
    for (i, path) in paths.iter().enumerate() {
        match change.apply(client, path).await {
            Ok(done) => report_ok(path, done, verbose, json),
            Err(e) => {
                failed += 1;
                first.get_or_insert((e.exit_code(), e.code_name()));
                report_err(path, &e, json);
                if client.is_broken() {
                    let left = paths.len() - i - 1;
                    if left > 0 {
                        eprintln!(
                            "error: {left} more path(s) not {}: the connection could not go on",
                            change.not_done()
                        );
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
            message: format!(
                "{failed} of {} paths not {}",
                paths.len(),
                change.not_done()
            ),
        }),
    }
}

fn report_ok(path: &str, done: Done, verbose: bool, json: bool) {
    if json {
        let mut line = serde_json::json!({ "path": path });
        line[done.field.0] = done.field.1;
        println!("{}", safe(&line.to_string()));
    }
    if verbose {
        eprintln!("{}", done.said);
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
