//! What `sft get` and `sft send` show a person while they work: progress bars on a terminal
//! (per file, and overall for many files), notes with `-v`, warnings, and retries — all on
//! standard error, which keeps standard output for data and `--json`.
//!
//! Bars appear only when standard error is a terminal and `-q` was not given, so pipes and logs
//! never receive them.

use crate::escape;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sft_client::Progress;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How loud `sft` is, and its progress bars when it draws them.
#[derive(Debug)]
pub(crate) struct Ui {
    /// `-q`: nothing on success but warnings.
    pub(crate) quiet: bool,
    /// `-v`: a line per file, connections, retries in detail.
    pub(crate) verbose: bool,
    /// `--json`: results as JSON lines on standard output.
    pub(crate) json: bool,
    /// `--timeout`: how long a connection may move nothing.
    pub(crate) stall: Option<std::time::Duration>,
    bars: Option<Arc<Bars>>,
}

impl Ui {
    /// Bars are drawn when standard error is a terminal, unless `quiet`.
    pub(crate) fn new(
        quiet: bool,
        verbose: bool,
        json: bool,
        stall: Option<std::time::Duration>,
    ) -> Ui {
        let draw = !quiet && std::io::stderr().is_terminal();
        Ui {
            quiet,
            verbose: verbose && !quiet,
            json,
            stall,
            bars: draw.then(|| Arc::new(Bars::new())),
        }
    }

    /// What a client reports its transfers to.
    pub(crate) fn progress(&self) -> Option<Arc<dyn Progress>> {
        self.bars.clone().map(|b| b as Arc<dyn Progress>)
    }

    /// Announces a batch of `files` transfers of `bytes` in all (when known): an overall bar
    /// joins the per-file one when there is more than one file.
    pub(crate) fn batch(&self, files: usize, bytes: Option<u64>) {
        if let Some(bars) = &self.bars {
            if files > 1 {
                bars.overall(files as u64, bytes);
            }
        }
    }

    /// The current file is done (or failed): its bar goes, the overall bar moves on.
    pub(crate) fn file_done(&self) {
        if let Some(bars) = &self.bars {
            bars.file_done();
        }
    }

    /// Removes every bar (before the final summary).
    pub(crate) fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.clear();
        }
    }

    /// Prints a line on standard error, above any bars.
    pub(crate) fn line(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars.multi.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Prints a line on standard output (a `--json` result), above any bars.
    pub(crate) fn line_out(&self, line: &str) {
        let line = super::terminal::json(line);
        match &self.bars {
            Some(bars) => bars.multi.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// A line for `-v` only.
    pub(crate) fn note(&self, line: &str) {
        if self.verbose {
            self.line(line);
        }
    }

    /// A warning: shown unless `-q`.
    pub(crate) fn warn(&self, what: &str) {
        if !self.quiet {
            self.line(&format!("warning: {what}"));
        }
    }
}

/// The bars: an optional overall one, and one for the file in progress.
#[derive(Debug)]
struct Bars {
    multi: MultiProgress,
    overall: Mutex<Option<Overall>>,
    current: Mutex<Option<ProgressBar>>,
}

/// The overall bar of a batch: by bytes when the batch's size is known, else by files.
#[derive(Debug)]
struct Overall {
    bar: ProgressBar,
    by_bytes: bool,
    /// Bytes of the files already done (by-bytes bars).
    finished: AtomicU64,
    files: u64,
    files_done: AtomicU64,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid progress template")
        .progress_chars("=> ")
}

/// A file of known size: bytes, percent, rate, time left.
fn file_style() -> ProgressStyle {
    style(
        "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {percent:>3}% {binary_bytes_per_sec} \
         ETA {eta}",
    )
}

/// A stream of unknown size: bytes and rate so far.
fn stream_style() -> ProgressStyle {
    style("{msg:24!} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}")
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            overall: Mutex::new(None),
            current: Mutex::new(None),
        }
    }

    fn overall(&self, files: u64, bytes: Option<u64>) {
        // Into the display first: a bar changed before it is added draws on its own.
        let bar = self.multi.add(ProgressBar::hidden());
        match bytes {
            Some(total) => {
                bar.set_style(style(
                    "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {percent:>3}% \
                     {binary_bytes_per_sec} ETA {eta} ({prefix} files)",
                ));
                bar.set_length(total);
            }
            None => {
                bar.set_style(style(
                    "{msg:24!} [{bar:30}] {pos}/{len} files, {elapsed} elapsed",
                ));
                bar.set_length(files);
            }
        }
        bar.set_message("total");
        bar.set_prefix(format!("0/{files}"));
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.overall.lock().expect("bars lock") = Some(Overall {
            bar,
            by_bytes: bytes.is_some(),
            finished: AtomicU64::new(0),
            files,
            files_done: AtomicU64::new(0),
        });
    }

    fn file_done(&self) {
        let len = self
            .current
            .lock()
            .expect("bars lock")
            .as_ref()
            .and_then(|b| b.length())
            .unwrap_or(0);
        if let Some(o) = self.overall.lock().expect("bars lock").as_ref() {
            let n = o.files_done.fetch_add(1, Ordering::Relaxed) + 1;
            o.bar.set_prefix(format!("{n}/{}", o.files));
            if o.by_bytes {
                let finished = o.finished.fetch_add(len, Ordering::Relaxed) + len;
                o.bar.set_position(finished);
            } else {
                o.bar.set_position(n);
            }
        }
    }

    fn clear(&self) {
        if let Some(bar) = self.current.lock().expect("bars lock").take() {
            bar.finish_and_clear();
        }
        if let Some(o) = self.overall.lock().expect("bars lock").take() {
            o.bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

impl Progress for Bars {
    fn start(&self, remote: &str, total: Option<u64>, done: u64) {
        // Set up out of sight, then shown: a bar changed while visible draws each change.
        let bar = ProgressBar::hidden();
        match total {
            Some(total) => {
                bar.set_style(file_style());
                bar.set_length(total);
            }
            None => bar.set_style(stream_style()),
        }
        bar.set_message(escape(remote));
        bar.set_position(done);
        let mut current = self.current.lock().expect("bars lock");
        if let Some(old) = current.take() {
            old.finish_and_clear();
            self.multi.remove(&old);
        }
        let bar = self.multi.add(bar);
        bar.enable_steady_tick(Duration::from_millis(200));
        *current = Some(bar);
        drop(current);
        if let Some(o) = self.overall.lock().expect("bars lock").as_ref() {
            if o.by_bytes {
                o.bar
                    .set_position(o.finished.load(Ordering::Relaxed).saturating_add(done));
            }
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.current.lock().expect("bars lock").as_ref() {
            bar.inc(n);
        }
        if let Some(o) = self.overall.lock().expect("bars lock").as_ref() {
            if o.by_bytes {
                o.bar.inc(n);
            }
        }
    }
}
