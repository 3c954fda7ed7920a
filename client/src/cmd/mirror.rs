//! `--delete`: after a folder sync, what the destination folder holds and the source does not
//! is removed, as `rsync --delete-after` does — locally for `get -r`, on the server (with
//! `DELETE`) for `send -r`.
//!
//! Only when the run was complete: a transfer that failed, or a listing of either side that
//! could not tell everything (a folder the server could not read, a local folder that changed
//! while it was walked), and nothing is removed at all, so a broken listing never deletes
//! everything. Nothing outside the named folder is ever touched: locally every folder is
//! opened relative to its parent without following symlinks, and a symlink is removed itself;
//! the server's `DELETE` takes a symlink itself too. Never removed: a `.sft` at the top of the
//! destination (the reserved folder of a served root) and a partial download of a file the
//! source holds (`.NAME.sft-part`).

use super::local::remote_join;
use super::transfer::{connect, Tally};
use super::ui::Ui;
use crate::escape;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use sft_client::{Client, Error, ErrorCode, ExitCode, Kind, ServerAddr, Walk};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// The top-level name a served root reserves for itself (PROTOCOL.md §4).
const RESERVED: &str = ".sft";

/// Why `--delete` cannot go ahead: a listing that could not tell everything, and the failure it
/// counts as.
#[derive(Debug, Clone)]
pub(crate) struct Gap {
    /// What was missing, for the `nothing deleted: …` line.
    pub(crate) why: String,
    /// The exit code of the run, unless it failed already.
    pub(crate) code: ExitCode,
    /// The error's code name (`--json`).
    pub(crate) name: &'static str,
}

impl Gap {
    /// A listing entry whose contents the server could not list.
    pub(crate) fn unlisted(path: &str, e: &sft_client::WireError) -> Gap {
        Gap {
            why: format!(
                "the contents of {} could not be listed ({})",
                escape(path),
                escape(&e.message)
            ),
            code: ExitCode::Refused,
            name: e.code.as_str(),
        }
    }

    /// A listing that left out `n` names it could not send.
    pub(crate) fn unsent(path: &str, n: u64) -> Gap {
        Gap {
            why: format!(
                "the listing of {} left out {n} name(s) it could not send",
                escape(path)
            ),
            code: ExitCode::Refused,
            name: ErrorCode::BadRequest.as_str(),
        }
    }
}

/// The relative paths a listing of the source held (every kind, and every folder above them),
/// each kept as a 128-bit digest: a listing of millions of names stays a few dozen MiB, and the
/// one way a collision could err is by keeping a file.
#[derive(Debug, Default)]
pub(crate) struct Seen(HashSet<[u8; 16]>);

impl Seen {
    fn digest(rel: &Path) -> [u8; 16] {
        let hash = blake3::hash(rel.as_os_str().as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&hash.as_bytes()[..16]);
        out
    }

    /// The listing held `rel`, and so the folders above it.
    pub(crate) fn insert(&mut self, rel: &Path) {
        let mut at = Some(rel);
        while let Some(path) = at.filter(|p| !p.as_os_str().is_empty()) {
            if !self.0.insert(Self::digest(path)) {
                // Its folders went in with it.
                break;
            }
            at = path.parent();
        }
    }

    fn contains(&self, rel: &Path) -> bool {
        self.0.contains(&Self::digest(rel))
    }

    /// Whether `name` in the folder `rel` is kept whatever the listing said: the reserved
    /// folder at the top, or the partial download of a file the listing holds.
    fn protected(&self, rel: &Path, name: &OsStr) -> bool {
        if rel.as_os_str().is_empty() && name == RESERVED {
            return true;
        }
        let bytes = name.as_bytes();
        match bytes
            .strip_prefix(b".")
            .and_then(|n| n.strip_suffix(b".sft-part"))
        {
            Some(file) if !file.is_empty() => self.contains(&rel.join(OsStr::from_bytes(file))),
            _ => false,
        }
    }
}

/// Decides whether `--delete` may go ahead after a run: only when the run was complete.
fn may_delete(tally: &mut Tally, ui: &Ui, gap: Option<&Gap>) -> bool {
    if let Some(gap) = gap {
        tally.withhold(ui, gap.why.clone(), gap.code, gap.name);
        return false;
    }
    if !tally.clean() {
        tally.withhold(
            ui,
            "a transfer of this run failed (--delete removes only after a complete run)".into(),
            ExitCode::Local,
            "local_io",
        );
        return false;
    }
    true
}

/// `get -r --delete`: removes what the local folder `base` holds and the listing (`seen`) did
/// not, deepest first; in a dry run only says what. Each removal, or its failure, goes to
/// `tally`.
pub(crate) fn delete_local(
    base: &Path,
    seen: &Seen,
    gap: Option<&Gap>,
    dry_run: bool,
    tally: &mut Tally,
    ui: &Ui,
) {
    if !may_delete(tally, ui, gap) {
        return;
    }
    // The folder the user named may be reached through symlinks; nothing below it is.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir = match rustix::fs::open(base, flags, Mode::empty()) {
        Ok(dir) => dir,
        // Nothing there (a dry run made nothing): nothing to remove.
        Err(rustix::io::Errno::NOENT) if dry_run => return,
        Err(e) => {
            let e = super::local_error(base, "read the folder")(e.into());
            tally.delete_failed(ui, &base.display().to_string(), &e);
            return;
        }
    };
    let mut pruner = Pruner {
        base,
        seen,
        dry_run,
        tally,
        ui,
    };
    pruner.folder(&dir, Path::new(""));
}

/// One `--delete` pass over a local folder.
struct Pruner<'a> {
    base: &'a Path,
    seen: &'a Seen,
    dry_run: bool,
    tally: &'a mut Tally,
    ui: &'a Ui,
}

impl Pruner<'_> {
    /// Goes through the folder `rel` (open at `dir`): what the listing held is kept (and its
    /// folders gone through), the rest removed.
    fn folder(&mut self, dir: &OwnedFd, rel: &Path) {
        let names = match names(dir) {
            Ok(names) => names,
            Err(e) => return self.failed(rel, e, "read the folder"),
        };
        for name in names {
            let name = OsStr::from_bytes(&name);
            let path = rel.join(name);
            let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                // Gone meanwhile.
                continue;
            };
            let kind = kind_of(&st);
            if self.seen.protected(rel, name) {
                continue;
            }
            if !self.seen.contains(&path) {
                self.remove(dir, name, &path, kind);
                continue;
            }
            if kind == Kind::Folder {
                match open_below(dir, name) {
                    Ok(sub) => self.folder(&sub, &path),
                    Err(e) => self.failed(&path, e, "read the folder"),
                }
            }
        }
    }

    /// Removes `name` (at `rel`, a `kind`) from the folder open at `dir`: a folder with
    /// everything in it, deepest first; a symlink itself.
    fn remove(&mut self, dir: &OwnedFd, name: &OsStr, rel: &Path, kind: Kind) {
        let mut flags = AtFlags::empty();
        if kind == Kind::Folder {
            flags = AtFlags::REMOVEDIR;
            match open_below(dir, name) {
                Ok(sub) => match names(&sub) {
                    Ok(inside) => {
                        for child in inside {
                            let child = OsStr::from_bytes(&child);
                            if let Ok(st) =
                                rustix::fs::statat(&sub, child, AtFlags::SYMLINK_NOFOLLOW)
                            {
                                self.remove(&sub, child, &rel.join(child), kind_of(&st));
                            }
                        }
                    }
                    Err(e) => return self.failed(rel, e, "read the folder"),
                },
                Err(e) => return self.failed(rel, e, "read the folder"),
            }
        }
        if !self.dry_run {
            if let Err(e) = rustix::fs::unlinkat(dir, name, flags) {
                return self.failed(rel, e.into(), "remove");
            }
        }
        let shown = self.base.join(rel).display().to_string();
        self.tally.deleted(self.ui, &shown, kind);
    }

    fn failed(&mut self, rel: &Path, e: io::Error, action: &'static str) {
        let at = self.base.join(rel);
        let e = super::local_error(&at, action)(e);
        self.tally
            .delete_failed(self.ui, &at.display().to_string(), &e);
    }
}

/// Opens the folder `name` in `dir`, never through a symlink.
fn open_below(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// The names in the folder open at `dir`, sorted, `.` and `..` left out.
fn names(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn kind_of(st: &rustix::fs::Stat) -> Kind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Kind::Folder,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// The remote paths an upload of a walked folder keeps: its files, the folders above them,
/// its empty folders, and what the walk left out but found (a symlink it does not follow, a
/// socket): as `rsync -r` keeps the names it skips.
#[derive(Debug, Default)]
pub(crate) struct Keep(HashSet<String>);

impl Keep {
    /// What `walked` (of the local folder `local`, going to the remote folder `root`) keeps.
    pub(crate) fn of(walked: &Walk, local: &Path, root: &str) -> Keep {
        let mut keep = Keep::default();
        for file in &walked.files {
            keep.insert(&file.remote);
        }
        for folder in &walked.folders {
            keep.insert(folder);
        }
        for (path, _) in &walked.skipped {
            let rel = path.strip_prefix(local).ok().and_then(Path::to_str);
            if let Some(rel) = rel.filter(|r| !r.is_empty()) {
                keep.insert(&remote_join(root, rel));
            }
        }
        keep
    }

    fn insert(&mut self, path: &str) {
        let mut at = path;
        while self.0.insert(at.to_owned()) {
            match at.rfind('/') {
                Some(i) => at = &at[..i],
                None => break,
            }
        }
    }

    /// Whether the server's `path` (a listing's entry below `root`) stays.
    pub(crate) fn holds(&self, root: &str, path: &str) -> bool {
        let top_of_root = matches!(root.trim_end_matches('/'), "" | ".");
        let reserved = top_of_root
            && Path::new(path).components().next() == Some(Component::Normal(RESERVED.as_ref()));
        reserved || self.0.contains(path)
    }
}

/// What the server holds below the destination that the source does not: each path and
/// kind, in listing order; or why that cannot be known.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// Candidates for removal.
    pub(crate) entries: Vec<(String, Kind)>,
    /// Set when the listing could not tell everything.
    pub(crate) gap: Option<Gap>,
}

/// `send -r --delete`: removes `extras` from the server with `DELETE` (files, symlinks and
/// the like first, then folders deepest first, with `"folder":true`), over a new connection;
/// in a dry run only says what. A server that refuses writing (read-only, a token that may only
/// read) is told once, and nothing more is tried.
pub(crate) async fn delete_remote(
    server: &ServerAddr,
    extras: Extras,
    dry_run: bool,
    tally: &mut Tally,
    ui: &Ui,
) {
    if !may_delete(tally, ui, extras.gap.as_ref()) || extras.entries.is_empty() {
        return;
    }
    let mut order = extras.entries;
    // Stable: files in listing order, then folders, the deepest first.
    order.sort_by_key(|(path, kind)| match kind {
        Kind::Folder => usize::MAX - path.matches('/').count(),
        _ => 0,
    });
    if dry_run {
        for (path, kind) in &order {
            tally.deleted(ui, path, *kind);
        }
        return;
    }
    let mut client = match connect(server, ui).await {
        Ok(client) => client,
        Err(e) => return tally.delete_failed(ui, &order[0].0, &e),
    };
    for (path, kind) in &order {
        match delete_one(&mut client, path, *kind).await {
            Ok(()) => tally.deleted(ui, path, *kind),
            // Gone meanwhile: nothing to remove.
            Err(Error::Remote(e)) if e.code == ErrorCode::NotFound => {}
            Err(e) => {
                let stop = client.is_broken()
                    || matches!(&e, Error::Remote(w)
                        if matches!(w.code, ErrorCode::ReadOnly | ErrorCode::Unauthorized));
                tally.delete_failed(ui, path, &e);
                if stop {
                    return;
                }
            }
        }
    }
}

async fn delete_one(client: &mut Client, path: &str, kind: Kind) -> Result<(), Error> {
    client.delete(path, kind == Kind::Folder).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_holds_folders_above_and_protects_partials_and_the_reserved_folder() {
        let mut seen = Seen::default();
        seen.insert(Path::new("a/b/c.txt"));
        for held in ["a", "a/b", "a/b/c.txt"] {
            assert!(seen.contains(Path::new(held)), "{held}");
        }
        assert!(!seen.contains(Path::new("a/c.txt")));
        assert!(seen.protected(Path::new("a/b"), OsStr::new(".c.txt.sft-part")));
        assert!(!seen.protected(Path::new("a/b"), OsStr::new(".d.txt.sft-part")));
        assert!(!seen.protected(Path::new("a/b"), OsStr::new("..sft-part")));
        assert!(seen.protected(Path::new(""), OsStr::new(".sft")));
        assert!(!seen.protected(Path::new("a"), OsStr::new(".sft")));
    }

    #[test]
    fn keep_holds_what_the_walk_found_and_the_reserved_folder() {
        let mut keep = Keep::default();
        keep.insert("www/a/b.txt");
        assert!(keep.holds("www", "www/a"));
        assert!(keep.holds("www", "www/a/b.txt"));
        assert!(!keep.holds("www", "www/a/c.txt"));
        assert!(keep.holds(".", ".sft"));
        assert!(keep.holds("", ".sft/tmp"));
        assert!(!keep.holds("www", "www/.sft"));
    }

    #[test]
    fn local_deletion_removes_links_not_their_targets() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let b = base.path();
        std::fs::create_dir_all(b.join("keep/gone")).unwrap();
        std::fs::write(b.join("keep/a.txt"), b"a").unwrap();
        std::fs::write(b.join("keep/gone/x"), b"x").unwrap();
        std::fs::write(b.join("keep/.a.txt.sft-part"), b"p").unwrap();
        std::fs::write(outside.path().join("target"), b"t").unwrap();
        std::os::unix::fs::symlink(outside.path(), b.join("keep/link")).unwrap();
        let mut seen = Seen::default();
        seen.insert(Path::new("keep/a.txt"));
        use structopt::StructOpt;
        let ui = Ui::new(&super::super::Common::from_iter(["sft", "-q"]));
        let mut tally = Tally::new("get");
        delete_local(b, &seen, None, false, &mut tally, &ui);
        let mut left: Vec<_> = std::fs::read_dir(b.join("keep"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".a.txt.sft-part", "a.txt"]);
        assert!(outside.path().join("target").exists());
        assert!(tally.finish(&ui).is_ok());
    }
}
