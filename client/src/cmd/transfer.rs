//! What `get` and `send` share: connecting, retrying after a dropped connection, and reporting
//! each transfer and the whole batch.

use super::size::{human, rate};
use super::ui::Ui;
use super::Common;
use crate::{escape, Failure};
use async_std::task;
use sft_client::{parse_server, Client, Error, ExitCode, ServerAddr, Transfer};
use std::path::Path;
use std::time::{Duration, Instant};

/// The first wait before reconnecting; it doubles with each retry, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Parses SERVER (a usage error if malformed).
pub(crate) fn server_addr(server: &str, common: &Common) -> Result<ServerAddr, Failure> {
    parse_server(server, common.port).map_err(Failure::Usage)
}

/// Connects, with the display's progress reporting installed.
pub(crate) async fn connect(server: &ServerAddr, ui: &Ui) -> Result<Client, Error> {
    let mut client = ui.settings.connect(server).await?;
    client.set_progress(ui.progress());
    ui.note(&format!("connected to {server}"));
    Ok(client)
}

/// `--retries N`: how many more times a dropped connection is re-made, and the wait before.
#[derive(Debug)]
pub(crate) struct Retry {
    limit: u32,
    used: u32,
    delay: Duration,
}

impl Retry {
    pub(crate) fn new(limit: u32) -> Retry {
        Retry {
            limit,
            used: 0,
            delay: FIRST_BACKOFF,
        }
    }

    /// Attempts made so far, the first included.
    pub(crate) fn attempts(&self) -> u32 {
        self.used + 1
    }

    /// Whether this is a retry (a later attempt).
    pub(crate) fn retrying(&self) -> bool {
        self.used > 0
    }

    /// Whether to try again after `e`, and if so waits the backoff first (logging the retry
    /// unless `-q`). Only a transient failure is retried — a connection cut off, a server too
    /// busy to take one more — and, once retrying, a reconnection that fails; never a refusal
    /// or a protocol error.
    pub(crate) async fn again(&mut self, e: &Error, ui: &Ui) -> bool {
        let retryable = match e {
            e if e.is_transient() => true,
            Error::Connect { .. } | Error::Resolve { .. } => self.retrying(),
            _ => false,
        };
        if !retryable || self.used >= self.limit {
            return false;
        }
        self.used += 1;
        if !ui.quiet {
            ui.line(&format!(
                "retry {}/{} in {} ms: {}",
                self.used,
                self.limit,
                self.delay.as_millis(),
                escape(&e.to_string())
            ));
        }
        task::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
        true
    }

    /// Connects again after a cut-off, retrying a failed connection while retries are left.
    pub(crate) async fn reconnect(
        &mut self,
        server: &ServerAddr,
        ui: &Ui,
    ) -> Result<Client, Error> {
        loop {
            match connect(server, ui).await {
                Ok(client) => return Ok(client),
                Err(e) => {
                    if !self.again(&e, ui).await {
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// The outcome of one transfer, for `--json` and `-v`.
pub(crate) struct Line<'a> {
    pub(crate) verb: &'a str,
    pub(crate) remote: &'a str,
    pub(crate) local: &'a str,
}

impl Line<'_> {
    /// The JSON line of a transfer that succeeded (the fields the README documents).
    pub(crate) fn json_ok(&self, t: &Transfer, secs: f64, attempts: u32) -> serde_json::Value {
        let rate = t.bytes_transferred as f64 / secs.max(1e-9);
        let mut line = serde_json::json!({
            "verb": self.verb,
            "remote": self.remote,
            "local": self.local,
            "size": t.size,
            "bytes_transferred": t.bytes_transferred,
            "bytes_reused": t.bytes_reused,
            "method": if t.delta { "delta" } else { "whole" },
            "compressed": t.compressed,
            "resumed_from": t.resumed_from,
            "blake3": t.blake3,
            "elapsed_ms": (secs * 1e3 * 1e3).round() / 1e3,
            "bytes_per_sec": rate.round(),
        });
        if attempts > 1 {
            line["attempts"] = attempts.into();
        }
        line
    }

    /// The JSON line of a transfer that failed.
    pub(crate) fn json_err(&self, e: &Error) -> serde_json::Value {
        serde_json::json!({
            "verb": self.verb,
            "remote": self.remote,
            "local": self.local,
            "error": {"code": e.code_name(), "message": escape(&e.to_string())},
            "exit_code": e.exit_code() as i32,
        })
    }

    /// `from → to`, in the transfer's direction.
    pub(crate) fn arrow(&self) -> String {
        let (from, to) = if self.verb == "get" {
            (self.remote, self.local)
        } else {
            (self.local, self.remote)
        };
        format!("{} → {}", escape(from), escape(to))
    }
}

/// Reports one transfer done on its own: a JSON line with `--json`, else a summary unless `-q`
/// (with its hash under `-v`).
pub(crate) fn report_single(
    ui: &Ui,
    line: &Line<'_>,
    t: &Transfer,
    started: Instant,
    attempts: u32,
) {
    ui.finish();
    let secs = started.elapsed().as_secs_f64();
    if ui.json {
        ui.line_out(&line.json_ok(t, secs, attempts).to_string());
    } else if ui.summary {
        eprintln!(
            "{} {}: {}",
            line.verb,
            line.arrow(),
            summary(t, secs, attempts)
        );
        if let Some(hash) = t.blake3.as_deref().filter(|_| ui.verbose) {
            eprintln!("blake3 {}", escape(hash));
        }
    }
}

/// `1.2 GiB in 3.20 s (380 MiB/s, verified)`; for a resumed transfer the rate is that of the
/// bytes moved now: `1.2 GiB, 120 MiB moved in 0.31 s (387 MiB/s, resumed at 1.1 GiB, …)`.
fn summary(t: &Transfer, secs: f64, attempts: u32) -> String {
    let mut text = human(t.size);
    if t.delta {
        text += &format!(", {} moved (delta)", human(t.bytes_transferred));
    } else if t.resumed_from > 0 || t.compressed {
        text += &format!(", {} moved", human(t.bytes_transferred));
    }
    text += &format!(" in {secs:.2} s ({}", rate(t.bytes_transferred, secs));
    if t.resumed_from > 0 {
        text += &format!(", resumed at {}", human(t.resumed_from));
    }
    if t.compressed {
        text += ", zstd";
    }
    if t.blake3.is_some() {
        text += ", verified";
    }
    if attempts > 1 {
        text += &format!(", {attempts} attempts");
    }
    text + ")"
}

/// Counts a batch's transfers as they finish, reports each (`--json`, `-v`, errors), and sums
/// them up at the end.
#[derive(Debug)]
pub(crate) struct Tally {
    verb: &'static str,
    started: Instant,
    last: Instant,
    files: u64,
    folders: u64,
    bytes: u64,
    /// The transferred files' sizes, and how much of them came from the destination's old
    /// versions (deltas).
    size: u64,
    reused: u64,
    failed: u64,
    /// Files already at the destination, identical: not transferred.
    skipped: u64,
    /// The first failure's exit code and name.
    first: Option<(ExitCode, &'static str)>,
}

impl Tally {
    pub(crate) fn new(verb: &'static str) -> Tally {
        let now = Instant::now();
        Tally {
            verb,
            started: now,
            last: now,
            files: 0,
            folders: 0,
            bytes: 0,
            size: 0,
            reused: 0,
            failed: 0,
            skipped: 0,
            first: None,
        }
    }

    /// A transfer succeeded.
    pub(crate) fn ok(&mut self, ui: &Ui, remote: &str, local: &str, t: &Transfer, attempts: u32) {
        let secs = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        self.files += 1;
        self.bytes += t.bytes_transferred;
        self.size += t.size;
        self.reused += t.bytes_reused;
        let line = Line {
            verb: self.verb,
            remote,
            local,
        };
        if ui.json {
            ui.line_out(&line.json_ok(t, secs, attempts).to_string());
        } else if ui.verbose {
            // Only shown with -v: not even formatted otherwise (one per file of a folder).
            ui.note(&format!(
                "{} {}: {}",
                self.verb,
                line.arrow(),
                summary(t, secs, attempts)
            ));
        }
    }

    /// A folder was created (a `-v` note).
    pub(crate) fn folder(&mut self, ui: &Ui, what: &str) {
        self.folders += 1;
        ui.note(&format!("{} folder {}", self.verb, escape(what)));
    }

    /// A file was already at its destination, identical: not transferred (a `-v` note, and a
    /// `--json` line).
    pub(crate) fn skipped(&mut self, ui: &Ui, remote: &str, local: &str) {
        self.last = Instant::now();
        self.skipped += 1;
        let line = Line {
            verb: self.verb,
            remote,
            local,
        };
        if ui.json {
            let json = serde_json::json!({
                "verb": self.verb, "remote": remote, "local": local, "skipped": true,
            });
            ui.line_out(&json.to_string());
        } else {
            ui.note(&format!(
                "{} {}: skipped (identical)",
                self.verb,
                line.arrow()
            ));
        }
    }

    /// A file was left alone because the destination holds another version (no
    /// `--overwrite`): counted as failed, with the `exists` code.
    pub(crate) fn changed(&mut self, ui: &Ui, remote: &str, local: &str) {
        self.last = Instant::now();
        self.failed += 1;
        self.first
            .get_or_insert((ExitCode::Refused, sft_client::ErrorCode::Exists.as_str()));
        let dest = if self.verb == "get" { local } else { remote };
        let message = super::sync::changed_line(dest);
        if ui.json {
            let json = serde_json::json!({
                "verb": self.verb, "remote": remote, "local": local,
                "error": {"code": "exists", "message": message},
                "exit_code": ExitCode::Refused as i32,
            });
            ui.line_out(&json.to_string());
        }
        ui.line(&message);
    }

    /// A transfer failed; the batch goes on.
    pub(crate) fn failed(&mut self, ui: &Ui, remote: &str, local: &str, e: &Error) {
        self.last = Instant::now();
        self.failed += 1;
        self.first.get_or_insert((e.exit_code(), e.code_name()));
        let line = Line {
            verb: self.verb,
            remote,
            local,
        };
        if ui.json {
            ui.line_out(&line.json_err(e).to_string());
        }
        ui.line(&format!(
            "error: {}: {}",
            line.arrow(),
            escape(&e.to_string())
        ));
        if e.is_transient() {
            ui.working_on(
                self.verb,
                remote,
                (self.verb == "get").then(|| Path::new(local)),
            );
            ui.cut_off(e);
        }
    }

    /// `n` transfers were never tried: the connection broke with `e` before them.
    pub(crate) fn abandoned(&mut self, ui: &Ui, n: usize, e: &Error) {
        if n == 0 {
            return;
        }
        self.failed += n as u64;
        self.first.get_or_insert((e.exit_code(), e.code_name()));
        ui.line(&format!(
            "error: {n} more file(s) not transferred: the connection could not go on"
        ));
    }

    /// The summary line (unless `-q` or `--json`), and the batch's failure if any failed.
    pub(crate) fn finish(self, ui: &Ui) -> Result<(), Failure> {
        ui.finish();
        let secs = self.started.elapsed().as_secs_f64();
        if ui.json {
            let json = serde_json::json!({
                "verb": self.verb,
                "summary": true,
                "transferred": self.files,
                "skipped": self.skipped,
                "failed": self.failed,
                "folders": self.folders,
                "bytes_transferred": self.bytes,
                "bytes_reused": self.reused,
                "size": self.size,
                "elapsed_ms": (secs * 1e3 * 1e3).round() / 1e3,
            });
            ui.line_out(&json.to_string());
        }
        if ui.summary && !ui.json {
            let folders = if self.folders > 0 {
                format!(", {} folder(s)", self.folders)
            } else {
                String::new()
            };
            let skipped = if self.skipped > 0 {
                format!(", {} skipped", self.skipped)
            } else {
                String::new()
            };
            let failed = if self.failed > 0 {
                format!(", {} failed", self.failed)
            } else {
                String::new()
            };
            // What a delta or compression saved shows as the files' size beside what moved.
            let moved = if self.bytes < self.size {
                format!("{}, {} moved", human(self.size), human(self.bytes))
            } else {
                human(self.bytes)
            };
            eprintln!(
                "{}: {} file(s), {moved} in {secs:.2} s ({}){folders}{skipped}{failed}",
                self.verb,
                self.files,
                rate(self.bytes, secs)
            );
        }
        match self.first {
            None => Ok(()),
            Some((code, name)) => Err(Failure::Batch {
                code,
                name,
                message: format!(
                    "{} of {} transfers failed",
                    self.failed,
                    self.failed + self.files + self.folders + self.skipped
                ),
            }),
        }
    }
}
