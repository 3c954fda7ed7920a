//! `sft send`: one file (`LOCAL [REMOTE]`), standard input (`- REMOTE`), many files into a
//! remote folder (`LOCAL… -o REMOTE_DIR`), or whole folders (`-r`), over one connection,
//! resumable, with `--retries`.

use super::local::{local_name, remote_join};
use super::transfer::{connect, report_single, server_addr, Line, Retry, Tally};
use super::ui::Ui;
use super::{local_error, Common};
use crate::{escape, Failure};
use sft_client::{walk, Client, Error, SendOptions, ServerAddr, Upload, Walk};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use structopt::StructOpt;

/// `sft send`'s arguments.
#[derive(Debug, StructOpt)]
pub(crate) struct SendArgs {
    #[structopt(flatten)]
    pub(crate) common: Common,
    /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
    server: String,
    /// LOCAL [REMOTE]: the file to upload (`-` for standard input) and where it goes on the
    /// server (default: LOCAL's name; a REMOTE ending in `/` is a folder). With -r, LOCAL may be a
    /// folder and REMOTE is the folder its contents go into. With -o REMOTE_DIR, every PATH is a
    /// LOCAL to upload into REMOTE_DIR.
    #[structopt(required = true, parse(from_os_str), value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Upload every LOCAL into this folder on the server, over one connection.
    #[structopt(short = "o", long = "output-dir", value_name = "REMOTE_DIR")]
    output_dir: Option<String>,
    /// Upload folders with everything in them (empty folders too; symlinks are followed only to
    /// files inside the folder).
    #[structopt(short, long)]
    recursive: bool,
    /// Replace remote files that exist.
    #[structopt(long)]
    overwrite: bool,
    /// Continue interrupted uploads that the server kept.
    #[structopt(short = "c", long = "continue")]
    resume: bool,
    /// Do not declare the files' BLAKE3 hashes (the server then cannot verify, nor keep an
    /// interrupted upload for --continue or --retries).
    #[structopt(long)]
    no_verify: bool,
    /// After a dropped connection, reconnect and continue up to N times (waiting 200 ms,
    /// doubling); not for standard input.
    #[structopt(long, value_name = "N", default_value = "0")]
    retries: u32,
}

impl SendArgs {
    fn options(&self, retrying: bool) -> SendOptions {
        SendOptions {
            overwrite: self.overwrite,
            verify: !self.no_verify,
            resume: self.resume || retrying,
            ..SendOptions::default()
        }
    }
}

/// Runs `sft send`.
pub(crate) async fn run(args: SendArgs) -> Result<(), Failure> {
    let c = &args.common;
    let ui = Ui::new(c.quiet, c.verbose, c.json, c.stall());
    let server = server_addr(&args.server, c)?;
    if let Some(dir) = &args.output_dir {
        return many(&args, &ui, &server, dir).await;
    }
    if args.paths.len() > 2 {
        return Err(Failure::Usage(
            "send takes LOCAL [REMOTE]; to upload several files, name a folder for them on the \
             server with -o REMOTE_DIR"
                .into(),
        ));
    }
    let local = &args.paths[0];
    let remote = match args.paths.get(1) {
        None => None,
        Some(r) => Some(
            r.to_str()
                .map(str::to_owned)
                .ok_or_else(|| Failure::Usage(format!("{} is not UTF-8", r.display())))?,
        ),
    };
    if local.as_os_str() == "-" {
        return stdin(&args, &ui, &server, remote).await;
    }
    if local.is_dir() {
        if !args.recursive {
            return Err(Failure::Usage(format!(
                "{} is a folder: use -r to upload it with its contents",
                local.display()
            )));
        }
        let remote = match remote {
            Some(r) => r.trim_end_matches('/').to_owned(),
            None => named(local)?,
        };
        let walked = walk_reporting(local, &remote, &ui)?;
        let client = connect(&server, &ui).await?;
        let mut tally = Tally::new("send");
        upload(&args, &ui, &server, client, walked, &mut tally).await?;
        return tally.finish(&ui);
    }
    single(&args, &ui, &server, local, remote).await
}

fn named(local: &Path) -> Result<String, Failure> {
    local_name(local).ok_or_else(|| {
        Failure::Usage(format!(
            "{} has no UTF-8 name; give a REMOTE path",
            local.display()
        ))
    })
}

/// Where a single upload goes on the server.
fn remote_target(local: &Path, remote: Option<String>) -> Result<String, Failure> {
    match remote {
        None => named(local),
        Some(r) if r.ends_with('/') => Ok(format!("{r}{}", named(local)?)),
        Some(r) => Ok(r),
    }
}

/// `send SERVER LOCAL [REMOTE]`.
async fn single(
    args: &SendArgs,
    ui: &Ui,
    server: &ServerAddr,
    local: &Path,
    remote: Option<String>,
) -> Result<(), Failure> {
    let started = Instant::now();
    let remote = remote_target(local, remote)?;
    let mut client = connect(server, ui).await?;
    let mut retry = Retry::new(args.retries);
    let transfer = loop {
        match client
            .send_file(local, &remote, args.options(retry.retrying()))
            .await
        {
            Err(e) if retry.again(&e, ui).await => {
                client = retry.reconnect(server, ui).await?;
            }
            other => break other,
        }
    };
    ui.finish();
    let transfer = transfer?;
    let from = local.display().to_string();
    let line = Line {
        verb: "send",
        remote: &remote,
        local: &from,
    };
    report_single(ui, &line, &transfer, started, retry.attempts());
    Ok(())
}

/// `send SERVER - REMOTE`: standard input, of unknown length, as a chunked body.
async fn stdin(
    args: &SendArgs,
    ui: &Ui,
    server: &ServerAddr,
    remote: Option<String>,
) -> Result<(), Failure> {
    let started = Instant::now();
    let remote =
        match remote {
            Some(r) if !r.ends_with('/') => r,
            _ => return Err(Failure::Usage(
                "standard input has no name: give the REMOTE file name, e.g. `sft send SERVER - \
                 notes.txt`"
                    .into(),
            )),
        };
    if args.resume {
        return Err(Failure::Usage(
            "an upload from standard input cannot be continued".into(),
        ));
    }
    let mut client = connect(server, ui).await?;
    let mut source = async_std::io::stdin();
    let transfer = client
        .send_stream(&mut source, &remote, args.overwrite)
        .await;
    ui.finish();
    let line = Line {
        verb: "send",
        remote: &remote,
        local: "-",
    };
    report_single(ui, &line, &transfer?, started, 1);
    Ok(())
}

/// Walks `local` for an upload into `remote`, reporting what is skipped.
fn walk_reporting(local: &Path, remote: &str, ui: &Ui) -> Result<Walk, Failure> {
    let walked = walk(local, remote).map_err(local_error(local, "read the folder"))?;
    for (path, why) in &walked.skipped {
        ui.warn(&format!(
            "skipped {}: {why}",
            escape(&path.display().to_string())
        ));
    }
    Ok(walked)
}

/// `send -o REMOTE_DIR SERVER LOCAL…` (with -r, folders among them).
async fn many(args: &SendArgs, ui: &Ui, server: &ServerAddr, dir: &str) -> Result<(), Failure> {
    let mut all = Walk::default();
    let mut names = HashSet::new();
    for local in &args.paths {
        if local.as_os_str() == "-" {
            return Err(Failure::Usage(
                "standard input (`-`) cannot be one of many sources: send it on its own".into(),
            ));
        }
        let name = named(local)?;
        if !names.insert(name.clone()) {
            return Err(Failure::Usage(format!(
                "two sources are named {name:?}: they would overwrite each other in {dir}"
            )));
        }
        let remote = remote_join(dir, &name);
        if local.is_dir() {
            if !args.recursive {
                return Err(Failure::Usage(format!(
                    "{} is a folder: use -r to upload it with its contents",
                    local.display()
                )));
            }
            let walked = walk_reporting(local, &remote, ui)?;
            all.files.extend(walked.files);
            all.folders.extend(walked.folders);
        } else {
            let file = Upload::named(local, remote).map_err(local_error(local, "read"))?;
            all.files.push(file);
        }
    }
    let client = connect(server, ui).await?;
    let mut tally = Tally::new("send");
    upload(args, ui, server, client, all, &mut tally).await?;
    tally.finish(ui)
}

/// Creates the empty folders, then uploads the files one after another (each waits for its
/// go-ahead); after a cut-off (with `--retries`) reconnects and resumes the file.
async fn upload(
    args: &SendArgs,
    ui: &Ui,
    server: &ServerAddr,
    mut client: Client,
    walked: Walk,
    tally: &mut Tally,
) -> Result<(), Failure> {
    let bytes = walked.files.iter().map(|u| u.size).sum();
    ui.batch(walked.files.len(), Some(bytes));
    let mut retry = Retry::new(args.retries);
    let total = walked.folders.len() + walked.files.len();
    let mut step = 0;
    for folder in &walked.folders {
        step += 1;
        let made = loop {
            match client.mkdir(folder).await {
                Err(e) if retry.again(&e, ui).await => match retry.reconnect(server, ui).await {
                    Ok(c) => client = c,
                    Err(e) => break Err(e),
                },
                other => break other,
            }
        };
        match made {
            Ok(_) => tally.folder(ui, folder),
            Err(e) => {
                tally.failed(ui, folder, "", &e);
                if client.is_broken() {
                    match go_on(&e, server, ui).await {
                        Some(c) => client = c,
                        None => {
                            tally.abandoned(ui, total - step, &e);
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    if args.retries == 0 {
        // No retries: the library pipelines small files (eager uploads) on one connection, and
        // a connection that breaks on a local failure is replaced for the rest.
        let mut pending: Vec<Upload> = walked.files;
        while !pending.is_empty() {
            let mut broke = None;
            let left = client
                .send_files(&pending, args.options(false), |i, sent| {
                    ui.file_done();
                    let file = &pending[i];
                    let local = file.local.display().to_string();
                    match sent {
                        Ok(t) => tally.ok(ui, &file.remote, &local, &t, 1),
                        Err(e) => {
                            tally.failed(ui, &file.remote, &local, &e);
                            broke = Some(e);
                        }
                    }
                })
                .await;
            if left.is_empty() {
                break;
            }
            let e = broke.unwrap_or_else(|| Error::Protocol("the connection broke".into()));
            match go_on(&e, server, ui).await {
                Some(c) => client = c,
                None => {
                    tally.abandoned(ui, left.len(), &e);
                    return Ok(());
                }
            }
            pending = left.into_iter().map(|i| pending[i].clone()).collect();
        }
        return Ok(());
    }
    for file in &walked.files {
        step += 1;
        let mut resumed = false;
        let mut attempts = 1;
        let sent = loop {
            match client.send_upload(file, args.options(resumed)).await {
                Err(e) if retry.again(&e, ui).await => match retry.reconnect(server, ui).await {
                    Ok(c) => {
                        client = c;
                        resumed = true;
                        attempts += 1;
                    }
                    Err(e) => break Err(e),
                },
                other => break other,
            }
        };
        ui.file_done();
        let local = file.local.display().to_string();
        match sent {
            Ok(t) => tally.ok(ui, &file.remote, &local, &t, attempts),
            Err(e) => {
                tally.failed(ui, &file.remote, &local, &e);
                if client.is_broken() {
                    match go_on(&e, server, ui).await {
                        Some(c) => client = c,
                        None => {
                            tally.abandoned(ui, total - step, &e);
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// After a failure that left the connection unusable: a local one (a file that could not be
/// read midway) is no reason to stop the others, so a new connection carries on.
pub(crate) async fn go_on(e: &Error, server: &ServerAddr, ui: &Ui) -> Option<Client> {
    match e {
        Error::Local { .. } => connect(server, ui).await.ok(),
        _ => None,
    }
}
