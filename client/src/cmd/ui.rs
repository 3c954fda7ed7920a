//! What `sft get` and `sft send` show a person while they work: progress bars on a terminal
//! (per file, and overall for many files), notes with `-v`, warnings, and retries — all on
//! standard error, which keeps standard output for data and `--json`.
//!
//! Bars appear only when standard error is a terminal and `-q` was not given, so pipes and logs
//! never receive them.

use super::connect::Settings;
use super::size::{human, rate};
use super::Common;
use crate::escape;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use sft_client::{partial_path, Error, Progress};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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
    /// How its connections are made.
    pub(crate) settings: Settings,
    /// Standard output carries a download's bytes: machine output goes to standard error.
    stdout_is_data: bool,
    /// Whether a success ends with a summary: on a terminal, or with `-v` (a log or a mail
    /// from cron gets nothing on success).
    pub(crate) summary: bool,
    bars: Option<Arc<Bars>>,
    /// Sizes of the batch's files known so far (from listings and stats): their count and sum.
    expected: Mutex<(usize, u64)>,
}

impl Ui {
    /// The display and connections `common` asks for: bars are drawn when standard error is
    /// a terminal, unless `-q`.
    pub(crate) fn new(common: &Common) -> Ui {
        let Common {
            quiet,
            verbose,
            json,
            ..
        } = *common;
        let terminal = std::io::stderr().is_terminal();
        let draw = !quiet && terminal;
        Ui {
            quiet,
            verbose: verbose && !quiet,
            json,
            settings: Settings::new(common),
            stdout_is_data: false,
            summary: !quiet && (verbose || terminal),
            bars: draw.then(|| Arc::new(Bars::new())),
            expected: Mutex::new((0, 0)),
        }
    }

    /// The same, for a download whose bytes go to standard output (`yes`).
    pub(crate) fn stdout_is_data(self, yes: bool) -> Ui {
        Ui {
            stdout_is_data: yes,
            ..self
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

    /// A file of `size` bytes will be in the batch (its size is known from a listing or a
    /// stat): the overall bar goes by bytes when every file's size is known.
    pub(crate) fn expect(&self, size: u64) {
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        expected.0 += 1;
        expected.1 = expected.1.saturating_add(size);
    }

    /// The bytes of a batch of `files` files, when [`Ui::expect`] was told every one.
    pub(crate) fn expected_bytes(&self, files: usize) -> Option<u64> {
        let (known, bytes) = *self.expected.lock().unwrap_or_else(|e| e.into_inner());
        (known == files).then_some(bytes)
    }

    /// The current file is done (or failed): its bar goes, the overall bar moves on.
    pub(crate) fn file_done(&self) {
        if let Some(bars) = &self.bars {
            bars.file_done();
        }
    }

    /// A file of the batch needs no transfer (skipped, or left alone): the overall bar counts
    /// it as done, with its `size` bytes.
    pub(crate) fn file_skipped(&self, size: u64) {
        if let Some(bars) = &self.bars {
            bars.file_skipped(size);
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

    /// Prints a line of machine output (a `--json` result), above any bars.
    pub(crate) fn line_out(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars
                .multi
                .suspend(|| super::machine_line(line, self.stdout_is_data)),
            None => super::machine_line(line, self.stdout_is_data),
        }
    }

    /// Prints a line of a result meant for people (escaped already) on standard output,
    /// above any bars.
    pub(crate) fn text_out(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars
                .multi
                .suspend(|| super::text_line(line, self.stdout_is_data)),
            None => super::text_line(line, self.stdout_is_data),
        }
    }

    /// A line for `-v` only.
    pub(crate) fn note(&self, line: &str) {
        if self.verbose {
            self.line(line);
        }
    }

    /// The transfer about to start, for the line that says where its partial is kept if it is
    /// cut off or interrupted (Ctrl-C): `partial` is the local partial file of a download.
    pub(crate) fn working_on(&self, verb: &'static str, remote: &str, local: Option<&Path>) {
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(Current {
            verb,
            remote: remote.to_owned(),
            partial: local.map(partial_path),
        });
    }

    /// After a transfer of [`Ui::working_on`] failed with `e`: if it was cut off, where what
    /// arrived is kept and how to continue.
    pub(crate) fn cut_off(&self, e: &Error) {
        if e.is_transient() {
            if let Some(line) = kept_line() {
                self.line(&line);
            }
        }
    }

    /// A warning: shown unless `-q`.
    pub(crate) fn warn(&self, what: &str) {
        if !self.quiet {
            self.line(&format!("warning: {what}"));
        }
    }
}

/// The transfer in progress, for [`kept_line`].
#[derive(Debug)]
struct Current {
    verb: &'static str,
    remote: String,
    partial: Option<PathBuf>,
}

/// The run's one process-wide value: the signal thread of [`on_interrupt`] reads it when
/// Ctrl-C arrives, at a moment no command chose and from a thread no command reaches. Every
/// connection setting travels as a value ([`Settings`]).
static CURRENT: Mutex<Option<Current>> = Mutex::new(None);

/// Where the transfer in progress keeps what already moved, and how to continue it: said
/// when it is cut off or interrupted. `None` when no transfer is under way.
pub(crate) fn kept_line() -> Option<String> {
    let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    let current = current.as_ref()?;
    let again = "run the same command again (or add -c) to continue";
    Some(match (current.verb, &current.partial) {
        ("get", Some(partial)) => match std::fs::metadata(partial) {
            Ok(meta) => format!(
                "kept {} in {}; {again}",
                human(meta.len()),
                escape(&partial.display().to_string())
            ),
            Err(_) => return None,
        },
        ("get", None) => format!(
            "what arrived of {} is kept as .NAME.sft-part beside it; {again}",
            escape(&current.remote)
        ),
        _ => format!(
            "the server keeps what arrived of {} for a while; {again}",
            escape(&current.remote)
        ),
    })
}

/// Ctrl-C (SIGINT) or SIGTERM during `sft get` or `sft send` (`verb`): partial files stay;
/// say where, and end with the status of a program killed by that signal.
pub(crate) fn on_interrupt(verb: &'static str) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let again = "run the same command again (or add -c) to continue";
            let line = kept_line().unwrap_or_else(|| match verb {
                "get" => format!("a file cut short is kept as .NAME.sft-part beside it; {again}"),
                _ => format!("the server keeps what arrived for a while; {again}"),
            });
            eprintln!("\ninterrupted; {line}");
            std::process::exit(128 + signal);
        }
    });
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
    /// Bytes moved in this run (what was already on disk when a file resumed is not counted).
    moved: Arc<AtomicU64>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid progress template")
        .progress_chars("=> ")
        .with_key("size", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&human(s.pos()));
        })
        .with_key("total", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&human(s.len().unwrap_or(0)));
        })
}

/// Rate and time left from the bytes moved in this run, not from the position: a resumed
/// file starts at the bytes already on disk, which took no time now.
fn with_rate(
    style: ProgressStyle,
    moved: impl Fn(&ProgressState) -> u64 + Clone + Send + Sync + 'static,
) -> ProgressStyle {
    let per_sec =
        move |s: &ProgressState, moved: u64| moved as f64 / s.elapsed().as_secs_f64().max(1e-3);
    let m = moved.clone();
    style
        .with_key(
            "rate",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate(m(s), s.elapsed().as_secs_f64()));
            },
        )
        .with_key(
            "left",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let speed = per_sec(s, moved(s));
                let left = s.len().unwrap_or(0).saturating_sub(s.pos());
                let _ = match speed >= 1.0 {
                    true => w.write_str(&clock(left as f64 / speed)),
                    false => w.write_str("-"),
                };
            },
        )
}

/// `secs` as `1h02m`, `3m05s` or `12s`.
fn clock(secs: f64) -> String {
    let secs = secs.round() as u64;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// A file of known size: bytes, percent, rate, time left; `base` bytes were there before.
fn file_style(base: u64) -> ProgressStyle {
    with_rate(
        style("{msg:24!} [{bar:30}] {size}/{total} {percent:>3}% {rate} ETA {left}"),
        move |s| s.pos().saturating_sub(base),
    )
}

/// A stream of unknown size: bytes and rate so far.
fn stream_style() -> ProgressStyle {
    with_rate(style("{msg:24!} {spinner} {size} {rate} {elapsed}"), |s| {
        s.pos()
    })
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
        let moved = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&moved);
        let moved_now = move |_: &ProgressState| m.load(Ordering::Relaxed);
        match bytes {
            Some(total) => {
                bar.set_style(with_rate(
                    style("{msg:24!} [{bar:30}] {size}/{total} {percent:>3}% {rate} ETA {left} ({prefix} files)"),
                    moved_now,
                ));
                bar.set_length(total);
            }
            None => {
                // The batch's size is not known: files for the bar, and the bytes moved so far.
                let m = Arc::clone(&moved);
                bar.set_style(with_rate(
                    style("{msg:24!} [{bar:30}] {pos}/{len} files, {moved} at {rate}, {elapsed}")
                        .with_key(
                            "moved",
                            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = w.write_str(&human(m.load(Ordering::Relaxed)));
                            },
                        ),
                    moved_now,
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
            moved,
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
        self.file_skipped(len);
    }

    /// One more file of the batch is done, with `size` bytes (moved, or already there).
    fn file_skipped(&self, size: u64) {
        if let Some(o) = self.overall.lock().expect("bars lock").as_ref() {
            let n = o.files_done.fetch_add(1, Ordering::Relaxed) + 1;
            o.bar.set_prefix(format!("{n}/{}", o.files));
            if o.by_bytes {
                let finished = o.finished.fetch_add(size, Ordering::Relaxed) + size;
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
                bar.set_style(file_style(done));
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
            o.moved.fetch_add(n, Ordering::Relaxed);
            if o.by_bytes {
                o.bar.inc(n);
            }
        }
    }
}
