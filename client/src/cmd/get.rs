//! `sft get`: one file (`REMOTE [LOCAL]`), many files into a folder (`-o DIR REMOTE…`), or
//! whole folders (`-r`), over one connection, pipelined, resumable, with `--retries`.

use super::glob;
use super::local::{ensure_dir, fresh, remote_join, remote_name, safe_relative};
use super::mirror::{self, Gap};
use super::plan::{Kind as PlanKind, Plan};
use super::sync::{self, Action, Policy};
use super::transfer::{connect, report_single, server_addr, Line, Retry, Tally};
use super::ui::Ui;
use super::wire::Wire;
use super::{local_error, Common};
use crate::{escape, Failure};
use sft_client::{
    partial_path, BlockingWriter, Client, Error, ErrorCode, GetJob, GetOptions, Kind, ListHash,
    Listing, ServerAddr,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use structopt::StructOpt;

/// `sft get`'s arguments.
#[derive(Debug, StructOpt)]
pub(crate) struct GetArgs {
    #[structopt(flatten)]
    pub(crate) common: Common,
    #[structopt(flatten)]
    wire: Wire,
    /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
    #[structopt(value_name = "SERVER")]
    server: String,
    /// REMOTE [LOCAL]: the file on the server (relative to its served folder) and where to write
    /// it — a file, a folder (an existing one, or one ending in `/`, created if missing), or `-`
    /// for standard output (default: REMOTE's name here). With -r, REMOTE may be a folder and
    /// LOCAL is the folder its contents go into. With -o DIR, every PATH is a REMOTE to download
    /// into DIR. A REMOTE with `*`, `?` or `[…]` is a pattern, matched by sft against the
    /// server's folder (per path component; a leading `.` is matched only by a `.`): quote it
    /// ('logs/*.txt') so the local shell leaves it alone; the matches go into LOCAL (a folder,
    /// default `.`) or DIR.
    #[structopt(required = true, parse(from_os_str), value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Download every REMOTE into this local folder (created if missing), over one connection.
    /// For a single file into a folder not there yet, write DIR/ (`-o` never names the file).
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
    /// Continue interrupted downloads from their partial files (`.NAME.sft-part`). This is the
    /// default (a continued file that then fails its BLAKE3 check is fetched again from the
    /// start); the option is kept for scripts. With --no-verify, only with -c.
    #[structopt(short = "c", long = "continue")]
    resume: bool,
    /// Replace local files that differ from the server's (without it they are reported as
    /// changed and left alone). Files already identical are skipped either way.
    #[structopt(long)]
    overwrite: bool,
    /// Compare every same-size file by BLAKE3, instead of skipping those with the same size and
    /// modification time without reading them (like rsync -c; the server reads them all).
    #[structopt(long)]
    checksum: bool,
    /// With -r: after every transfer succeeded, remove what the LOCAL folder holds and the
    /// server's folder does not (files, folders, symlinks themselves; like rsync
    /// --delete-after). Nothing is removed if a transfer or a listing failed.
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
    /// Skip the BLAKE3 check (faster; a file is still renamed into place only when complete).
    #[structopt(long)]
    no_verify: bool,
    /// After a dropped connection, reconnect and continue up to N times (waiting 200 ms,
    /// doubling); not for downloads to standard output.
    #[structopt(long, value_name = "N", default_value = "0")]
    retries: u32,
}

impl GetArgs {
    /// Whether the download goes to standard output (`REMOTE -`).
    pub(crate) fn writes_stdout(&self) -> bool {
        self.output_dir.is_none() && self.paths.get(1).is_some_and(|p| p.as_os_str() == "-")
    }
}

/// Runs `sft get`.
pub(crate) async fn run(args: GetArgs) -> Result<(), Failure> {
    let c = &args.common;
    let ui = Ui::new(c).stdout_is_data(args.writes_stdout());
    let server = server_addr(&args.server, c)?;
    args.check_mirror()?;
    match &args.output_dir {
        Some(dir) => {
            let remotes = args
                .paths
                .iter()
                .map(|p| utf8(p))
                .collect::<Result<Vec<_>, _>>()?;
            if let [remote] = remotes.as_slice() {
                curl_habit(remote, dir, args.recursive)?;
            }
            if remotes.iter().any(|r| glob::has_glob(r)) {
                let mut client = connect(&server, &ui).await?;
                let remotes = matches(&mut client, &remotes).await?;
                return many(&args, &ui, &server, Some(client), dir, &remotes).await;
            }
            many(&args, &ui, &server, None, dir, &remotes).await
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
            if glob::has_glob(&remote) {
                let dir = local.unwrap_or_else(|| PathBuf::from("."));
                if dir.as_os_str() == "-" {
                    return Err(Failure::Usage(
                        "a pattern can match several files: give a LOCAL folder, not `-`".into(),
                    ));
                }
                let mut client = connect(&server, &ui).await?;
                let remotes = matches(&mut client, std::slice::from_ref(&remote)).await?;
                return many(&args, &ui, &server, Some(client), &dir, &remotes).await;
            }
            if args.recursive && local.as_deref() != Some(Path::new("-")) {
                return folder(&args, &ui, &server, &remote, local).await;
            }
            single(&args, &ui, &server, None, &remote, local).await
        }
    }
}

/// `get SERVER FILE -o NAME`, where NAME is nothing yet: most likely curl's `-o FILE`, which
/// would make a folder NAME holding FILE. Said rather than done, with what to write instead;
/// a NAME ending in `/`, one that exists, or a pattern or folder (-r) to download keeps `-o`'s
/// meaning.
fn curl_habit(remote: &str, dir: &Path, recursive: bool) -> Result<(), Failure> {
    let folder_meant = recursive
        || glob::has_glob(remote)
        || dir.as_os_str().as_encoded_bytes().ends_with(b"/")
        || std::fs::symlink_metadata(dir).is_ok();
    if folder_meant {
        return Ok(());
    }
    let dir = escape(&dir.display().to_string());
    Err(Failure::Usage(format!(
        "-o names the folder to download into, and {dir} does not exist; to save {} as the \
         file {dir}, name it after REMOTE: `sft get SERVER {} {dir}` (or write `-o {dir}/` to \
         create the folder)",
        escape(remote),
        escape(remote),
    )))
}

/// Every REMOTE, with each pattern among them replaced by what it matches on the server (in
/// order); a pattern that matches nothing is an error, as scp's "No match".
async fn matches(client: &mut Client, remotes: &[String]) -> Result<Vec<String>, Failure> {
    let mut all = Vec::new();
    for remote in remotes {
        if !glob::has_glob(remote) {
            all.push(remote.clone());
            continue;
        }
        let mut found = glob::expand(client, remote).await?;
        if found.is_empty() && client.stat_quick(remote).await.is_ok() {
            // A name that only looks like a pattern (`report[1].txt`): it is what was meant.
            found.push(remote.clone());
        }
        if found.is_empty() {
            return Err(Failure::Client(Error::Remote(sft_client::WireError {
                code: ErrorCode::NotFound,
                message: format!("no match for {}", escape(remote)),
            })));
        }
        all.extend(found);
    }
    Ok(all)
}

impl GetArgs {
    fn policy(&self) -> Policy {
        Policy {
            checksum: self.checksum,
            overwrite: self.overwrite,
            dry_run: self.dry_run,
            delta: self.wire.delta(),
        }
    }

    /// `--delete` mirrors one folder into one (`-r SERVER REMOTE_DIR [LOCAL_DIR]`); a dry run
    /// needs a local destination to compare with.
    fn check_mirror(&self) -> Result<(), Failure> {
        if self.dry_run && self.writes_stdout() {
            return Err(Failure::Usage(
                "-n compares with a local destination: give one instead of `-`".into(),
            ));
        }
        if !self.delete {
            return Ok(());
        }
        let why = if !self.recursive {
            "--delete works with -r only (it mirrors a folder: `sft get -r --delete SERVER \
             REMOTE_DIR LOCAL_DIR`)"
        } else if self.output_dir.is_some() {
            "--delete mirrors one folder into one: give REMOTE_DIR LOCAL_DIR, not -o"
        } else if self.writes_stdout() {
            "--delete mirrors a folder into a local folder, not into `-`"
        } else if self
            .paths
            .iter()
            .any(|p| p.to_str().is_some_and(glob::has_glob))
        {
            "--delete mirrors one folder: give its name, not a pattern"
        } else {
            return Ok(());
        };
        Err(Failure::Usage(why.into()))
    }

    /// Whether a kept partial download is continued: by default, since the BLAKE3 check at
    /// the end catches a partial of another version (which is then fetched again whole).
    fn resume(&self) -> bool {
        self.resume || !self.no_verify
    }

    /// What LIST asks the server to hash: what it has cached (free), or with --checksum all.
    fn list_hash(&self) -> ListHash {
        if self.checksum {
            ListHash::All
        } else {
            ListHash::Cached
        }
    }

    fn options(&self, resume: bool) -> GetOptions {
        GetOptions {
            verify: !self.no_verify,
            resume,
            times: true,
            mode: self.preserve,
            delta: self.wire.delta(),
            compress: self.wire.compress(),
        }
    }
}

fn utf8(p: &Path) -> Result<String, Failure> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Usage(format!("{} is not UTF-8", p.display())))
}

/// Where a single download goes: `None` for stdout. A LOCAL ending in `/` is a folder,
/// created if missing (with its parents; not in a dry run), like an existing folder.
fn local_target(
    remote: &str,
    local: Option<PathBuf>,
    dry_run: bool,
) -> Result<Option<PathBuf>, Failure> {
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
        Some(p) if p.as_os_str().as_encoded_bytes().ends_with(b"/") => {
            let file = p.join(name()?);
            if !dry_run {
                std::fs::create_dir_all(&p).map_err(local_error(&p, "create the folder"))?;
            }
            Ok(Some(file))
        }
        Some(p) => Ok(Some(p)),
        None => name().map(Some),
    }
}

/// Whether a partial download of `local` is there to be continued.
///
/// One `lstat`, done in place: for a folder of small files a hop to the blocking pool per file
/// would cost more.
async fn has_partial(local: &Path) -> bool {
    std::fs::symlink_metadata(partial_path(local)).is_ok_and(|m| m.len() > 0)
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
    let target = local_target(remote, local, args.dry_run)?;
    // Transient failures before the transfer (a server whose storage does not answer says so
    // in its HELLO, or to the first look at the file) are retried like a cut-off one.
    let mut retry = Retry::new(args.retries);
    let mut client = match client {
        Some(client) => client,
        None => retry.reconnect(server, ui).await?,
    };
    args.wire.notice(&mut client, ui).await;
    let mut action = None;
    if let Some(path) = &target {
        let shown = path.display().to_string();
        let chosen = loop {
            match args.policy().get(&mut client, remote, None, path).await {
                Err(e) if retry.again(&e, ui).await => {
                    client = retry.reconnect(server, ui).await?;
                }
                chosen => break chosen,
            }
        };
        match chosen {
            Ok(would @ (Action::New | Action::Replace)) if args.dry_run => {
                let size = client.stat_quick(remote).await.map_or(0, |e| e.size);
                Tally::new("get")
                    .dry_run(true)
                    .planned(ui, remote, &shown, would, size);
                return Ok(());
            }
            Ok(chosen @ (Action::New | Action::Replace)) => action = Some(chosen),
            Ok(Action::Skip) => {
                sync::report_skipped(ui, "get", remote, &shown);
                return Ok(());
            }
            Ok(Action::Changed) => return Err(sync::changed_failure(&shown)),
            Err(e) => return Err(explain(&mut client, remote, e, args.recursive).await),
        }
    }
    let verify = !args.no_verify;
    if let Some(path) = &target {
        ui.working_on("get", remote, Some(path));
    }
    // A partial this download continues — one found, or the one a cut-off attempt left for
    // a retry: if the whole then fails its check, the partial was of another version of the
    // file (replaced on the server meanwhile), and the download starts over once.
    let mut held = match &target {
        Some(path) if args.resume() => has_partial(path).await,
        _ => false,
    };
    let transfer = match &target {
        None => {
            // Written in place, in large blocks: this task owns the thread.
            let mut stdout = BlockingWriter(std::io::stdout().lock());
            client.get_with(remote, &mut stdout, verify).await
        }
        Some(path) => loop {
            // Only a partial that is there is continued: none is created before the reply.
            let resume = held;
            match client.get_file(remote, path, args.options(resume)).await {
                Err(e) if retry.again(&e, ui).await => {
                    client = retry.reconnect(server, ui).await?;
                    held = true;
                }
                // A continued partial of another version of the file: once more, whole.
                Err(Error::Integrity { .. }) if held => {
                    ui.note(&format!(
                        "{}: the partial download was of another version; fetching it whole",
                        escape(remote)
                    ));
                    held = false;
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
    report_single(ui, &line, action, &transfer, started, retry.attempts());
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

/// `get -r SERVER DIR [LOCAL_DIR]` (or a file named with -r, downloaded as one).
///
/// No round trip is spent before the listing: `LIST` itself tells a file (`bad_request`,
/// then downloaded alone). And the downloads of files with nothing in their place yet are
/// requested while the listing arrives, so that the first one follows its end at once.
async fn folder(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    remote: &str,
    local: Option<PathBuf>,
) -> Result<(), Failure> {
    let mut client = connect(server, ui).await?;
    let mut tally = Tally::new("get").dry_run(args.dry_run);
    let mut plan = Plan::new()
        .map_err(local_error(std::env::temp_dir(), "write in"))?
        .for_delete(args.delete);
    let Some((local, ahead)) =
        list_folder(args, ui, &mut client, remote, &local, &mut plan).await?
    else {
        if args.delete {
            return Err(Failure::Usage(format!(
                "--delete mirrors a folder, and {} is a file",
                escape(remote)
            )));
        }
        return single(args, ui, server, Some(client), remote, local).await;
    };
    let (seen, gap) = (plan.seen.take(), plan.gap.take());
    carry_out(args, ui, server, client, plan, ahead, &mut tally).await?;
    if let Some(seen) = seen {
        mirror::delete_local(&local, &seen, gap.as_ref(), args.dry_run, &mut tally, ui);
    }
    tally.finish(ui)
}

/// Lists the folder `remote` into `plan` (see [`expand`]), requesting downloads ahead (not in
/// a dry run); the local folder and those downloads, or `None` if `remote` is not a folder.
async fn list_folder(
    args: &GetArgs,
    ui: &Ui,
    client: &mut Client,
    remote: &str,
    local: &Option<PathBuf>,
    plan: &mut Plan,
) -> Result<Option<(PathBuf, Ahead)>, Failure> {
    // Before any download is requested ahead: those ask for compression as the server allows.
    args.wire.notice(client, ui).await;
    let listing = match client.list_with(remote, true, args.list_hash()).await {
        Ok(listing) => listing,
        Err(Error::Remote(e)) if e.code == ErrorCode::BadRequest => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let local = match local {
        Some(local) => local.clone(),
        None => PathBuf::from(remote_name(remote).ok_or_else(|| {
            Failure::Usage(format!(
                "{remote:?} names no folder to create here; give a LOCAL folder"
            ))
        })?),
    };
    let mut ahead = match args.dry_run {
        true => Ahead::none(),
        false => Ahead::new(&local),
    };
    expand(args, listing, remote, &local, ui, plan, Some(&mut ahead)).await?;
    Ok(Some((local, ahead)))
}

/// Downloads requested while the listing arrived (their replies follow its end), in order:
/// the first jobs of the first batch.
#[derive(Debug)]
struct Ahead {
    /// The local folder they go into.
    base: PathBuf,
    /// Each one's path below `base`, and its job.
    jobs: Vec<(PathBuf, GetJob)>,
    /// Their places among the plan's files.
    at: HashSet<usize>,
    /// Whether the window still had room at the last one: once full, the rest of the files
    /// wait for the listing's end.
    open: bool,
}

impl Ahead {
    fn new(base: &Path) -> Ahead {
        Ahead {
            base: base.to_owned(),
            jobs: Vec::new(),
            at: HashSet::new(),
            open: true,
        }
    }

    fn none() -> Ahead {
        Ahead {
            open: false,
            ..Ahead::new(Path::new(""))
        }
    }
}

/// `get -o DIR SERVER REMOTE…` (with -r, folders among them).
async fn many(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    client: Option<Client>,
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
    if !args.dry_run {
        std::fs::create_dir_all(dir).map_err(local_error(dir, "create the folder"))?;
    }
    let mut client = match client {
        Some(client) => client,
        None => connect(server, ui).await?,
    };
    args.wire.notice(&mut client, ui).await;
    let mut tally = Tally::new("get").dry_run(args.dry_run);
    let mut plan = Plan::new().map_err(local_error(std::env::temp_dir(), "write in"))?;
    let spill = |e| Failure::from(local_error(std::env::temp_dir(), "write in")(e));
    for remote in remotes {
        let name = remote_name(remote).expect("checked above");
        let local = dir.join(name);
        if args.recursive {
            match client.stat_quick(remote).await {
                Ok(entry) if entry.kind == Kind::Folder => {
                    let listing = client.list_with(remote, true, args.list_hash()).await?;
                    expand(args, listing, remote, &local, ui, &mut plan, None).await?;
                    continue;
                }
                Ok(entry) => ui.expect(entry.size),
                Err(e @ Error::Remote(_)) => {
                    tally.failed(ui, remote, &local.display().to_string(), &e);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        plan.push(PlanKind::File, dir, Path::new(name), remote, None)
            .map_err(spill)?;
    }
    carry_out(args, ui, server, client, plan, Ahead::none(), &mut tally).await?;
    tally.finish(ui)
}

/// Reads the listing of the remote folder `remote` into `plan` as downloads below `local`, one entry at a
/// time (never the whole listing in memory): every name is checked before anything is written
/// (a server naming `../x` or `/etc/x` is refused whole: downloads requested `ahead` are
/// received only once the listing ended). Symlinks are skipped, with a warning.
async fn expand(
    args: &GetArgs,
    mut listing: Listing<'_>,
    remote: &str,
    local: &Path,
    ui: &Ui,
    plan: &mut Plan,
    mut ahead: Option<&mut Ahead>,
) -> Result<(), Failure> {
    let spill = |e| Failure::from(local_error(std::env::temp_dir(), "write in")(e));
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
        let remote_path = remote_join(remote, &entry.name);
        if let Some(err) = &entry.error {
            ui.warn(&format!(
                "{}: contents not listed: {}",
                escape(&remote_path),
                escape(&err.message)
            ));
            plan.gap(Gap::unlisted(&remote_path, err));
        }
        plan.saw(&rel);
        match entry.kind {
            Kind::Folder => plan.push(PlanKind::Folder, local, &rel, &remote_path, None),
            Kind::File => {
                ui.expect(entry.size);
                let at = plan.files;
                plan.push(PlanKind::File, local, &rel, &remote_path, Some(&entry))
                    .map_err(spill)?;
                if let Some(ahead) = ahead.as_deref_mut().filter(|a| a.open) {
                    let job = GetJob {
                        remote: remote_path,
                        local: local.join(&rel),
                        resume: false,
                        size: Some(entry.size),
                    };
                    if fresh(local, &rel) && !has_partial(&job.local).await {
                        ahead.open = listing
                            .get_ahead(&job, !args.no_verify, args.wire.compress())
                            .await?;
                        if ahead.open {
                            ahead.at.insert(at);
                            ahead.jobs.push((rel, job));
                        }
                    }
                }
                Ok(())
            }
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
        plan.gap(Gap::unsent(remote, end.skipped));
    }
    drop(listing);
    if !args.dry_run {
        std::fs::create_dir_all(local).map_err(local_error(local, "create the folder"))?;
    }
    Ok(())
}

/// Downloads at most this many files per round of [`fetch`]: the plan is read back this many
/// at a time, so memory stays bounded whatever the listing held (a few MiB). The window of
/// requests in flight drains at the end of each round: rounds this long make that a round
/// trip per 8192 files.
const BATCH: usize = 8192;

/// Carries out `plan`: first creates its folders (empty ones included), then downloads its
/// files, a batch at a time, over `client` (and new connections after a cut-off, with
/// `--retries`): first those requested `ahead`, whose replies are on their way.
async fn carry_out(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    mut client: Client,
    mut plan: Plan,
    ahead: Ahead,
    tally: &mut Tally,
) -> Result<(), Failure> {
    let spill = |e| Failure::from(local_error(std::env::temp_dir(), "read")(e));
    for record in plan.read().map_err(spill)? {
        let record = record.map_err(spill)?;
        if record.kind != PlanKind::Folder || args.dry_run {
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
    ui.batch(plan.files, ui.expected_bytes(plan.files));
    let policy = args.policy();
    let mut retry = Retry::new(args.retries);
    let mut later = plan.files - ahead.jobs.len();
    let mut jobs = Vec::with_capacity(BATCH.min(plan.files));
    let mut held = Vec::with_capacity(BATCH.min(plan.files));
    let mut in_the_way = false;
    for (rel, job) in ahead.jobs {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if let Err(e) = ensure_dir(&ahead.base, parent) {
            // Something came in the way since the listing: this reply is not to be stored,
            // so the connection that carries it is given up.
            let e = local_error(ahead.base.join(parent), "create the folder")(e);
            tally.failed(ui, &job.remote, &job.local.display().to_string(), &e);
            in_the_way = true;
            continue;
        }
        held.push(false);
        jobs.push(job);
    }
    if in_the_way {
        match connect(server, ui).await {
            Ok(c) => client = c,
            Err(e) => {
                tally.abandoned(ui, jobs.len() + later, &e);
                return Ok(());
            }
        }
    }
    let mut file = 0;
    for record in plan.read().map_err(spill)? {
        let record = record.map_err(spill)?;
        if record.kind != PlanKind::File {
            continue;
        }
        file += 1;
        if ahead.at.contains(&(file - 1)) {
            continue;
        }
        later -= 1;
        let parent = record.rel.parent().unwrap_or(Path::new(""));
        let local_path = record.base.join(&record.rel);
        let shown = local_path.display().to_string();
        // A dry run creates nothing: what is not there yet is compared as missing.
        let made = if args.dry_run {
            Ok(())
        } else {
            ensure_dir(&record.base, parent)
        };
        if let Err(e) = made {
            let e = local_error(record.base.join(parent), "create the folder")(e);
            tally.failed(ui, &record.remote, &shown, &e);
            continue;
        }
        if client.owes_replies() && !policy.get_decides_locally(record.listed.as_ref(), &local_path)
        {
            // The server is asked about this file once the downloads requested ahead arrived.
            let batch = (std::mem::take(&mut jobs), std::mem::take(&mut held));
            let go_on = fetch(
                args,
                ui,
                server,
                &mut client,
                batch,
                tally,
                &mut retry,
                later + 1,
            )
            .await?;
            if !go_on {
                return Ok(());
            }
        }
        if client.is_broken() {
            match connect(server, ui).await {
                Ok(c) => client = c,
                Err(e) => {
                    tally.abandoned(ui, jobs.len() + later + 1, &e);
                    return Ok(());
                }
            }
        }
        let compared = policy
            .get(
                &mut client,
                &record.remote,
                record.listed.as_ref(),
                &local_path,
            )
            .await;
        let size = record.listed.as_ref().map_or(0, |e| e.size);
        match compared {
            Ok(action @ (Action::New | Action::Replace)) if args.dry_run => {
                ui.file_skipped(size);
                tally.planned(ui, &record.remote, &shown, action, size);
            }
            Ok(action @ (Action::New | Action::Replace)) => {
                if action == Action::Replace {
                    tally.replacing(&shown);
                }
                // Only a partial that is there is continued: none is created before the reply.
                let resume = args.resume() && has_partial(&local_path).await;
                held.push(resume);
                jobs.push(GetJob {
                    size: record.listed.as_ref().map(|e| e.size),
                    remote: record.remote,
                    local: local_path,
                    resume,
                });
            }
            Ok(Action::Skip) => {
                ui.file_skipped(record.listed.as_ref().map_or(0, |e| e.size));
                tally.skipped(ui, &record.remote, &shown);
            }
            Ok(Action::Changed) => {
                ui.file_skipped(record.listed.as_ref().map_or(0, |e| e.size));
                tally.changed(ui, &record.remote, &shown);
            }
            Err(e) => {
                ui.file_done();
                tally.failed(ui, &record.remote, &shown, &e);
            }
        }
        if !jobs.is_empty() && (jobs.len() == BATCH || later == 0) {
            let batch = std::mem::take(&mut jobs);
            let partials = std::mem::take(&mut held);
            let go_on = fetch(
                args,
                ui,
                server,
                &mut client,
                (batch, partials),
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
        let batch = (jobs, held);
        fetch(args, ui, server, &mut client, batch, tally, &mut retry, 0).await?;
    }
    Ok(())
}

/// Downloads `jobs`, pipelined; after a cut-off (with `--retries`) reconnects and goes on,
/// resuming the file that was cut off from its partial. A job that continued a partial (one it
/// found, or the one its cut left: `held`) and then failed its BLAKE3 check is asked for once
/// more, whole: the file was replaced on the server meanwhile. Returns whether the connection can go
/// on; when it cannot, the jobs left — and the `later` ones not given yet — are counted as
/// abandoned.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    args: &GetArgs,
    ui: &Ui,
    server: &ServerAddr,
    client: &mut Client,
    (mut jobs, mut held): (Vec<GetJob>, Vec<bool>),
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
    // Each job says whether it resumes; the options say the rest.
    let opts = args.options(false);
    let mut todo: Vec<usize> = (0..jobs.len()).collect();
    let mut attempts = vec![1; jobs.len()];
    while !todo.is_empty() {
        let batch: Vec<GetJob> = todo.iter().map(|&i| jobs[i].clone()).collect();
        let mut cut: Option<(usize, Error)> = None;
        let mut local_failure = false;
        let mut again = Vec::new();
        let leftovers = client
            .get_files_with(&batch, opts, |k, result| {
                let job = &batch[k];
                ui.file_done();
                let local = job.local.display().to_string();
                match result {
                    Ok(t) => tally.ok(ui, &job.remote, &local, &t, attempts[todo[k]]),
                    Err(e) if e.is_transient() => cut = Some((todo[k], e)),
                    Err(Error::Integrity { .. }) if held[todo[k]] => again.push(todo[k]),
                    Err(e) => {
                        local_failure = matches!(e, Error::Local { .. });
                        tally.failed(ui, &job.remote, &local, &e)
                    }
                }
            })
            .await;
        let mut leftovers: Vec<usize> = leftovers.into_iter().map(|k| todo[k]).collect();
        for &i in &again {
            ui.note(&format!(
                "{}: the partial download was of another version; fetching it whole",
                escape(&jobs[i].remote)
            ));
            held[i] = false;
            jobs[i].resume = false;
        }
        leftovers.splice(0..0, again);
        let Some((i, e)) = cut else {
            if leftovers.is_empty() {
                return Ok(true);
            }
            if !client.is_broken() {
                todo = leftovers;
                continue;
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
                    // It continues the partial the cut left: checked like one it found.
                    jobs[i].resume = true;
                    held[i] = true;
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
