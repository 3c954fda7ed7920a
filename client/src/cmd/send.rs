//! `sft send`: one file (`LOCAL [REMOTE]`), standard input (`- REMOTE`), many files into a
//! remote folder (`LOCAL… -o REMOTE_DIR`), or whole folders (`-r`), over one connection,
//! resumable, with `--retries`.

use super::local::{local_name, remote_join};
use super::mirror::{self, Extras, Gap, Keep};
use super::sync::{self, Action, Policy};
use super::transfer::{connect, report_single, server_addr, Line, Retry, Tally};
use super::ui::Ui;
use super::wire::Wire;
use super::{local_error, Common};
use crate::{escape, Failure};
use sft_client::{
    walk, Client, Entry, Error, ErrorCode, Kind, ListHash, SendOptions, ServerAddr, Upload, Walk,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;
use structopt::StructOpt;

/// `sft send`'s arguments.
#[derive(Debug, StructOpt)]
pub(crate) struct SendArgs {
    #[structopt(flatten)]
    pub(crate) common: Common,
    #[structopt(flatten)]
    wire: Wire,
    /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
    #[structopt(value_name = "SERVER")]
    server: String,
    /// LOCAL [REMOTE]: the file to upload (`-` for standard input) and where it goes on the
    /// server (default: LOCAL's name; a REMOTE that is a folder on the server, or ends in `/`,
    /// or is `.`, is the folder it goes into, created if missing). With -r, LOCAL may be a
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
    /// Replace remote files that differ from the local ones (without it they are reported as
    /// changed and left alone). Files already identical are skipped either way.
    #[structopt(long)]
    overwrite: bool,
    /// Continue interrupted uploads that the server kept. This is the default (an upload is
    /// named by the local file's identity and version, so only a partial of this very file is
    /// continued); the option is kept for scripts.
    #[structopt(short = "c", long = "continue")]
    resume: bool,
    /// Compare every same-size file by BLAKE3, instead of skipping those with the same size and
    /// modification time without reading them (like rsync -c; the server reads them all).
    #[structopt(long)]
    checksum: bool,
    /// With -r: after every transfer succeeded, remove what the REMOTE folder holds and the
    /// local folder does not (with DELETE: files and symlinks themselves first, then folders,
    /// the deepest first; like rsync --delete-after). Nothing is removed if a transfer or a
    /// listing failed.
    #[structopt(long)]
    delete: bool,
    /// Only say what would be done — new, replace, skip, and with --delete the deletions —
    /// changing nothing on either side.
    #[structopt(short = "n", long)]
    dry_run: bool,
    /// Keep the files' permission bits too (modification times are always kept). (`-p` is
    /// --port here.)
    #[structopt(long = "preserve")]
    preserve: bool,
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
            // Resuming is safe by default: an upload id names this file's version only.
            resume: self.resume || retrying || !self.no_verify,
            times: true,
            mode: self.preserve,
            delta: self.wire.delta(),
            compress: self.wire.compress(),
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            checksum: self.checksum,
            overwrite: self.overwrite,
            dry_run: self.dry_run,
            delta: false,
        }
    }

    /// `--delete` mirrors one folder into one (`-r SERVER LOCAL_DIR [REMOTE_DIR]`); a dry run
    /// needs a local file to compare.
    fn check_mirror(&self) -> Result<(), Failure> {
        let stdin = self.paths.iter().any(|p| p.as_os_str() == "-");
        if self.dry_run && stdin {
            return Err(Failure::Usage(
                "-n compares local files with the server's: standard input cannot be".into(),
            ));
        }
        if !self.delete {
            return Ok(());
        }
        let why = if !self.recursive {
            "--delete works with -r only (it mirrors a folder: `sft send -r --delete SERVER \
             LOCAL_DIR REMOTE_DIR`)"
        } else if self.output_dir.is_some() {
            "--delete mirrors one folder into one: give LOCAL_DIR REMOTE_DIR, not -o"
        } else if stdin || !self.paths[0].is_dir() {
            "--delete mirrors a folder: LOCAL must be one"
        } else {
            return Ok(());
        };
        Err(Failure::Usage(why.into()))
    }

    /// What LIST asks the server to hash: what it has cached (free), or with --checksum all.
    fn list_hash(&self) -> ListHash {
        if self.checksum {
            ListHash::All
        } else {
            ListHash::Cached
        }
    }
}

/// Runs `sft send`.
pub(crate) async fn run(args: SendArgs) -> Result<(), Failure> {
    let c = &args.common;
    let ui = Ui::new(c);
    let server = server_addr(&args.server, c)?;
    args.check_mirror()?;
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
        let keep = args.delete.then(|| Keep::of(&walked, local, &remote));
        let mut client = connect(&server, &ui).await?;
        args.wire.notice(&mut client, &ui).await;
        let (there, mut extras) =
            listed(&args, &mut client, &remote, true, &walked, keep.as_ref()).await?;
        if keep.is_some() && !walked.complete() {
            extras.gap.get_or_insert(Gap {
                why: format!("{} could not be read whole", local.display()),
                code: sft_client::ExitCode::Local,
                name: "local_io",
            });
        }
        let mut tally = Tally::new("send").dry_run(args.dry_run);
        upload(&args, &ui, &server, client, walked, there, &mut tally).await?;
        if keep.is_some() {
            mirror::delete_remote(&server, extras, args.dry_run, &mut tally, &ui).await;
        }
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

/// Where a single upload goes on the server, and what is there now (`None`: nothing). A
/// REMOTE ending in `/`, `.` or naming a folder on the server is the folder it goes into;
/// asking the server (a `STAT` that reads no file) is needed anyway to compare, so it costs
/// nothing extra.
async fn remote_target(
    client: &mut Client,
    local: &Path,
    remote: Option<String>,
) -> Result<(String, Option<Entry>), Failure> {
    let mut target = match remote {
        None => named(local)?,
        Some(r) if r.ends_with('/') => format!("{r}{}", named(local)?),
        Some(r) if r.is_empty() || r == "." => named(local)?,
        Some(r) => r,
    };
    for _ in 0..2 {
        match client.stat_quick(&target).await {
            Ok(entry) if entry.kind == Kind::Folder => {
                target = remote_join(&target, &named(local)?)
            }
            Ok(entry) => return Ok((target, Some(entry))),
            Err(Error::Remote(e)) if e.code == ErrorCode::NotFound => return Ok((target, None)),
            Err(e) => return Err(e.into()),
        }
    }
    // A folder named like the file inside the folder named: the upload says what is wrong.
    Ok((target, None))
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
    // Transient failures before the transfer (a server whose storage does not answer says so
    // in its HELLO, or to the first look at the target) are retried like a cut-off one.
    let mut retry = Retry::new(args.retries);
    let mut client = retry.reconnect(server, ui).await?;
    args.wire.notice(&mut client, ui).await;
    let (remote, file, compared) = loop {
        let looked = async {
            let (remote, there) = remote_target(&mut client, local, remote.clone()).await?;
            let file = Upload::named(local, remote.clone()).map_err(local_error(local, "read"))?;
            let compared = args
                .policy()
                .send(
                    &mut client,
                    local,
                    (file.size, file.mtime),
                    &remote,
                    Some(there.as_ref()),
                )
                .await?;
            Ok::<_, Failure>((remote, file, compared))
        };
        match looked.await {
            Err(Failure::Client(e)) if retry.again(&e, ui).await => {
                client = retry.reconnect(server, ui).await?;
            }
            looked => break looked?,
        }
    };
    let from = local.display().to_string();
    match compared {
        Action::New | Action::Replace if args.dry_run => {
            Tally::new("send")
                .dry_run(true)
                .planned(ui, &remote, &from, compared, file.size);
            return Ok(());
        }
        Action::New | Action::Replace => {}
        Action::Skip => {
            sync::report_skipped(ui, "send", &remote, &from);
            return Ok(());
        }
        Action::Changed => return Err(sync::changed_failure(&remote)),
    }
    ui.working_on("send", &remote, None);
    let transfer = loop {
        match client
            .send_upload(&file, args.options(retry.retrying()))
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
    let line = Line {
        verb: "send",
        remote: &remote,
        local: &from,
    };
    report_single(
        ui,
        &line,
        Some(compared),
        &transfer,
        started,
        retry.attempts(),
    );
    Ok(())
}

/// What the server holds at the destinations of `walked`'s files, from one `LIST` of `root`
/// (with the hashes it has cached, or all with --checksum): for each file, its entry, or
/// `None` when nothing is there. Only the walked files' entries are kept, whatever the listing
/// holds. `None` when the listing failed: each file is then asked about on its own.
///
/// With `keep` (`--delete`), also what the server holds that `keep` does not: the
/// [`Extras`] to remove, or why they cannot be known.
async fn listed(
    args: &SendArgs,
    client: &mut Client,
    root: &str,
    recursive: bool,
    walked: &Walk,
    keep: Option<&Keep>,
) -> Result<(Option<HashMap<String, Entry>>, Extras), Failure> {
    let wanted: HashSet<&str> = walked.files.iter().map(|u| u.remote.as_str()).collect();
    let mut found = HashMap::new();
    let mut extras = Extras::default();
    let failed = |e: &sft_client::WireError| {
        Some(Gap {
            why: format!(
                "the listing of {} failed: {}",
                escape(root),
                escape(&e.message)
            ),
            code: sft_client::ExitCode::Refused,
            name: e.code.as_str(),
        })
    };
    let mut listing = match client.list_with(root, recursive, args.list_hash()).await {
        Ok(listing) => listing,
        Err(Error::Remote(e)) if e.code == ErrorCode::NotFound => return Ok((Some(found), extras)),
        Err(Error::Remote(e)) => {
            extras.gap = failed(&e);
            return Ok((None, extras));
        }
        Err(e) => return Err(e.into()),
    };
    loop {
        match listing.next().await {
            Ok(Some(entry)) => {
                let path = remote_join(root, &entry.name);
                if let Some(keep) = keep {
                    if let Some(e) = &entry.error {
                        extras.gap.get_or_insert_with(|| Gap::unlisted(&path, e));
                    }
                    if !keep.holds(root, &path) {
                        extras.entries.push((path.clone(), entry.kind));
                    }
                }
                if wanted.contains(path.as_str()) {
                    found.insert(path, entry);
                }
            }
            Ok(None) => break,
            Err(Error::Remote(e)) => {
                extras.gap = failed(&e);
                return Ok((None, extras));
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Entries left out of the listing (names that cannot be sent) are asked about one by one.
    if let Some(end) = listing.end().filter(|end| end.skipped > 0) {
        extras
            .gap
            .get_or_insert_with(|| Gap::unsent(root, end.skipped));
        return Ok((None, extras));
    }
    Ok((Some(found), extras))
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
    report_single(ui, &line, None, &transfer?, started, 1);
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
    let mut client = connect(server, ui).await?;
    args.wire.notice(&mut client, ui).await;
    let (there, _) = listed(args, &mut client, dir, args.recursive, &all, None).await?;
    let mut tally = Tally::new("send").dry_run(args.dry_run);
    upload(args, ui, server, client, all, there, &mut tally).await?;
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
    there: Option<HashMap<String, Entry>>,
    tally: &mut Tally,
) -> Result<(), Failure> {
    let policy = args.policy();
    let bytes = walked.files.iter().map(|u| u.size).sum();
    ui.batch(walked.files.len(), Some(bytes));
    let mut retry = Retry::new(args.retries);
    let total = walked.folders.len() + walked.files.len();
    let mut step = 0;
    for folder in walked.folders.iter().filter(|_| !args.dry_run) {
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
    // Without retries, what needs sending goes through the library's pipeline afterwards.
    let mut to_send: Vec<Upload> = Vec::new();
    for file in &walked.files {
        step += 1;
        let local = file.local.display().to_string();
        let known = there.as_ref().map(|t| t.get(&file.remote));
        let compared = policy
            .send(
                &mut client,
                &file.local,
                (file.size, file.mtime),
                &file.remote,
                known,
            )
            .await;
        if let Ok(action @ (Action::New | Action::Replace)) = compared {
            if args.dry_run {
                ui.file_skipped(file.size);
                tally.planned(ui, &file.remote, &local, action, file.size);
                continue;
            }
            if action == Action::Replace {
                tally.replacing(&file.remote);
            }
        }
        let (sent, attempts) = match compared {
            Ok(Action::New | Action::Replace) if args.retries == 0 => {
                to_send.push(file.clone());
                continue;
            }
            Ok(Action::Skip) => {
                ui.file_skipped(file.size);
                tally.skipped(ui, &file.remote, &local);
                continue;
            }
            Ok(Action::Changed) => {
                ui.file_skipped(file.size);
                tally.changed(ui, &file.remote, &local);
                continue;
            }
            Err(e) => (Err(e), 1),
            Ok(Action::New | Action::Replace) => {
                let mut resumed = false;
                let mut attempts = 1;
                let sent = loop {
                    match client.send_upload(file, args.options(resumed)).await {
                        Err(e) if retry.again(&e, ui).await => {
                            match retry.reconnect(server, ui).await {
                                Ok(c) => {
                                    client = c;
                                    resumed = true;
                                    attempts += 1;
                                }
                                Err(e) => break Err(e),
                            }
                        }
                        other => break other,
                    }
                };
                (sent, attempts)
            }
        };
        ui.file_done();
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
    if !to_send.is_empty() {
        // No retries: the library pipelines small files (eager uploads) on one connection, and
        // a connection that breaks on a local failure is replaced for the rest.
        let mut pending: Vec<Upload> = to_send;
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
