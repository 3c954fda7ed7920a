//! `sft get`: one file (`REMOTE [LOCAL]`), many files into a folder (`-o DIR REMOTE…`), or
//! whole folders (`-r`), over one connection, pipelined, resumable, with `--retries`.

use super::local::{ensure_dir, remote_join, remote_name, safe_relative};
use super::plan::{Kind as PlanKind, Plan};
use super::transfer::{connect, report_single, server_addr, Line, Retry, Tally};
use super::ui::Ui;
use super::{local_error, Common};
use crate::{escape, Failure};
use sft_client::{BlockingWriter, Client, Error, ErrorCode, GetJob, GetOptions, Kind, ServerAddr};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use structopt::StructOpt;

/// `sft get`'s arguments.
#[derive(Debug, StructOpt)]
pub(crate) struct GetArgs {
    #[structopt(flatten)]
    pub(crate) common: Common,
    /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
    server: String,
    /// REMOTE [LOCAL]: the file on the server (relative to its served folder) and where to write
    /// it — a file, an existing folder, or `-` for standard output (default: REMOTE's name here).
    /// With -r, REMOTE may be a folder and LOCAL is the folder its contents go into. With -o DIR,
    /// every PATH is a REMOTE to download into DIR.
    #[structopt(required = true, parse(from_os_str), value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Download every REMOTE into this local folder (created if missing), over one connection.
    #[structopt(
        short = "o",
        long = "output-dir",
        parse(from_os_str),
        value_name = "DIR"
    )]
    output_dir: Option<PathBuf>,
    /// Download folders with everything in them (empty folders too; symlinks are skipped).
    #[structopt(short, long)]
    recursive: bool,
    /// Continue interrupted downloads from their partial files (`.NAME.sft-part`).
    #[structopt(short = "c", long = "continue")]
    resume: bool,
    /// Skip the BLAKE3 check (faster; a file is still renamed into place only when complete).
    #[structopt(long)]
    no_verify: bool,
    /// After a dropped connection, reconnect and continue up to N times (waiting 200 ms,
    /// doubling); not for downloads to standard output.
    #[structopt(long, value_name = "N", default_value = "0")]
    retries: u32,
}

/// Runs `sft get`.
pub(crate) async fn run(args: GetArgs) -> Result<(), Failure> {
    let c = &args.common;
    let ui = Ui::new(c.quiet, c.verbose, c.json, c.stall());
    let server = server_addr(&args.server, c)?;
    match &args.output_dir {
        Some(dir) => {
            let remotes = args
                .paths
                .iter()
                .map(|p| utf8(p))
                .collect::<Result<Vec<_>, _>>()?;
            many(&args, &ui, &server, dir, &remotes).await
        }
        None => {
            if args.paths.len() > 2 {
                return Err(Failure::Usage(
                    "get takes REMOTE [LOCAL]; to download several files, name a folder for \
                     them with -o DIR"
                        .into(),
                ));
            }
            let remote = utf8(&args.paths[0])?;
            let local = args.paths.get(1).cloned();
            if args.recursive && local.as_deref() != Some(Path::new("-")) {
                let mut client = connect(&server, &ui).await?;
                if client.stat(&remote).await?.kind == Kind::Folder {
                    let local = match local {
                        Some(local) => local,
                        None => PathBuf::from(remote_name(&remote).ok_or_else(|| {
                            Failure::Usage(format!(
                                "{remote:?} names no folder to create here; give a LOCAL folder"
                            ))
                        })?),
                    };
                    return folder(&args, &ui, &server, client, &remote, &local).await;
                }
                return single(&args, &ui, &server, Some(client), &remote, local).await;
            }
            single(&args, &ui, &server, None, &remote, local).await
        }
    }
}

fn utf8(p: &Path) -> Result<String, Failure> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Usage(format!("{} is not UTF-8", p.display())))
}

/// Where a single download goes: `None` for stdout.
fn local_target(remote: &str, local: Option<PathBuf>) -> Result<Option<PathBuf>, Failure> {
    let name = || {
        remote
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .map(PathBuf::from)
            .ok_or_else(|| Failure::Usage(format!("{remote:?} names no file; give a LOCAL path")))
    };
    match local {
        Some(p) if p.as_os_str() == "-" => Ok(None),
        Some(p) if p.is_dir() => Ok(Some(p.join(name()?))),
        Some(p) => Ok(Some(p)),
        None => name().map(Some),
    }
}

/// `get SERVER REMOTE [LOCAL]`.
async fn single(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    client: Option<Client>,
    remote: &str,
    local: Option<PathBuf>,
) -> Result<(), Failure> {
    let started = Instant::now();
    let target = local_target(remote, local)?;
    let mut client = match client {
        Some(client) => client,
        None => connect(server, ui).await?,
    };
    let verify = !args.no_verify;
    let mut retry = Retry::new(args.retries);
    let transfer = match &target {
        None => {
            // Written in place, in large blocks: this task owns the thread.
            let mut stdout = BlockingWriter(std::io::stdout().lock());
            client.get_with(remote, &mut stdout, verify).await
        }
        Some(path) => loop {
            let opts = GetOptions {
                verify,
                resume: args.resume || retry.retrying(),
                ..GetOptions::default()
            };
            match client.get_file(remote, path, opts).await {
                Err(e) if retry.again(&e, ui).await => {
                    client = retry.reconnect(server, ui).await?;
                }
                other => break other,
            }
        },
    };
    ui.finish();
    let transfer = match transfer {
        Ok(t) => t,
        Err(e) => return Err(explain(&mut client, remote, e, args.recursive).await),
    };
    let to = target
        .as_deref()
        .map_or("-".into(), |p| p.display().to_string());
    let line = Line {
        verb: "get",
        remote,
        local: &to,
    };
    report_single(ui, &line, &transfer, started, retry.attempts());
    Ok(())
}

/// A refusal of a folder says how to download one.
async fn explain(client: &mut Client, remote: &str, e: Error, recursive: bool) -> Failure {
    if let Error::Remote(wire) = &e {
        if wire.code == ErrorCode::BadRequest && !recursive && !client.is_broken() {
            if let Ok(entry) = client.stat(remote).await {
                if entry.kind == Kind::Folder {
                    return Failure::Usage(format!(
                        "{} is a folder: use -r to download it with its contents",
                        escape(remote)
                    ));
                }
            }
        }
    }
    e.into()
}

/// `get -r SERVER DIR [LOCAL_DIR]`.
async fn folder(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    mut client: Client,
    remote: &str,
    local: &Path,
) -> Result<(), Failure> {
    let mut tally = Tally::new("get");
    let mut plan = Plan::new().map_err(local_error(std::env::temp_dir(), "write in"))?;
    expand(&mut client, remote, local, ui, &mut plan).await?;
    carry_out(args, ui, server, client, plan, &mut tally).await?;
    tally.finish(ui)
}

/// `get -o DIR SERVER REMOTE…` (with -r, folders among them).
async fn many(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    dir: &Path,
    remotes: &[String],
) -> Result<(), Failure> {
    let mut names = HashSet::new();
    for remote in remotes {
        let name = remote_name(remote).ok_or_else(|| {
            Failure::Usage(format!("{remote:?} names no file to create in the folder"))
        })?;
        if !names.insert(name) {
            return Err(Failure::Usage(format!(
                "two sources are named {name:?}: they would overwrite each other in {}",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(local_error(dir, "create the folder"))?;
    let mut client = connect(server, ui).await?;
    let mut tally = Tally::new("get");
    let mut plan = Plan::new().map_err(local_error(std::env::temp_dir(), "write in"))?;
    let spill = |e| Failure::from(local_error(std::env::temp_dir(), "write in")(e));
    for remote in remotes {
        let name = remote_name(remote).expect("checked above");
        let local = dir.join(name);
        if args.recursive {
            match client.stat(remote).await {
                Ok(entry) if entry.kind == Kind::Folder => {
                    expand(&mut client, remote, &local, ui, &mut plan).await?;
                    continue;
                }
                Ok(_) => {}
                Err(e @ Error::Remote(_)) => {
                    tally.failed(ui, remote, &local.display().to_string(), &e);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        plan.push(PlanKind::File, dir, Path::new(name), remote)
            .map_err(spill)?;
    }
    carry_out(args, ui, server, client, plan, &mut tally).await?;
    tally.finish(ui)
}

/// Lists the remote folder `remote` into `plan` as downloads below `local`, one entry at a
/// time (never the whole listing in memory): every name is checked before anything is written
/// (a server naming `../x` or `/etc/x` is refused whole). Symlinks are skipped, with a warning.
async fn expand(
    client: &mut Client,
    remote: &str,
    local: &Path,
    ui: &Ui,
    plan: &mut Plan,
) -> Result<(), Failure> {
    let spill = |e| Failure::from(local_error(std::env::temp_dir(), "write in")(e));
    let mut listing = client.list(remote, true).await?;
    while let Some(entry) = listing.next().await? {
        let Some(rel) = safe_relative(&entry.name) else {
            drop(listing);
            return Err(Error::Protocol(format!(
                "the listing of {} names {:?}, which is not a plain name inside {} (it could \
                 lead outside it); nothing was downloaded",
                escape(remote),
                escape(&entry.name),
                local.display()
            ))
            .into());
        };
        if let Some(err) = &entry.error {
            ui.warn(&format!(
                "{}: contents not listed: {}",
                escape(&remote_join(remote, &entry.name)),
                escape(&err.message)
            ));
        }
        let remote_path = remote_join(remote, &entry.name);
        match entry.kind {
            Kind::Folder => plan.push(PlanKind::Folder, local, &rel, &remote_path),
            Kind::File => plan.push(PlanKind::File, local, &rel, &remote_path),
            Kind::Symlink => {
                ui.warn(&format!(
                    "skipped {}: a symlink (not followed)",
                    escape(&remote_path)
                ));
                Ok(())
            }
            Kind::Other => {
                ui.warn(&format!(
                    "skipped {}: not a regular file",
                    escape(&remote_path)
                ));
                Ok(())
            }
        }
        .map_err(spill)?;
    }
    if let Some(end) = listing.end().filter(|end| end.skipped > 0) {
        ui.warn(&format!(
            "{} entries of {} not listed: names that are not UTF-8, or too long to send",
            end.skipped,
            escape(remote)
        ));
    }
    drop(listing);
    std::fs::create_dir_all(local).map_err(local_error(local, "create the folder"))?;
    Ok(())
}

/// Downloads at most this many files per round of [`fetch`]: the plan is read back this many
/// at a time, so memory stays bounded whatever the listing held.
const BATCH: usize = 1024;

/// Carries out `plan`: first creates its folders (empty ones included), then downloads its
/// files, a batch at a time, over `client` (and new connections after a cut-off, with
/// `--retries`).
async fn carry_out(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    mut client: Client,
    mut plan: Plan,
    tally: &mut Tally,
) -> Result<(), Failure> {
    let spill = |e| Failure::from(local_error(std::env::temp_dir(), "read")(e));
    for record in plan.read().map_err(spill)? {
        let record = record.map_err(spill)?;
        if record.kind != PlanKind::Folder {
            continue;
        }
        let at = record.base.join(&record.rel);
        match ensure_dir(&record.base, &record.rel) {
            Ok(()) => tally.folder(ui, &at.display().to_string()),
            Err(e) => {
                let e = local_error(&at, "create the folder")(e);
                tally.failed(ui, &record.remote, &at.display().to_string(), &e);
            }
        }
    }
    ui.batch(plan.files, None);
    let mut retry = Retry::new(args.retries);
    let mut later = plan.files;
    let mut jobs = Vec::with_capacity(BATCH.min(later));
    for record in plan.read().map_err(spill)? {
        let record = record.map_err(spill)?;
        if record.kind != PlanKind::File {
            continue;
        }
        later -= 1;
        let parent = record.rel.parent().unwrap_or(Path::new(""));
        let local_path = record.base.join(&record.rel);
        if let Err(e) = ensure_dir(&record.base, parent) {
            let e = local_error(record.base.join(parent), "create the folder")(e);
            tally.failed(ui, &record.remote, &local_path.display().to_string(), &e);
            continue;
        }
        jobs.push(GetJob {
            remote: record.remote,
            local: local_path,
            resume: args.resume,
        });
        if jobs.len() == BATCH || later == 0 {
            let batch = std::mem::take(&mut jobs);
            let go_on = fetch(
                args,
                ui,
                server,
                &mut client,
                batch,
                tally,
                &mut retry,
                later,
            )
            .await?;
            if !go_on {
                return Ok(());
            }
        }
    }
    if !jobs.is_empty() {
        fetch(args, ui, server, &mut client, jobs, tally, &mut retry, 0).await?;
    }
    Ok(())
}

/// Downloads `jobs`, pipelined; after a cut-off (with `--retries`) reconnects and goes on,
/// resuming the file that was cut off from its partial. Returns whether the connection can go
/// on; when it cannot, the jobs left — and the `later` ones not given yet — are counted as
/// abandoned.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    client: &mut Client,
    mut jobs: Vec<GetJob>,
    tally: &mut Tally,
    retry: &mut Retry,
    later: usize,
) -> Result<bool, Failure> {
    if client.is_broken() {
        // An earlier batch ended on a failure that left the connection out of step.
        match connect(server, ui).await {
            Ok(c) => *client = c,
            Err(e) => {
                tally.abandoned(ui, jobs.len() + later, &e);
                return Ok(false);
            }
        }
    }
    let verify = !args.no_verify;
    let mut todo: Vec<usize> = (0..jobs.len()).collect();
    let mut attempts = vec![1; jobs.len()];
    while !todo.is_empty() {
        let batch: Vec<GetJob> = todo.iter().map(|&i| jobs[i].clone()).collect();
        let mut cut: Option<(usize, Error)> = None;
        let mut local_failure = false;
        let leftovers = client
            .get_files(&batch, verify, |k, result| {
                let job = &batch[k];
                ui.file_done();
                let local = job.local.display().to_string();
                match result {
                    Ok(t) => tally.ok(ui, &job.remote, &local, &t, attempts[todo[k]]),
                    Err(e @ Error::CutOff { .. }) => cut = Some((todo[k], e)),
                    Err(e) => {
                        local_failure = matches!(e, Error::Local { .. });
                        tally.failed(ui, &job.remote, &local, &e)
                    }
                }
            })
            .await;
        let leftovers: Vec<usize> = leftovers.into_iter().map(|k| todo[k]).collect();
        let Some((i, e)) = cut else {
            if leftovers.is_empty() {
                return Ok(true);
            }
            // A local failure (a file that could not be written) broke the connection: the
            // other files can still come over a new one.
            let e = Error::Protocol("the connection broke".into());
            if local_failure {
                if let Ok(c) = connect(server, ui).await {
                    *client = c;
                    todo = leftovers;
                    continue;
                }
            }
            tally.abandoned(ui, leftovers.len() + later, &e);
            return Ok(false);
        };
        if retry.again(&e, ui).await {
            match retry.reconnect(server, ui).await {
                Ok(c) => {
                    *client = c;
                    jobs[i].resume = true;
                    attempts[i] += 1;
                    todo = std::iter::once(i).chain(leftovers).collect();
                    continue;
                }
                Err(e) => {
                    let job = &jobs[i];
                    tally.failed(ui, &job.remote, &job.local.display().to_string(), &e);
                    tally.abandoned(ui, leftovers.len() + later, &e);
                    return Ok(false);
                }
            }
        }
        let job = &jobs[i];
        tally.failed(ui, &job.remote, &job.local.display().to_string(), &e);
        tally.abandoned(ui, leftovers.len() + later, &e);
        return Ok(false);
    }
    Ok(true)
}
