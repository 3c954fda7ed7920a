//! Path resolution: from a client's path to an open folder inside the root and a name in it.
//!
//! Resolution walks **component by component** from the open root handle: each folder is
//! opened with `openat(parent, name, O_NOFOLLOW | O_DIRECTORY)`, a symlink is read and its
//! target resolved the same way (so it is followed only while it stays inside the root), and
//! what the caller finally does — open, describe, list, create, rename — goes through the
//! folder handle resolution produced, never through a path string.
//!
//! The reserved folder `.sft/` is refused by name and, at the top of the root, by identity
//! (device and inode): a name that reaches it on a case-insensitive file system is refused too.

use super::handle::{FileId, RootHandle, DIR_FLAGS};
use super::{errno, exists, io_error, Root, PARTIAL_SUFFIX, RESERVED_DIR};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use sft_protocol::{normalize, ErrorCode, RemotePath, WireError};
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Symlinks followed while resolving one path, at most (as Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// What a resolved path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Folder,
    /// A symbolic link (only reported when links are not followed).
    Symlink,
    /// A FIFO, socket or device: never served.
    Other,
}

impl Kind {
    pub(crate) fn of(st: &rfs::Stat) -> Kind {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Folder,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// An open folder inside the root and its real path below the root.
#[derive(Debug)]
pub struct Folder {
    /// Shared with the root itself when this is the root: resolving starts without a syscall.
    pub(crate) fd: Arc<OwnedFd>,
    pub(crate) names: Vec<String>,
}

impl Folder {
    /// The open folder handle.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The folder's real path relative to the root (symlinks resolved), `/`-joined.
    pub fn relative(&self) -> String {
        self.names.join("/")
    }

    /// The open folder handle, for keeping.
    pub(crate) fn into_fd(self) -> Arc<OwnedFd> {
        self.fd
    }

    /// Whether this is the root itself.
    pub(crate) fn is_root(&self) -> bool {
        self.names.is_empty()
    }
}

/// Where a new file goes: an open parent folder inside the root, and a name in it.
#[derive(Debug)]
pub struct Target {
    pub(crate) parent: Folder,
    pub(crate) name: String,
    pub(crate) shown: String,
    path: PathBuf,
    /// The permission bits of the regular file that was there when it was resolved, if any.
    pub(crate) replaced_mode: Option<u32>,
}

impl Target {
    /// The target's real path (for logs; all operations use the open parent handle).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A resolved path: its open parent folder and last name (`None`: the root), and what the last
/// name was when it was looked at (only when the last component was followed).
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) parent: Folder,
    pub(super) name: Option<String>,
    stat: Option<rfs::Stat>,
    pub(super) handle: Arc<RootHandle>,
}

/// How [`Root::resolve`] treats the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Last {
    /// Follow a symlink there; it must exist.
    Follow,
    /// Do not look at it; create missing parent folders.
    Create,
    /// Do not follow it (a symlink there is the answer); parents must exist.
    Entry,
}

fn forbidden(shown: &impl std::fmt::Display, why: &str) -> WireError {
    log::debug!(path:% = shown, reason = why; "sandbox refused");
    WireError::new(ErrorCode::Forbidden, format!("{shown} {why}"))
}

pub(super) fn reserved() -> WireError {
    log::debug!(reason = "the reserved folder"; "sandbox refused");
    WireError::new(
        ErrorCode::Forbidden,
        format!("{RESERVED_DIR}/ is reserved for the server's own use"),
    )
}

fn changed(rp: &RemotePath) -> WireError {
    forbidden(rp, "changed while it was being opened; try again")
}

/// `bad_request` for a path that names something other than a regular file.
fn not_a_file(rp: &RemotePath, st: &rfs::Stat) -> WireError {
    let what = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => "a folder",
        FileType::Socket => "a socket",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Symlink => "a symbolic link",
        _ => "not a regular file",
    };
    WireError::bad_request(format!(
        "{rp} is {what}: only regular files can be downloaded"
    ))
}

/// Whether a listing leaves out the entry `name` because it is a client's partial download
/// (`.NAME.sft-part`).
pub(crate) fn is_partial_download(name: &str) -> bool {
    name.len() > PARTIAL_SUFFIX.len() + 1 && name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX)
}

impl Root {
    /// Checks a client's path lexically: normalized, inside the root, not reserved.
    pub fn check(&self, path: &str) -> Result<RemotePath, WireError> {
        let rp = normalize(path).map_err(|e| {
            let code = if e.is_escape() {
                ErrorCode::Forbidden
            } else {
                ErrorCode::BadRequest
            };
            WireError::new(code, format!("{e}: {path:?}"))
        })?;
        if rp.components().next() == Some(RESERVED_DIR) {
            return Err(reserved());
        }
        Ok(rp)
    }

    /// The identity of the reserved folder, if it exists (for listings to leave it out).
    pub(crate) fn reserved_id(&self) -> Option<FileId> {
        self.handle().reserved_id()
    }

    /// Re-opens the folder at `names` below the root, refusing symlinks on the way (used after
    /// a symlink target's `..`).
    fn reopen(
        handle: &RootHandle,
        names: Vec<String>,
        shown: &RemotePath,
    ) -> Result<Folder, WireError> {
        let mut fd = Arc::clone(&handle.fd);
        for name in &names {
            fd = rfs::openat(&fd, name.as_str(), DIR_FLAGS, Mode::empty())
                .map_err(|e| io_error(&shown.to_string(), &errno(e)))?
                .into();
        }
        Ok(Folder { fd, names })
    }

    /// Resolves `rp` to an open parent folder and the last name in it. A lookup that fails
    /// because something is missing checks whether the root itself vanished and, if it is
    /// back, tries once more.
    pub(super) fn resolve(&self, rp: &RemotePath, last_mode: Last) -> Result<Resolved, WireError> {
        let handle = self.handle();
        match Self::resolve_in(&self.inner.dir, Arc::clone(&handle), rp, last_mode) {
            Err(e) if e.code == ErrorCode::NotFound => match self.recheck_after_miss(&handle) {
                Some(fresh) => Self::resolve_in(&self.inner.dir, fresh, rp, last_mode),
                None => Err(e),
            },
            result => result,
        }
    }

    /// After a lookup from `used` found nothing: a newer handle if the root was replaced.
    fn recheck_after_miss(&self, used: &Arc<RootHandle>) -> Option<Arc<RootHandle>> {
        let current = || Arc::clone(&crate::poison::read(&self.inner.handle));
        let now = current();
        if !Arc::ptr_eq(&now, used) {
            return Some(now);
        }
        self.recheck(used).then(current)
    }

    /// The component-by-component walk from `handle`'s root folder (at `dir`).
    fn resolve_in(
        dir: &Path,
        handle: Arc<RootHandle>,
        rp: &RemotePath,
        last_mode: Last,
    ) -> Result<Resolved, WireError> {
        let mut queue: VecDeque<String> = rp.components().map(str::to_owned).collect();
        let root = || Folder {
            fd: Arc::clone(&handle.fd),
            names: Vec::new(),
        };
        let mut cur = root();
        let mut links = 0;
        let done = |parent, name, stat| {
            Ok(Resolved {
                parent,
                name,
                stat,
                handle: Arc::clone(&handle),
            })
        };
        while let Some(part) = queue.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    let mut names = std::mem::take(&mut cur.names);
                    if names.pop().is_none() {
                        return Err(forbidden(rp, "resolves outside the served root"));
                    }
                    cur = Self::reopen(&handle, names, rp)?;
                    continue;
                }
                _ => {}
            }
            if cur.is_root() && part == RESERVED_DIR {
                return Err(reserved());
            }
            let last = queue.is_empty();
            if last && last_mode != Last::Follow {
                return done(cur, Some(part), None);
            }
            if !last {
                // A folder on the way, the common case, is opened at once: one call rather than
                // a look and then an open. O_NOFOLLOW | O_DIRECTORY refuse anything else (a
                // symlink, a file, nothing there), which is then looked at below.
                match rfs::openat(&cur.fd, part.as_str(), DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => {
                        if cur.is_root() {
                            // By identity too: another spelling of `.sft` on a case-insensitive
                            // file system.
                            let st = rfs::fstat(&fd)
                                .map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
                            if handle.is_reserved(&st) {
                                return Err(reserved());
                            }
                        }
                        cur.names.push(part);
                        cur = Folder {
                            fd: fd.into(),
                            names: std::mem::take(&mut cur.names),
                        };
                        continue;
                    }
                    Err(rustix::io::Errno::LOOP)
                    | Err(rustix::io::Errno::NOTDIR)
                    | Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(io_error(&rp.to_string(), &errno(e))),
                }
            }
            let st = match rfs::statat(&cur.fd, part.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) if last_mode == Last::Create => {
                    match rfs::mkdirat(&cur.fd, part.as_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(io_error(&rp.to_string(), &errno(e))),
                    }
                    queue.push_front(part);
                    continue;
                }
                Err(e) => return Err(io_error(&rp.to_string(), &errno(e))),
            };
            // By identity too: another spelling of `.sft` on a case-insensitive file system.
            if cur.is_root() && handle.is_reserved(&st) {
                return Err(reserved());
            }
            match Kind::of(&st) {
                Kind::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(WireError::bad_request(format!(
                            "{rp}: too many levels of symbolic links"
                        )));
                    }
                    let target = rfs::readlinkat(&cur.fd, part.as_str(), Vec::new()).map_err(
                        |e| match e {
                            // No longer a symlink (EINVAL) or gone since the look above.
                            rustix::io::Errno::INVAL | rustix::io::Errno::NOENT => changed(rp),
                            e => io_error(&rp.to_string(), &errno(e)),
                        },
                    )?;
                    let target = target.into_string().map_err(|_| {
                        WireError::bad_request(format!(
                            "{rp}: a symbolic link on the way is not UTF-8"
                        ))
                    })?;
                    let relative = if let Some(abs) = target.strip_prefix('/') {
                        // An absolute link may point back inside the root; anywhere else is out.
                        let inside = Path::new("/").join(abs);
                        let rest = inside
                            .strip_prefix(dir)
                            .map_err(|_| forbidden(rp, "resolves outside the served root"))?;
                        cur = root();
                        rest.to_str().unwrap_or_default().to_owned()
                    } else {
                        target
                    };
                    for (i, p) in relative.split('/').filter(|p| !p.is_empty()).enumerate() {
                        queue.insert(i, p.to_owned());
                    }
                }
                Kind::Folder if !last => {
                    let fd = rfs::openat(&cur.fd, part.as_str(), DIR_FLAGS, Mode::empty())
                        .map_err(|e| match e {
                            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => changed(rp),
                            e => io_error(&rp.to_string(), &errno(e)),
                        })?;
                    cur.names.push(part);
                    cur = Folder {
                        fd: fd.into(),
                        names: std::mem::take(&mut cur.names),
                    };
                }
                _ if last => return done(cur, Some(part), Some(st)),
                _ => {
                    return Err(WireError::bad_request(format!(
                        "{rp}: {part} is not a folder"
                    )))
                }
            }
        }
        done(cur, None, None)
    }

    /// Resolves an existing path, following symlinks only while they stay inside the root;
    /// returns its real path.
    pub fn locate(&self, rp: &RemotePath) -> Result<PathBuf, WireError> {
        let r = self.resolve(rp, Last::Follow)?;
        let mut path = self.inner.dir.clone();
        path.extend(r.parent.names.iter());
        path.extend(r.name.iter());
        Ok(path)
    }

    /// Opens an existing folder (the root for the empty path), for listing.
    pub fn open_folder(&self, rp: &RemotePath) -> Result<Folder, WireError> {
        let r = self.resolve(rp, Last::Follow)?;
        let Some(name) = r.name else {
            return Ok(r.parent);
        };
        if r.stat.is_some_and(|st| Kind::of(&st) != Kind::Folder) {
            return Err(WireError::bad_request(format!("{rp} is not a folder")));
        }
        let fd = rfs::openat(&r.parent.fd, name.as_str(), DIR_FLAGS, Mode::empty()).map_err(
            |e| match e {
                rustix::io::Errno::NOTDIR => {
                    WireError::bad_request(format!("{rp} is not a folder"))
                }
                rustix::io::Errno::LOOP => changed(rp),
                e => io_error(&rp.to_string(), &errno(e)),
            },
        )?;
        if r.parent.is_root() {
            // The folder opened may not be the one looked at: never the reserved one.
            let st = rfs::fstat(&fd).map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
            if r.handle.is_reserved(&st) {
                return Err(reserved());
            }
        }
        let mut names = r.parent.names;
        names.push(name);
        Ok(Folder {
            fd: fd.into(),
            names,
        })
    }

    /// Resolves an existing path like [`Root::locate`], except that a symlink named by the last
    /// component is not followed: the result is the link itself (`lstat` semantics). Symlinks
    /// in the folders leading to it are followed while they stay inside the root.
    pub fn locate_entry(&self, rp: &RemotePath) -> Result<PathBuf, WireError> {
        let (r, _) = self.resolve_entry(rp)?;
        let mut real = self.inner.dir.clone();
        real.extend(r.parent.names.iter());
        real.extend(r.name);
        Ok(real)
    }

    /// Describes an existing path without following a symlink named by its last component
    /// (`lstat` semantics), through the handle of the folder holding it: what is described is
    /// always inside the root, whatever is swapped meanwhile.
    pub fn stat_entry(&self, rp: &RemotePath) -> Result<rfs::Stat, WireError> {
        self.resolve_entry(rp).map(|(_, st)| st)
    }

    fn resolve_entry(&self, rp: &RemotePath) -> Result<(Resolved, rfs::Stat), WireError> {
        let r = self.resolve(rp, Last::Entry)?;
        let st = match &r.name {
            None => rfs::fstat(&*r.parent.fd),
            Some(name) => rfs::statat(&*r.parent.fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW),
        }
        .map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
        if r.parent.is_root() && r.name.is_some() && r.handle.is_reserved(&st) {
            return Err(reserved());
        }
        Ok((r, st))
    }

    /// Whether a listing leaves out the entry at `real` (a path inside the root whose last
    /// component is not resolved): the reserved folder, and partial downloads. Listings
    /// themselves recognise the reserved folder by identity, not by this name.
    pub fn is_hidden(&self, real: &Path) -> bool {
        if real.parent() == Some(self.inner.dir.as_path())
            && real.file_name() == Some(RESERVED_DIR.as_ref())
        {
            return true;
        }
        real.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_partial_download)
    }

    /// Opens an existing regular file for reading; returns it with its length.
    pub fn open_file(&self, rp: &RemotePath) -> Result<(File, u64), WireError> {
        self.open_file_stat(rp)
            .map(|(file, st)| (file, st.st_size as u64))
    }

    /// Like [`Root::open_file`], with the file's metadata as opened (for the hash cache).
    ///
    /// Anything but a regular file — folder, FIFO, socket, device — is `bad_request`, refused
    /// from its metadata before any open, so a FIFO cannot hang the server and a device is
    /// never opened.
    pub fn open_file_stat(&self, rp: &RemotePath) -> Result<(File, rfs::Stat), WireError> {
        let r = self.resolve(rp, Last::Follow)?;
        let name = r
            .name
            .ok_or_else(|| WireError::bad_request("the root is a folder, not a file"))?;
        if let Some(st) = r.stat.filter(|st| Kind::of(st) != Kind::File) {
            return Err(not_a_file(rp, &st));
        }
        // O_NOFOLLOW: a symlink swapped in since resolution is refused, not followed.
        // O_NONBLOCK: should a FIFO be swapped in since, opening it must not hang the server.
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = rfs::openat(&r.parent.fd, name.as_str(), flags, Mode::empty()).map_err(
            |e| match e {
                rustix::io::Errno::LOOP => changed(rp),
                // A socket swapped in since resolution cannot be opened at all.
                rustix::io::Errno::NXIO => WireError::bad_request(format!(
                    "{rp} is not a regular file: only regular files can be downloaded"
                )),
                e => io_error(&rp.to_string(), &errno(e)),
            },
        )?;
        let st = rfs::fstat(&fd).map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
        if Kind::of(&st) != Kind::File {
            return Err(not_a_file(rp, &st));
        }
        Ok((File::from(fd), st))
    }

    /// Resolves where a new file at `rp` goes, creating missing parent folders inside the root.
    /// Fails with `exists` if something is there and `overwrite` is false, and with `bad_request`
    /// if a folder is there. A symlink there is an existing file, wherever it points: it is
    /// replaced itself, never followed (PROTOCOL.md §4).
    pub fn prepare_target(&self, rp: &RemotePath, overwrite: bool) -> Result<Target, WireError> {
        if rp.is_root() {
            return Err(WireError::bad_request(
                "a file name is needed, not the root",
            ));
        }
        let r = self.resolve(rp, Last::Create)?;
        let (parent, name) = (r.parent, r.name.expect("a non-root path has a last name"));
        let replaced_mode = match rfs::statat(&parent.fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
        {
            Ok(st) if Kind::of(&st) == Kind::Folder => {
                return Err(WireError::bad_request(format!("{rp} is a folder")))
            }
            Ok(_) if !overwrite => return Err(exists(rp)),
            // Its bits as the file system holds them now: the look above may have been
            // answered from a cache (see `replaced_bits`).
            Ok(st) if Kind::of(&st) == Kind::File => {
                crate::attributes::replaced_bits(&parent.fd, name.as_str())
            }
            Ok(_) | Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(io_error(&rp.to_string(), &errno(e))),
        };
        let mut path = self.inner.dir.clone();
        path.extend(parent.names.iter());
        path.push(&name);
        Ok(Target {
            parent,
            name,
            shown: rp.to_string(),
            path,
            replaced_mode,
        })
    }

    /// Creates the folder `rp` and any missing parents inside the root. Returns whether it was
    /// created: `false` when a folder (or a symlink to one inside the root) is there already.
    /// Something else there is `bad_request`.
    pub fn make_folder(&self, rp: &RemotePath) -> Result<bool, WireError> {
        if rp.is_root() {
            return Ok(false);
        }
        let r = self.resolve(rp, Last::Create)?;
        let name = r.name.expect("a non-root path has a last name");
        match rfs::mkdirat(&r.parent.fd, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => self.open_folder(rp).map(|_| false),
            Err(e) => Err(io_error(&rp.to_string(), &errno(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sft_protocol::ErrorCode;
    use std::os::unix::fs::symlink;
    use std::{fs, io};

    use crate::sandbox::tests::setup;

    fn read(root: &Root, p: &str) -> Result<Vec<u8>, ErrorCode> {
        let rp = root.check(p).map_err(|e| e.code)?;
        let (mut f, _) = root.open_file(&rp).map_err(|e| e.code)?;
        let mut v = Vec::new();
        io::Read::read_to_end(&mut f, &mut v).unwrap();
        Ok(v)
    }

    #[test]
    fn reads_inside_the_root() {
        let (_r, _o, root) = setup();
        assert_eq!(read(&root, "inside.txt").unwrap(), b"in");
        assert_eq!(read(&root, "sub/../inside.txt").unwrap(), b"in");
        assert_eq!(read(&root, "to_inside").unwrap(), b"f");
        assert_eq!(read(&root, "to_sub/f.txt").unwrap(), b"f");
    }

    #[test]
    fn hostile_reads_are_refused() {
        let (_r, outside, root) = setup();
        let secret = outside.path().join("secret");
        let table: &[(&str, ErrorCode)] = &[
            ("../secret", ErrorCode::Forbidden),
            (secret.to_str().unwrap(), ErrorCode::Forbidden),
            ("/etc/passwd", ErrorCode::Forbidden),
            ("sub/../../x", ErrorCode::Forbidden),
            ("to_secret", ErrorCode::Forbidden),
            ("to_outside_dir/secret", ErrorCode::Forbidden),
            (".sft/tmp", ErrorCode::Forbidden),
            ("./.sft", ErrorCode::Forbidden),
            ("to_staging", ErrorCode::Forbidden),
            ("a\0b", ErrorCode::BadRequest),
            ("missing", ErrorCode::NotFound),
            ("sub", ErrorCode::BadRequest),
            ("", ErrorCode::BadRequest),
        ];
        for (p, want) in table {
            assert_eq!(read(&root, p), Err(*want), "{p:?}");
        }
    }

    #[test]
    fn hostile_writes_are_refused() {
        let (_r, outside, root) = setup();
        let table: &[(&str, ErrorCode)] = &[
            ("../x", ErrorCode::Forbidden),
            ("to_outside_dir/new", ErrorCode::Forbidden),
            ("to_staging/new", ErrorCode::Forbidden),
            (".sft/tmp/new", ErrorCode::Forbidden),
            ("inside.txt", ErrorCode::Exists),
            ("sub", ErrorCode::BadRequest),
            ("inside.txt/x", ErrorCode::BadRequest),
            ("", ErrorCode::BadRequest),
        ];
        for (p, want) in table {
            let got = root.check(p).and_then(|rp| root.prepare_target(&rp, false));
            assert_eq!(
                got.map(|t| t.path().to_owned()).map_err(|e| e.code),
                Err(*want),
                "{p:?}"
            );
        }
        assert!(
            fs::read_dir(outside.path()).unwrap().count() == 1,
            "nothing created outside"
        );
    }

    #[test]
    fn symlink_edge_cases() {
        let (dir, _o, root) = setup();
        let d = dir.path();
        // Absolute link back inside the root, a chain, and `..` inside a target that stays in.
        symlink(d.join("sub/f.txt"), d.join("abs_inside")).unwrap();
        symlink("to_inside", d.join("chain")).unwrap();
        symlink("../inside.txt", d.join("sub/up")).unwrap();
        symlink("../../x", d.join("sub/up_out")).unwrap();
        symlink("loop_b", d.join("loop_a")).unwrap();
        symlink("loop_a", d.join("loop_b")).unwrap();
        symlink(".sft", d.join("to_reserved")).unwrap();
        assert_eq!(read(&root, "abs_inside").unwrap(), b"f");
        assert_eq!(read(&root, "chain").unwrap(), b"f");
        assert_eq!(read(&root, "sub/up").unwrap(), b"in");
        assert_eq!(read(&root, "sub/up_out"), Err(ErrorCode::Forbidden));
        assert_eq!(read(&root, "loop_a"), Err(ErrorCode::BadRequest));
        assert_eq!(read(&root, "to_reserved/tmp"), Err(ErrorCode::Forbidden));
    }

    #[test]
    fn folders_are_made_inside_the_root_only() {
        let (dir, outside, root) = setup();
        let make = |p: &str| root.check(p).and_then(|rp| root.make_folder(&rp));
        assert_eq!(make("new/deep/er"), Ok(true));
        assert!(dir.path().join("new/deep/er").is_dir());
        assert_eq!(make("new/deep/er"), Ok(false), "an existing folder is fine");
        assert_eq!(make("sub"), Ok(false));
        assert_eq!(make("to_sub"), Ok(false), "a symlink to a folder inside");
        assert_eq!(make(""), Ok(false), "the root");
        let table: &[(&str, ErrorCode)] = &[
            ("inside.txt", ErrorCode::BadRequest),
            ("inside.txt/x", ErrorCode::BadRequest),
            ("../x", ErrorCode::Forbidden),
            ("to_outside_dir/new", ErrorCode::Forbidden),
            ("to_outside_dir", ErrorCode::Forbidden),
            (".sft/x", ErrorCode::Forbidden),
            ("to_staging/x", ErrorCode::Forbidden),
        ];
        for (p, want) in table {
            assert_eq!(make(p).map_err(|e| e.code), Err(*want), "{p:?}");
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let (dir, _o, root) = setup();
        let fifo = dir.path().join("fifo");
        rfs::mknodat(
            rfs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert_eq!(read(&root, "fifo"), Err(ErrorCode::BadRequest));
    }

    #[test]
    fn entries_resolve_without_following_the_last_symlink() {
        let (dir, _o, root) = setup();
        let real = |p: &str| root.check(p).and_then(|rp| root.locate_entry(&rp));
        let canon = fs::canonicalize(dir.path()).unwrap();
        // The link itself, even one pointing outside: it is only described, never opened.
        assert_eq!(real("to_secret").unwrap(), canon.join("to_secret"));
        assert_eq!(real("to_sub/f.txt").unwrap(), canon.join("sub/f.txt"));
        assert_eq!(real("").unwrap(), canon);
        symlink(".", dir.path().join("to_root")).unwrap();
        let table: &[(&str, ErrorCode)] = &[
            ("to_root/.sft", ErrorCode::Forbidden),
            ("to_outside_dir/secret", ErrorCode::Forbidden),
            ("../x", ErrorCode::Forbidden),
            ("inside.txt/x", ErrorCode::BadRequest),
            ("missing/x", ErrorCode::NotFound),
        ];
        for (p, want) in table {
            assert_eq!(real(p).map_err(|e| e.code), Err(*want), "{p:?}");
        }
    }

    #[test]
    fn reserved_folder_and_partial_downloads_are_hidden() {
        let (dir, _o, root) = setup();
        let canon = fs::canonicalize(dir.path()).unwrap();
        assert!(root.is_hidden(&canon.join(".sft")));
        assert!(root.is_hidden(&canon.join("sub/.big.iso.sft-part")));
        assert!(!root.is_hidden(&canon.join("sub/.sft")));
        assert!(!root.is_hidden(&canon.join(".sft-part")));
        assert!(!root.is_hidden(&canon.join("inside.txt")));
    }
}
