//! `LIST`: the entries of a folder, as a line stream.
//!
//! ```text
//! > {"verb":"LIST","path":"docs","recursive":true}
//! < {"ok":true,"stream":"lines","path":"docs"}
//! < {"name":"a.txt","kind":"file","size":5,"mtime":1732440000}
//! < {"name":"sub","kind":"folder","size":0,"mtime":1732440000}
//! < {"name":"sub/b.txt","kind":"file","size":3,"mtime":1732440000}
//! < {"end":true,"count":3,"skipped":0}
//! ```
//!
//! The walk is incremental, so a huge tree streams: an explicit stack of folders, at most
//! [`MAX_LIST_DEPTH`] deep, is advanced one bounded batch at a time on the blocking pool, and each
//! batch is written out before the next is read. Whatever the depth, at most
//! [`MAX_OPEN_FOLDERS`] of them are open at once (a client that stops reading a deep listing holds
//! no more): the listed folder and the deepest ones. A folder closed on the way down is opened
//! again when the walk comes back to it — by name from its nearest open ancestor, checked to be
//! the same folder — and read on from where it was. The listed folder itself is resolved and opened through the sandbox; from there the
//! walk only ever uses handles: entries are read from the open folder, described with
//! `fstatat(folder, name, AT_SYMLINK_NOFOLLOW)`, and a sub-folder is opened with
//! `openat(folder, name, O_NOFOLLOW | O_DIRECTORY)`. A folder swapped for a symlink meanwhile is
//! reported as it is now or fails to open; it is never followed, so nothing outside the root is
//! ever listed. Symlinks are reported as symlinks. The server's reserved folder is left out by
//! identity (device and inode), partial downloads by name.

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::entry::describe;
use crate::hashes::Lookup;
use crate::sandbox::{io_error, is_partial_download, FileId, Root, Work};
use rustix::fs::{self as rfs, AtFlags, Dir, Mode, OFlags};
use sft_io::confirm;
use sft_protocol::body::encode_line;
use sft_protocol::limits::{MAX_HEADER_LEN, MAX_LIST_DEPTH};
use sft_protocol::verbs::{
    Entry, Kind, ListEnd, ListHash, ListReply, ListRequest, StreamFormat, Verb,
};
use sft_protocol::{ErrorCode, Request, WireError};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// Entries examined per trip to the blocking pool.
const BATCH_ENTRIES: usize = 256;
/// Bytes of entry lines gathered per trip (plus at most one line over).
const BATCH_BYTES: usize = 64 * 1024;
/// Bytes of files hashed per trip (`"hash":"all"`); a larger file is hashed over several.
const BATCH_HASH_BYTES: u64 = 8 * 1024 * 1024;

/// Folder handles a walk holds at once, whatever the tree's depth; re-opening a folder the walk
/// comes back to holds one more for a moment.
pub const MAX_OPEN_FOLDERS: usize = 4;

/// The `LIST` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct List;

impl Command for List {
    fn verb(&self) -> &'static str {
        ListRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "list a folder's entries, or a whole tree"
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args: ListRequest = request.args()?;
            let rp = ctx.resolve(&args.path)?;
            let shown = rp.to_string();
            let (recursive, hash) = (args.recursive, args.hash);
            let open = ctx.root.blocking(Work::Bulk, move |root| {
                let mut walk = Walk::open(root.clone(), &rp, recursive)?;
                walk.hash = hash;
                Ok::<_, WireError>(walk)
            });
            let mut walk = open.await??;
            ctx.reply_ok(&ListReply {
                stream: StreamFormat::Lines,
                path: shown,
            })
            .await
            .map_err(CommandError::Abort)?;

            let mut out = Vec::with_capacity(BATCH_BYTES + MAX_HEADER_LEN);
            loop {
                let fill = ctx.root.bulk(move || {
                    let filled = walk.fill(&mut out);
                    (walk, out, filled)
                });
                // A listing under way cannot take an error reply: a storage that stopped
                // answering ends the connection.
                let (w, o, filled) = fill
                    .await
                    .map_err(|hung| CommandError::Abort(hung.into()))?;
                (walk, out) = (w, o);
                ctx.write_body(&out).await.map_err(CommandError::Abort)?;
                out.clear();
                match filled {
                    Ok(true) => break,
                    Ok(false) => {}
                    // The stream ends with the error line; the connection stays in step.
                    Err(e) => return ctx.reply_error(&e).await.map_err(CommandError::Abort),
                }
            }
            let end = ListEnd {
                end: true,
                count: walk.count,
                skipped: walk.skipped,
            };
            ctx.write_line(&end).await.map_err(CommandError::Abort)
        })
    }
}

/// One folder of the walk.
#[derive(Debug)]
struct Level {
    /// The folder, while it is open; entries are read from it and described relative to it.
    dir: Option<Dir>,
    /// How to open it again: its name in its parent, and what it was. `None` for the listed
    /// folder, which stays open.
    from: Option<(CString, FileId)>,
    /// How far its entries have been read.
    at: Position,
    /// Its path relative to the listed folder, with a trailing `/` (empty for the folder itself).
    prefix: String,
    /// Level of its entries: 1 for the listed folder's own.
    depth: usize,
}

/// A file being hashed for its entry, over as many batches as its size needs.
#[derive(Debug)]
struct Hashing {
    file: File,
    lookup: Lookup,
    hasher: blake3::Hasher,
    done: u64,
    /// Its entry, sent once the hash is known.
    entry: Entry,
}

/// A walk in progress. It moves to the blocking pool for each batch and back.
#[derive(Debug)]
struct Walk {
    /// The root, whose hash cache entries' hashes come from.
    root: Root,
    /// Which files' entries carry their hash.
    hash: ListHash,
    /// The file being hashed, when a batch ended in the middle of it.
    hashing: Option<Box<Hashing>>,
    /// The server's reserved folder, left out wherever it shows up.
    reserved: Option<FileId>,
    /// The listed folder as the client named it (normalized), for messages.
    shown: String,
    recursive: bool,
    stack: Vec<Level>,
    count: u64,
    skipped: u64,
}

impl Walk {
    /// Opens the listed folder: it must exist inside the root and be a folder.
    fn open(root: Root, rp: &sft_protocol::RemotePath, recursive: bool) -> Result<Walk, WireError> {
        let shown = rp.to_string();
        let folder = root.open_folder(rp)?;
        let reserved = root.reserved_id();
        // The root's own handle is shared: read entries from a handle of this walk's own.
        let dir = match Arc::try_unwrap(folder.into_fd()) {
            Ok(fd) => Dir::new(fd),
            Err(shared) => Dir::read_from(&*shared),
        }
        .map_err(|e| io_error(&shown, &e.into()))?;
        Ok(Walk {
            root,
            hash: ListHash::None,
            hashing: None,
            reserved,
            shown,
            recursive,
            stack: vec![Level {
                dir: Some(dir),
                from: None,
                at: Position::default(),
                prefix: String::new(),
                depth: 1,
            }],
            count: 0,
            skipped: 0,
        })
    }

    /// `rel` (relative to the listed folder) as a path relative to the root, for messages.
    fn at(shown: &str, rel: &str) -> String {
        match (shown, rel) {
            (".", rel) => rel.to_owned(),
            (shown, "") => shown.to_owned(),
            (shown, rel) => format!("{shown}/{rel}"),
        }
    }

    /// Appends the next batch of entry lines to `out`. `Ok(true)` once the walk is complete; an
    /// error if a folder could not be read any further (the stream then ends incomplete).
    fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool, WireError> {
        let mut examined = 0;
        let mut budget = BATCH_HASH_BYTES;
        if let Some(hashing) = self.hashing.take() {
            match hash_some(&self.root, *hashing, &mut budget) {
                Ok(entry) => self.emit(&entry, None, out),
                Err(hashing) => {
                    self.hashing = Some(hashing);
                    return Ok(false);
                }
            }
        }
        while examined < BATCH_ENTRIES && out.len() < BATCH_BYTES {
            let Some(level) = self.stack.last_mut() else {
                return Ok(true);
            };
            if level.dir.is_none() {
                self.reopen_top()?;
            }
            let level = self.stack.last_mut().expect("not empty");
            let dir = level.dir.as_mut().expect("opened again");
            let dirent = match dir.read() {
                None => {
                    self.stack.pop();
                    continue;
                }
                Some(Ok(dirent)) => {
                    level.at.advance(&dirent);
                    dirent
                }
                Some(Err(e)) => {
                    let rel = level.prefix.trim_end_matches('/');
                    return Err(io_error(&Self::at(&self.shown, rel), &e.into()));
                }
            };
            let raw = dirent.file_name();
            if raw.to_bytes() == b"." || raw.to_bytes() == b".." {
                continue;
            }
            examined += 1;
            let Ok(name) = raw.to_str() else {
                self.skipped += 1;
                continue;
            };
            if is_partial_download(name) {
                continue;
            }
            let dir = level.dir.as_ref().expect("open");
            let folder = dir.fd().expect("an open folder has a handle");
            let st = match rfs::statat(folder, raw, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed since the folder was read: it is no longer there to list.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(_) => {
                    self.skipped += 1;
                    continue;
                }
            };
            if self.reserved == Some(FileId::of(&st)) {
                continue;
            }
            let mut entry = describe(format!("{}{name}", level.prefix), &st);
            let mut descend = None;
            if self.recursive && entry.kind == Kind::Folder {
                if level.depth >= MAX_LIST_DEPTH {
                    entry.error = Some(WireError::new(
                        ErrorCode::TooLarge,
                        format!("deeper than {MAX_LIST_DEPTH} levels: contents not listed"),
                    ));
                } else {
                    let at = || Self::at(&self.shown, &entry.name);
                    let outcome = match open_subfolder(folder, raw, FileId::of(&st)) {
                        Ok(fd) => match Dir::new(fd) {
                            Ok(dir) => {
                                descend = Some(Level {
                                    dir: Some(dir),
                                    from: Some((raw.to_owned(), FileId::of(&st))),
                                    at: Position::default(),
                                    prefix: format!("{}/", entry.name),
                                    depth: level.depth + 1,
                                });
                                None
                            }
                            Err(e) => Some(io_error(&at(), &e.into())),
                        },
                        Err(Swapped) => Some(WireError::new(
                            ErrorCode::NotFound,
                            format!("{} changed while it was being listed", at()),
                        )),
                        Err(Failed(e)) => Some(io_error(&at(), &e.into())),
                    };
                    entry.error = outcome;
                }
            }
            if entry.kind == Kind::File && self.hash != ListHash::None {
                let lookup = self.root.hashes().lookup_stat(&st);
                log::trace!(name = entry.name.as_str(), cached = lookup.hash.is_some(); "LIST: a file's hash");
                entry.blake3 = lookup.hash.map(|h| h.to_hex().to_string());
                if entry.blake3.is_none() && self.hash == ListHash::All {
                    if let Some(file) = open_to_hash(folder, raw, &st) {
                        let hashing = Hashing {
                            file,
                            lookup,
                            hasher: blake3::Hasher::new(),
                            done: 0,
                            entry,
                        };
                        match hash_some(&self.root, hashing, &mut budget) {
                            Ok(hashed) => entry = hashed,
                            Err(hashing) => {
                                self.hashing = Some(hashing);
                                return Ok(false);
                            }
                        }
                    }
                }
            }
            self.emit(&entry, descend, out);
        }
        Ok(self.stack.is_empty() && self.hashing.is_none())
    }

    /// Writes `entry`'s line; then, depth first, the walk goes into `descend` (its folder).
    fn emit(&mut self, entry: &Entry, descend: Option<Level>, out: &mut Vec<u8>) {
        match encode_line(entry, out) {
            Ok(()) => {
                self.count += 1;
                if let Some(level) = descend {
                    self.stack.push(level);
                    self.close_excess();
                }
            }
            // Its contents' lines would be longer still: leave them out with it.
            Err(_) => self.skipped += 1,
        }
    }
}

impl Walk {
    /// Closes the shallowest open folder but the listed one while more than
    /// [`MAX_OPEN_FOLDERS`] are open; the walk opens it again when it comes back to it.
    fn close_excess(&mut self) {
        let open = self.stack.iter().filter(|l| l.dir.is_some()).count();
        if open > MAX_OPEN_FOLDERS {
            if let Some(level) = self.stack.iter_mut().skip(1).find(|l| l.dir.is_some()) {
                level.dir = None;
            }
        }
    }

    /// Opens the folder on top of the stack again, from its nearest open ancestor down, each
    /// step only if it is still the folder the walk left, and goes on where its reading was.
    fn reopen_top(&mut self) -> Result<(), WireError> {
        let top = self.stack.len() - 1;
        let base = self.stack[..top]
            .iter()
            .rposition(|l| l.dir.is_some())
            .expect("the listed folder stays open");
        let shown = |level: &Level| Self::at(&self.shown, level.prefix.trim_end_matches('/'));
        let mut held: Option<OwnedFd> = None;
        for level in &self.stack[base + 1..=top] {
            let (name, id) = level
                .from
                .as_ref()
                .expect("only the listed folder has no parent");
            let parent = match &held {
                Some(fd) => fd.as_fd(),
                None => {
                    let dir = self.stack[base].dir.as_ref().expect("open");
                    dir.fd().map_err(|e| io_error(&shown(level), &e.into()))?
                }
            };
            let fd = open_subfolder(parent, name, *id).map_err(|e| match e {
                Swapped => WireError::new(
                    ErrorCode::NotFound,
                    format!("{} changed while it was being listed", shown(level)),
                ),
                Failed(e) => io_error(&shown(level), &e.into()),
            })?;
            held = Some(fd);
        }
        let level = &self.stack[top];
        let fd = held.expect("the top is above the open ancestor");
        let mut dir = Dir::new(fd).map_err(|e| io_error(&shown(level), &e.into()))?;
        level
            .at
            .restore(&mut dir)
            .map_err(|e| io_error(&shown(level), &e))?;
        self.stack[top].dir = Some(dir);
        Ok(())
    }
}

/// How far a folder's entries have been read, to read on from there once it is opened again.
#[derive(Debug, Default, Clone, Copy)]
struct Position {
    /// Entries read so far.
    read: u64,
    /// The directory stream's position after the last entry read: a cookie the file system
    /// keeps valid for the folder, also across opens (as `seekdir` and NFS rely on).
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        target_pointer_width = "64"
    ))]
    cookie: i64,
}

impl Position {
    /// Counts `entry` as read.
    fn advance(&mut self, entry: &rustix::fs::DirEntry) {
        self.read += 1;
        #[cfg(all(
            any(target_os = "linux", target_os = "android"),
            target_pointer_width = "64"
        ))]
        {
            self.cookie = entry.offset();
        }
        #[cfg(not(all(
            any(target_os = "linux", target_os = "android"),
            target_pointer_width = "64"
        )))]
        let _ = entry;
    }

    /// Moves `dir`, just opened, past the entries read before.
    fn restore(&self, dir: &mut Dir) -> std::io::Result<()> {
        if self.read == 0 {
            return Ok(());
        }
        #[cfg(all(
            any(target_os = "linux", target_os = "android"),
            target_pointer_width = "64"
        ))]
        {
            dir.seek(self.cookie).map_err(Into::into)
        }
        // Without a cookie, by count: entries added or removed meanwhile may shift it by as many.
        #[cfg(not(all(
            any(target_os = "linux", target_os = "android"),
            target_pointer_width = "64"
        )))]
        {
            for _ in 0..self.read {
                match dir.read() {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                }
            }
            Ok(())
        }
    }
}

/// Hashes more of a file, at most `budget` bytes (less what it uses). Returns its entry,
/// with the hash when the file was read whole and is still the version it was when listed
/// (otherwise without: a file being written has no hash to compare with yet), or the work
/// left when the budget ran out.
fn hash_some(root: &Root, mut h: Hashing, budget: &mut u64) -> Result<Entry, Box<Hashing>> {
    let size = h.lookup.version.size;
    let len = (size - h.done).min(*budget);
    let read = sft_io::blocks::hash_range(&h.file, &mut h.hasher, h.done, len);
    log::trace!(name = h.entry.name.as_str(), from = h.done, bytes = len, size = size; "LIST: hashed a step");
    *budget -= len;
    h.done += len;
    if read.is_ok() && h.done < size {
        return Err(Box::new(h));
    }
    let hash = h.hasher.finalize();
    let whole = read.is_ok() && confirm(&h.file, &h.lookup.version, Some(&hash)).is_ok();
    if whole {
        root.hashes().insert(&h.lookup, &h.file, hash);
        h.entry.blake3 = Some(hash.to_hex().to_string());
    }
    Ok(h.entry)
}

/// Opens the regular file `name` of `folder`, described as `st`, to hash it: never through a
/// symlink, never blocking on a FIFO swapped in, and only if it is still that file.
fn open_to_hash(
    folder: impl std::os::fd::AsFd,
    name: &std::ffi::CStr,
    st: &rfs::Stat,
) -> Option<File> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = rfs::openat(folder, name, flags, Mode::empty()).ok()?;
    let now = rfs::fstat(&fd).ok()?;
    let same = FileId::of(&now) == FileId::of(st)
        && rfs::FileType::from_raw_mode(now.st_mode) == rfs::FileType::RegularFile;
    same.then(|| File::from(fd))
}

/// Why a sub-folder could not be descended into.
enum OpenError {
    /// It is no longer the folder that was described (replaced, or swapped for a symlink).
    Swapped,
    /// It could not be opened.
    Failed(rustix::io::Errno),
}
use OpenError::{Failed, Swapped};

/// Opens the sub-folder `name` of `folder`, which was described as `id`: never through a
/// symlink, and only if it is still that folder.
fn open_subfolder(
    folder: impl std::os::fd::AsFd,
    name: &std::ffi::CStr,
    id: FileId,
) -> Result<OwnedFd, OpenError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(folder, name, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::NOENT => Swapped,
        e => Failed(e),
    })?;
    match rfs::fstat(&fd) {
        Ok(st) if FileId::of(&st) == id => Ok(fd),
        Ok(_) => Err(Swapped),
        Err(e) => Err(Failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sft_protocol::body::{decode_stream_line, StreamLine};
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn walk_all(root: &Root, path: &str, recursive: bool) -> (BTreeMap<String, Entry>, Walk) {
        let rp = root.check(path).unwrap();
        let mut walk = Walk::open(root.clone(), &rp, recursive).unwrap();
        let mut entries = BTreeMap::new();
        let mut batches = 0;
        loop {
            let mut out = Vec::new();
            let done = walk.fill(&mut out).unwrap();
            batches += 1;
            for line in out.split_inclusive(|&b| b == b'\n') {
                let StreamLine::Item(item) = decode_stream_line(line).unwrap() else {
                    panic!("not an item")
                };
                let e: Entry = serde_json::from_slice(item).unwrap();
                if let Some((parent, _)) = e.name.rsplit_once('/') {
                    assert!(entries.contains_key(parent), "{} before its folder", e.name);
                }
                assert!(entries.insert(e.name.clone(), e).is_none(), "listed twice");
            }
            if done {
                break;
            }
        }
        assert!(batches >= 1);
        (entries, walk)
    }

    #[test]
    fn walks_depth_first_without_following_symlinks_or_showing_reserved_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("a/b/c")).unwrap();
        fs::write(d.join("top.txt"), b"top").unwrap();
        fs::write(d.join("a/b/c/deep.txt"), b"deep!").unwrap();
        fs::write(d.join("a/.x.sft-part"), b"partial").unwrap();
        symlink("a", d.join("link_to_a")).unwrap();
        symlink("/", d.join("link_out")).unwrap();
        let root = Root::open(d).unwrap();

        let (flat, _) = walk_all(&root, "", false);
        let names: Vec<_> = flat.keys().cloned().collect();
        assert_eq!(names, ["a", "link_out", "link_to_a", "top.txt"]);
        assert_eq!(flat["link_to_a"].kind, Kind::Symlink);
        assert_eq!(flat["top.txt"].size, 3);

        let (deep, walk) = walk_all(&root, "", true);
        let names: Vec<_> = deep.keys().cloned().collect();
        assert_eq!(
            names,
            [
                "a",
                "a/b",
                "a/b/c",
                "a/b/c/deep.txt",
                "link_out",
                "link_to_a",
                "top.txt"
            ]
        );
        assert_eq!(walk.count, 7);
        assert_eq!(walk.skipped, 0);

        // A folder reached through a symlink inside the root is listed like the folder.
        let (via, _) = walk_all(&root, "link_to_a", true);
        assert_eq!(
            via.keys().cloned().collect::<Vec<_>>(),
            ["b", "b/c", "b/c/deep.txt"]
        );
    }

    fn walk_hashing(root: &Root, hash: ListHash) -> BTreeMap<String, Entry> {
        let rp = root.check("").unwrap();
        let mut walk = Walk::open(root.clone(), &rp, true).unwrap();
        walk.hash = hash;
        let mut out = Vec::new();
        let mut batches = 0;
        while !walk.fill(&mut out).unwrap() {
            batches += 1;
            assert!(batches < 100, "the walk ends");
        }
        let mut entries = BTreeMap::new();
        for line in out.split_inclusive(|&b| b == b'\n') {
            let StreamLine::Item(item) = decode_stream_line(line).unwrap() else {
                panic!("not an item")
            };
            let e: Entry = serde_json::from_slice(item).unwrap();
            entries.insert(e.name.clone(), e);
        }
        entries
    }

    #[test]
    fn hashes_come_from_the_cache_or_are_computed_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![5u8; BATCH_HASH_BYTES as usize * 2 + 3];
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/big"), &big).unwrap();
        fs::write(dir.path().join("small"), b"small").unwrap();
        fs::write(dir.path().join("empty"), b"").unwrap();
        // Versions younger than the racy window are never cached: let them age.
        std::thread::sleep(sft_io::RACY * 2);
        let root = Root::open(dir.path()).unwrap();
        let hex = |b: &[u8]| Some(blake3::hash(b).to_hex().to_string());

        let none = walk_hashing(&root, ListHash::None);
        assert!(none.values().all(|e| e.blake3.is_none()));
        assert_eq!(none["small"].mode.map(|m| m & 0o170000), Some(0));
        let cached = walk_hashing(&root, ListHash::Cached);
        assert!(
            cached.values().all(|e| e.blake3.is_none()),
            "nothing cached yet"
        );

        let all = walk_hashing(&root, ListHash::All);
        assert_eq!(all["d/big"].blake3, hex(&big));
        assert_eq!(all["small"].blake3, hex(b"small"));
        assert_eq!(all["empty"].blake3, hex(b""));
        assert_eq!(all["d"].blake3, None, "folders have none");
        assert_eq!(root.hashes().len(), 3);

        // Now cached: listed with their hashes without reading; a changed file is not.
        fs::write(dir.path().join("small"), b"SMALL").unwrap();
        let cached = walk_hashing(&root, ListHash::Cached);
        assert_eq!(cached["d/big"].blake3, hex(&big));
        assert_eq!(cached["small"].blake3, None);
    }

    #[test]
    fn many_entries_come_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..1000 {
            fs::write(dir.path().join(format!("f{i:04}")), b"").unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        let mut walk = Walk::open(root, &Default::default(), false).unwrap();
        let mut out = Vec::new();
        assert!(!walk.fill(&mut out).unwrap());
        assert_eq!(walk.count, BATCH_ENTRIES as u64);
        for _ in 0..1000 {
            out.clear();
            if walk.fill(&mut out).unwrap() {
                break;
            }
        }
        assert_eq!(walk.count, 1000);
    }

    #[test]
    fn a_deep_tree_is_walked_whole_with_a_bounded_number_of_folders_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        let mut rel = String::new();
        // Files and folders before and after the folder the walk goes down into, at every level:
        // a folder closed on the way down is read on from where it was.
        for level in 0..20 {
            for name in ["a", "m", "z"] {
                let file = format!("{rel}{name}{level}.txt");
                fs::write(dir.path().join(&file), b"x").unwrap();
                expected.push(file);
                let side = format!("{rel}{name}{level}.d");
                fs::create_dir(dir.path().join(&side)).unwrap();
                fs::write(dir.path().join(&side).join("in"), b"").unwrap();
                expected.extend([side.clone(), format!("{side}/in")]);
            }
            rel.push_str("deeper");
            fs::create_dir(dir.path().join(&rel)).unwrap();
            expected.push(rel.clone());
            rel.push('/');
        }
        let root = Root::open(dir.path()).unwrap();
        let rp = root.check("").unwrap();
        let mut walk = Walk::open(root.clone(), &rp, true).unwrap();
        let mut listed = Vec::new();
        loop {
            // The handles are looked at between batches.
            let mut out = Vec::new();
            let done = walk.fill(&mut out).unwrap();
            let open = walk.stack.iter().filter(|l| l.dir.is_some()).count();
            assert!(open <= MAX_OPEN_FOLDERS, "{open} open");
            for line in out.split_inclusive(|&b| b == b'\n') {
                let StreamLine::Item(item) = decode_stream_line(line).unwrap() else {
                    panic!("not an item")
                };
                listed.push(serde_json::from_slice::<Entry>(item).unwrap().name);
            }
            if done {
                break;
            }
        }
        assert!(walk.stack.is_empty());
        let (mut listed_sorted, mut expected) = (listed.clone(), expected);
        listed_sorted.sort();
        expected.sort();
        assert_eq!(listed_sorted, expected, "each entry once");
        // And the same through the whole-batch path.
        let (all, _) = walk_all(&root, "", true);
        assert_eq!(all.len(), listed.len());
    }

    /// Walks `walk` down its chain of folders named `d`, as `fill` does (but entry by entry),
    /// until it is `levels` deep.
    fn walk_down(walk: &mut Walk, levels: usize) {
        while walk.stack.len() < levels {
            let level = walk.stack.last_mut().unwrap();
            let dir = level.dir.as_mut().unwrap();
            let entry = dir.read().unwrap().unwrap();
            level.at.advance(&entry);
            let name = entry.file_name().to_owned();
            if name.to_bytes() != b"d" {
                continue;
            }
            let folder = dir.fd().unwrap();
            let id = FileId::of(&rfs::statat(folder, &name, AtFlags::SYMLINK_NOFOLLOW).unwrap());
            let Ok(fd) = open_subfolder(folder, &name, id) else {
                panic!("opens")
            };
            let depth = level.depth + 1;
            walk.stack.push(Level {
                dir: Some(Dir::new(fd).unwrap()),
                from: Some((name, id)),
                at: Position::default(),
                prefix: "d/".repeat(depth - 1),
                depth,
            });
            walk.close_excess();
        }
    }

    /// Fills until the walk ends: its error, if it ends with one.
    fn fill_to_end(walk: &mut Walk) -> Option<WireError> {
        let mut out = Vec::new();
        loop {
            match walk.fill(&mut out) {
                Ok(true) => return None,
                Ok(false) => {}
                Err(e) => return Some(e),
            }
        }
    }

    #[test]
    fn a_folder_swapped_while_closed_ends_the_listing_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let deep = MAX_OPEN_FOLDERS + 2;
        fs::create_dir_all(dir.path().join("d/".repeat(deep))).unwrap();
        fs::write(dir.path().join("d/z"), b"").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let rp = root.check("").unwrap();
        for swap in [false, true] {
            let mut walk = Walk::open(root.clone(), &rp, true).unwrap();
            walk_down(&mut walk, deep + 1);
            assert!(walk.stack[1].dir.is_none(), "closed on the way down");
            if swap {
                fs::rename(dir.path().join("d/d"), dir.path().join("gone")).unwrap();
                fs::create_dir(dir.path().join("d/d")).unwrap();
            }
            match (swap, fill_to_end(&mut walk)) {
                (false, None) => {}
                (true, Some(err)) => {
                    assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
                    assert!(
                        err.message
                            .contains("d/d changed while it was being listed"),
                        "{err:?}"
                    );
                }
                (swap, ended) => panic!("swapped: {swap}, ended with {ended:?}"),
            }
        }
    }

    #[test]
    fn depth_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = dir.path().to_owned();
        for _ in 0..MAX_LIST_DEPTH + 3 {
            p.push("d");
        }
        fs::create_dir_all(&p).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let (all, _) = walk_all(&root, "", true);
        assert_eq!(all.len(), MAX_LIST_DEPTH);
        let deepest = all.values().max_by_key(|e| e.name.len()).unwrap();
        assert_eq!(deepest.error.as_ref().unwrap().code, ErrorCode::TooLarge);
        assert!(all.values().filter(|e| e.error.is_some()).count() == 1);
    }

    #[test]
    fn only_folders_inside_the_root_can_be_listed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let open = |p: &str| {
            root.check(p)
                .and_then(|rp| Walk::open(root.clone(), &rp, false))
                .map(|_| ())
                .map_err(|e| e.code)
        };
        assert_eq!(open("f"), Err(ErrorCode::BadRequest));
        assert_eq!(open("missing"), Err(ErrorCode::NotFound));
        assert_eq!(open(".."), Err(ErrorCode::Forbidden));
        assert_eq!(open(".sft"), Err(ErrorCode::Forbidden));
        assert_eq!(open("."), Ok(()));
    }
}
