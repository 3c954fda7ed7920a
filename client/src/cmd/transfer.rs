//! What `get` and `send` share: connecting, retrying after a dropped connection, and reporting
//! each transfer and the whole batch.

use super::size::{human, rate};
use super::sync::Action;
use super::ui::Ui;
use super::Common;
use crate::{escape, Failure};
use async_std::task;
use sft_client::{parse_server, Client, Error, ExitCode, Kind, ServerAddr, Transfer};
use std::collections::HashSet;
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

    /// Connects (first, or again after a cut-off), retrying while retries are left: a
    /// transient refusal (`busy`, `unavailable`) always, a failed connection once retrying.
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
    pub(crate) fn json_ok(
        &self,
        action: Option<Action>,
        t: &Transfer,
        secs: f64,
        attempts: u32,
    ) -> serde_json::Value {
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
        if let Some(action) = action {
            line["action"] = action.name().into();
        }
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

    /// The destination: the local file of a download, the remote one of an upload.
    fn dest(&self) -> &str {
        if self.verb == "get" {
            self.local
        } else {
            self.remote
        }
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

/// Reports one transfer done on its own (`action`: of a new file or a replaced one, when
/// known): a JSON line with `--json`, else a summary unless `-q` (with its hash under `-v`).
pub(crate) fn report_single(
    ui: &Ui,
    line: &Line<'_>,
    action: Option<Action>,
    t: &Transfer,
    started: Instant,
    attempts: u32,
) {
    ui.finish();
    let secs = started.elapsed().as_secs_f64();
    if ui.json {
        ui.line_out(&line.json_ok(action, t, secs, attempts).to_string());
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
    /// Of `files`, those that replaced another version (the others were new).
    replaced: u64,
    /// Files left alone because the destination holds another version (counted in `failed`
    /// too): a decision, not a failure, so `--delete` still goes ahead.
    changed: u64,
    /// Entries `--delete` removed (in a dry run: would remove).
    deleted: u64,
    /// Deletions that failed (counted in `failed` too).
    delete_failed: u64,
    /// Why `--delete` removed nothing, when the run was not complete.
    withheld: Option<String>,
    /// `-n`: nothing moves, and `files` counts what would.
    dry_run: bool,
    /// Destinations being replaced now, for the `"action"` of their lines.
    replacing: HashSet<String>,
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
            replaced: 0,
            changed: 0,
            deleted: 0,
            delete_failed: 0,
            withheld: None,
            dry_run: false,
            replacing: HashSet::new(),
            first: None,
        }
    }

    /// The same, for a dry run (`-n`) when `yes`.
    pub(crate) fn dry_run(self, yes: bool) -> Tally {
        Tally {
            dry_run: yes,
            ..self
        }
    }

    /// Whether nothing failed so far but files left alone as changed: what `--delete` needs
    /// before it removes anything.
    pub(crate) fn clean(&self) -> bool {
        self.failed == self.changed && self.withheld.is_none()
    }

    /// The file going to `dest` (local for `get`, remote for `send`) replaces another
    /// version: its line says so when it is done.
    pub(crate) fn replacing(&mut self, dest: &str) {
        self.replacing.insert(dest.to_owned());
    }

    /// A dry run's decision for one file that would move (`action` is [`Action::New`] or
    /// [`Action::Replace`]): a line on standard output, `--json` or text.
    pub(crate) fn planned(
        &mut self,
        ui: &Ui,
        remote: &str,
        local: &str,
        action: Action,
        size: u64,
    ) {
        self.files += 1;
        if action == Action::Replace {
            self.replaced += 1;
        }
        let line = Line {
            verb: self.verb,
            remote,
            local,
        };
        if ui.json {
            let json = serde_json::json!({
                "verb": self.verb, "remote": remote, "local": local,
                "action": action.name(), "size": size, "dry_run": true,
            });
            ui.line_out(&json.to_string());
        } else {
            ui.text_out(&format!(
                "{} {}: {}",
                self.verb,
                line.arrow(),
                action.name()
            ));
        }
    }

    /// `--delete` removed `path` (local for `get`, remote for `send`), a `kind`; in a dry run,
    /// would remove it. Text: `deleting PATH` (a folder with a `/`), always in a dry run, with
    /// `-v` otherwise.
    pub(crate) fn deleted(&mut self, ui: &Ui, path: &str, kind: Kind) {
        self.deleted += 1;
        if ui.json {
            let mut json = self.delete_json(path);
            json["kind"] = kind.as_str().into();
            if self.dry_run {
                json["dry_run"] = true.into();
            }
            ui.line_out(&json.to_string());
            return;
        }
        let slash = if kind == Kind::Folder { "/" } else { "" };
        let text = format!("deleting {}{slash}", escape(path));
        if self.dry_run {
            ui.text_out(&text);
        } else {
            ui.note(&text);
        }
    }

    /// `--delete` could not remove `path`.
    pub(crate) fn delete_failed(&mut self, ui: &Ui, path: &str, e: &Error) {
        self.failed += 1;
        self.delete_failed += 1;
        self.first.get_or_insert((e.exit_code(), e.code_name()));
        if ui.json {
            let mut json = self.delete_json(path);
            json["error"] = serde_json::json!({
                "code": e.code_name(), "message": escape(&e.to_string()),
            });
            json["exit_code"] = (e.exit_code() as i32).into();
            ui.line_out(&json.to_string());
        }
        ui.line(&format!(
            "error: deleting {}: {}",
            escape(path),
            escape(&e.to_string())
        ));
    }

    fn delete_json(&self, path: &str) -> serde_json::Value {
        let side = if self.verb == "get" {
            "local"
        } else {
            "remote"
        };
        let mut json = serde_json::json!({"verb": self.verb, "action": "delete"});
        json[side] = path.into();
        json
    }

    /// `--delete` removes nothing, because of `why` (failed with `code` and `name` unless the
    /// run failed already).
    pub(crate) fn withhold(&mut self, ui: &Ui, why: String, code: ExitCode, name: &'static str) {
        self.first.get_or_insert((code, name));
        ui.line(&format!("error: nothing deleted: {why}"));
        self.withheld = Some(why);
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
        let action = if self.replacing.remove(line.dest()) {
            self.replaced += 1;
            Action::Replace
        } else {
            Action::New
        };
        if ui.json {
            ui.line_out(&line.json_ok(Some(action), t, secs, attempts).to_string());
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
            let mut json = serde_json::json!({
                "verb": self.verb, "remote": remote, "local": local, "action": "skip",
                "skipped": true,
            });
            if self.dry_run {
                json["dry_run"] = true.into();
            }
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
        self.changed += 1;
        self.first
            .get_or_insert((ExitCode::Refused, sft_client::ErrorCode::Exists.as_str()));
        let dest = if self.verb == "get" { local } else { remote };
        let message = super::sync::changed_line(dest);
        if ui.json {
            let mut json = serde_json::json!({
                "verb": self.verb, "remote": remote, "local": local, "action": "skip",
                "error": {"code": "exists", "message": message},
                "exit_code": ExitCode::Refused as i32,
            });
            if self.dry_run {
                json["dry_run"] = true.into();
            }
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
        self.replacing.remove(line.dest());
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
            let mut json = serde_json::json!({
                "verb": self.verb,
                "summary": true,
                "transferred": self.files,
                "new": self.files - self.replaced,
                "replaced": self.replaced,
                "skipped": self.skipped,
                "deleted": self.deleted,
                "failed": self.failed,
                "folders": self.folders,
                "bytes_transferred": self.bytes,
                "bytes_reused": self.reused,
                "size": self.size,
                "elapsed_ms": (secs * 1e3 * 1e3).round() / 1e3,
            });
            if self.dry_run {
                json["dry_run"] = true.into();
            }
            ui.line_out(&json.to_string());
        }
        if ui.summary && !ui.json {
            let counted = |n: u64, what: &str| {
                if n > 0 {
                    format!(", {n} {what}")
                } else {
                    String::new()
                }
            };
            let skipped = counted(self.skipped, "skipped");
            let failed = counted(self.failed, "failed");
            if self.dry_run {
                eprintln!(
                    "{} (dry run, nothing changed): {} file(s) to transfer ({} new, {} to \
                     replace){skipped}{}{failed}",
                    self.verb,
                    self.files,
                    self.files - self.replaced,
                    self.replaced,
                    counted(self.deleted, "to delete"),
                );
            } else {
                // What a delta or compression saved shows as the files' size beside what moved.
                let moved = if self.bytes < self.size {
                    format!("{}, {} moved", human(self.size), human(self.bytes))
                } else {
                    human(self.bytes)
                };
                eprintln!(
                    "{}: {} file(s), {moved} in {secs:.2} s ({}){}{skipped}{}{failed}",
                    self.verb,
                    self.files,
                    rate(self.bytes, secs),
                    counted(self.folders, "folder(s)"),
                    counted(self.deleted, "deleted"),
                );
            }
        }
        let Some((code, name)) = self.first else {
            return Ok(());
        };
        let transfers = self.failed - self.delete_failed;
        let mut parts = Vec::new();
        if transfers > 0 {
            parts.push(format!(
                "{transfers} of {} transfers failed",
                transfers + self.files + self.folders + self.skipped
            ));
        }
        if self.delete_failed > 0 {
            parts.push(format!(
                "{} of {} deletions failed",
                self.delete_failed,
                self.delete_failed + self.deleted
            ));
        }
        if let Some(why) = self.withheld {
            parts.push(format!("nothing deleted: {why}"));
        }
        Err(Failure::Batch {
            code,
            name,
            message: parts.join("; "),
        })
    }
}
