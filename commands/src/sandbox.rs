//! The served root: every path a client names is resolved here, and only here.
//!
//! Two gates guard it. [`sft_protocol::normalize`] refuses absolute paths and `..` that climbs
//! out, lexically. Then [`Root`] resolves what is left **component by component**, from an open
//! handle on the root folder (`openat` with `O_NOFOLLOW`): a symlink is read and its target
//! resolved the same way, so it is followed only while it stays inside the root. The final
//! open, the final rename and every folder created go through the folder handle that resolution
//! produced, never through a path string — so a parent folder swapped for a symlink in the
//! middle of a transfer cannot redirect a read or a write out of the root.
//!
//! The top-level folder `.sft/` is reserved: uploads are staged in `.sft/tmp/` and renamed into
//! place when complete. Clients can neither read nor write anything in it by any name.
//!
//! All methods here block on the file system; async callers run them with
//! [`async_std::task::spawn_blocking`].

use crate::hashes::HashCache;
use crate::staging::Staging;
pub use crate::staging::{Staged, Upload};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use sft_protocol::{normalize, ErrorCode, RemotePath, WireError};
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name, at the top of the root, of the folder sft keeps its own state in.
pub const RESERVED_DIR: &str = ".sft";
/// The suffix of a client's partial download (`.NAME.sft-part`); such files are not listed.
pub const PARTIAL_SUFFIX: &str = ".sft-part";
/// Symlinks followed while resolving one path, at most (as Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// The served folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Root {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    dir_fd: Arc<OwnedFd>,
    hashes: HashCache,
    staging: Staging,
}

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
    fn of(st: &rfs::Stat) -> Kind {
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
    fd: Arc<OwnedFd>,
    names: Vec<String>,
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
}

/// Where a new file goes: an open parent folder inside the root, and a name in it.
#[derive(Debug)]
pub struct Target {
    pub(crate) parent: Folder,
    pub(crate) name: String,
    pub(crate) shown: String,
    path: PathBuf,
}

impl Target {
    /// The target's real path (for logs; all operations use the open parent handle).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Maps an I/O error met while serving `what` to a wire error a person can act on.
pub fn io_error(what: &str, e: &io::Error) -> WireError {
    match e.kind() {
        io::ErrorKind::NotFound => WireError::new(
            ErrorCode::NotFound,
            format!("no such file or folder: {what}"),
        ),
        io::ErrorKind::PermissionDenied => {
            WireError::new(ErrorCode::Forbidden, format!("permission denied: {what}"))
        }
        _ => WireError::internal(format!("{what}: {e}")),
    }
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

fn forbidden(shown: &impl std::fmt::Display, why: &str) -> WireError {
    WireError::new(ErrorCode::Forbidden, format!("{shown} {why}"))
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// How [`Root::resolve`] treats the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Follow a symlink there; it must exist.
    Follow,
    /// Do not look at it; create missing parent folders.
    Create,
    /// Do not follow it (a symlink there is the answer); parents must exist.
    Entry,
}

impl Root {
    /// Opens `dir` as the served root, creating the staging area and removing debris that a
    /// crash may have left in it.
    pub fn open(dir: &Path) -> io::Result<Root> {
        let dir = fs::canonicalize(dir)?;
        let dir_fd = rfs::open(&dir, DIR_FLAGS, Mode::empty()).map_err(|e| {
            let e = errno(e);
            io::Error::new(
                e.kind(),
                format!("{} is not an accessible folder: {e}", dir.display()),
            )
        })?;
        let reserved_fd = open_or_create_dir(&dir_fd, RESERVED_DIR)?;
        let staging = Staging::open(&reserved_fd, &dir.join(RESERVED_DIR))?;
        let root = Root {
            inner: Arc::new(Inner {
                dir,
                dir_fd: Arc::new(dir_fd),
                hashes: HashCache::default(),
                staging,
            }),
        };
        root.clean_staging()?;
        Ok(root)
    }

    /// The staging area (see `staging.rs`).
    pub(crate) fn staging(&self) -> &Staging {
        &self.inner.staging
    }

    /// The cache of served files' BLAKE3 hashes.
    pub fn hashes(&self) -> &HashCache {
        &self.inner.hashes
    }

    /// The canonical path of the served folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

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

    fn root_folder(&self) -> Result<Folder, WireError> {
        Ok(Folder {
            fd: Arc::clone(&self.inner.dir_fd),
            names: Vec::new(),
        })
    }

    /// Re-opens the folder at `names` below the root, refusing symlinks on the way (used after
    /// a symlink target's `..`).
    fn reopen(&self, names: Vec<String>, shown: &RemotePath) -> Result<Folder, WireError> {
        let mut folder = self.root_folder()?;
        for name in &names {
            folder.fd = rfs::openat(&folder.fd, name.as_str(), DIR_FLAGS, Mode::empty())
                .map_err(|e| io_error(&shown.to_string(), &errno(e)))?
                .into();
        }
        folder.names = names;
        Ok(folder)
    }

    /// Resolves `rp` to an open parent folder and the last name in it (`None`: the root).
    fn resolve(
        &self,
        rp: &RemotePath,
        last_mode: Last,
    ) -> Result<(Folder, Option<String>), WireError> {
        let mut queue: VecDeque<String> = rp.components().map(str::to_owned).collect();
        let mut cur = self.root_folder()?;
        let mut links = 0;
        while let Some(part) = queue.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    let mut names = std::mem::take(&mut cur.names);
                    if names.pop().is_none() {
                        return Err(forbidden(rp, "resolves outside the served root"));
                    }
                    cur = self.reopen(names, rp)?;
                    continue;
                }
                _ => {}
            }
            if cur.names.is_empty() && part == RESERVED_DIR {
                return Err(reserved());
            }
            let last = queue.is_empty();
            if last && last_mode != Last::Follow {
                return Ok((cur, Some(part)));
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
            match Kind::of(&st) {
                Kind::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(WireError::bad_request(format!(
                            "{rp}: too many levels of symbolic links"
                        )));
                    }
                    let target = rfs::readlinkat(&cur.fd, part.as_str(), Vec::new())
                        .map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
                    let target = target.into_string().map_err(|_| {
                        WireError::bad_request(format!(
                            "{rp}: a symbolic link on the way is not UTF-8"
                        ))
                    })?;
                    let relative = if let Some(abs) = target.strip_prefix('/') {
                        // An absolute link may point back inside the root; anywhere else is out.
                        let inside = Path::new("/").join(abs);
                        let rest = inside
                            .strip_prefix(&self.inner.dir)
                            .map_err(|_| forbidden(rp, "resolves outside the served root"))?;
                        cur = self.root_folder()?;
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
                        .map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
                    cur.names.push(part);
                    cur = Folder {
                        fd: fd.into(),
                        names: std::mem::take(&mut cur.names),
                    };
                }
                _ if last => return Ok((cur, Some(part))),
                _ => {
                    return Err(WireError::bad_request(format!(
                        "{rp}: {part} is not a folder"
                    )))
                }
            }
        }
        Ok((cur, None))
    }

    /// Resolves an existing path, following symlinks only while they stay inside the root;
    /// returns its real path.
    pub fn locate(&self, rp: &RemotePath) -> Result<PathBuf, WireError> {
        let (folder, name) = self.resolve(rp, Last::Follow)?;
        let mut path = self.inner.dir.clone();
        path.extend(folder.names.iter());
        path.extend(name.iter());
        Ok(path)
    }

    /// Opens an existing folder (the root for the empty path), for listing.
    pub fn open_folder(&self, rp: &RemotePath) -> Result<Folder, WireError> {
        match self.resolve(rp, Last::Follow)? {
            (folder, None) => Ok(folder),
            (parent, Some(name)) => {
                let fd = rfs::openat(&parent.fd, name.as_str(), DIR_FLAGS, Mode::empty()).map_err(
                    |e| match e {
                        rustix::io::Errno::NOTDIR => {
                            WireError::bad_request(format!("{rp} is not a folder"))
                        }
                        rustix::io::Errno::LOOP => {
                            forbidden(rp, "changed while it was being opened; try again")
                        }
                        e => io_error(&rp.to_string(), &errno(e)),
                    },
                )?;
                let mut names = parent.names;
                names.push(name);
                Ok(Folder {
                    fd: fd.into(),
                    names,
                })
            }
        }
    }

    /// Resolves an existing path like [`Root::locate`], except that a symlink named by the last
    /// component is not followed: the result is the link itself (`lstat` semantics). Symlinks
    /// in the folders leading to it are followed while they stay inside the root.
    pub fn locate_entry(&self, rp: &RemotePath) -> Result<PathBuf, WireError> {
        let (parent, name) = self.resolve(rp, Last::Entry)?;
        let mut real = self.inner.dir.clone();
        real.extend(parent.names.iter());
        if let Some(name) = name {
            rfs::statat(&parent.fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
            real.push(name);
        }
        Ok(real)
    }

    /// Whether a listing leaves out the entry at `real` (a path inside the root whose last
    /// component is not resolved): the reserved folder, and partial downloads.
    pub fn is_hidden(&self, real: &Path) -> bool {
        if real.parent() == Some(self.inner.dir.as_path())
            && real.file_name() == Some(RESERVED_DIR.as_ref())
        {
            return true;
        }
        real.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.len() > PARTIAL_SUFFIX.len() + 1 && n.starts_with('.') && n.ends_with(PARTIAL_SUFFIX)
        })
    }

    /// Opens an existing regular file for reading; returns it with its length.
    pub fn open_file(&self, rp: &RemotePath) -> Result<(File, u64), WireError> {
        self.open_file_stat(rp)
            .map(|(file, st)| (file, st.st_size as u64))
    }

    /// Like [`Root::open_file`], with the file's metadata as opened (for the hash cache).
    pub fn open_file_stat(&self, rp: &RemotePath) -> Result<(File, rfs::Stat), WireError> {
        let (parent, name) = self.resolve(rp, Last::Follow)?;
        let name =
            name.ok_or_else(|| WireError::bad_request("the root is a folder, not a file"))?;
        // O_NOFOLLOW: a symlink swapped in since resolution is refused, not followed.
        // O_NONBLOCK: opening a FIFO must not hang the server; it is refused below.
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd =
            rfs::openat(&parent.fd, name.as_str(), flags, Mode::empty()).map_err(|e| match e {
                rustix::io::Errno::LOOP => {
                    forbidden(rp, "changed while it was being opened; try again")
                }
                e => io_error(&rp.to_string(), &errno(e)),
            })?;
        let st = rfs::fstat(&fd).map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
        if Kind::of(&st) != Kind::File {
            return Err(WireError::bad_request(format!(
                "{rp} is not a regular file"
            )));
        }
        Ok((File::from(fd), st))
    }

    /// Resolves where a new file at `rp` goes, creating missing parent folders inside the root.
    /// Fails with `exists` if something is there and `overwrite` is false, and with `bad_request`
    /// if a folder is there.
    pub fn prepare_target(&self, rp: &RemotePath, overwrite: bool) -> Result<Target, WireError> {
        if rp.is_root() {
            return Err(WireError::bad_request(
                "a file name is needed, not the root",
            ));
        }
        let (parent, name) = self.resolve(rp, Last::Create)?;
        let name = name.expect("a non-root path has a last name");
        match rfs::statat(&parent.fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if Kind::of(&st) == Kind::Folder => {
                return Err(WireError::bad_request(format!("{rp} is a folder")))
            }
            Ok(_) if !overwrite => return Err(exists(rp)),
            Ok(_) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(io_error(&rp.to_string(), &errno(e))),
        }
        let mut path = self.inner.dir.clone();
        path.extend(parent.names.iter());
        path.push(&name);
        Ok(Target {
            parent,
            name,
            shown: rp.to_string(),
            path,
        })
    }

    /// Creates the folder `rp` and any missing parents inside the root. Returns whether it was
    /// created: `false` when a folder (or a symlink to one inside the root) is there already.
    /// Something else there is `bad_request`.
    pub fn make_folder(&self, rp: &RemotePath) -> Result<bool, WireError> {
        if rp.is_root() {
            return Ok(false);
        }
        let (parent, name) = self.resolve(rp, Last::Create)?;
        let name = name.expect("a non-root path has a last name");
        match rfs::mkdirat(&parent.fd, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => self.open_folder(rp).map(|_| false),
            Err(e) => Err(io_error(&rp.to_string(), &errno(e))),
        }
    }
}

fn reserved() -> WireError {
    WireError::new(
        ErrorCode::Forbidden,
        format!("{RESERVED_DIR}/ is reserved for the server's own use"),
    )
}

fn exists(shown: &impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Exists, format!("{shown} already exists"))
}

/// Opens folder `name` in `dir`, creating it if missing; refuses a symlink there.
pub(crate) fn open_or_create_dir(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(errno(e)),
    }
    rfs::openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(|e| {
        let e = errno(e);
        io::Error::new(
            e.kind(),
            format!("cannot open the server's folder {name} (is it a symlink?): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Root) {
        let root_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(root_dir.path().join("inside.txt"), b"in").unwrap();
        fs::create_dir(root_dir.path().join("sub")).unwrap();
        fs::write(root_dir.path().join("sub/f.txt"), b"f").unwrap();
        fs::write(outside.path().join("secret"), b"secret").unwrap();
        symlink(
            outside.path().join("secret"),
            root_dir.path().join("to_secret"),
        )
        .unwrap();
        symlink(outside.path(), root_dir.path().join("to_outside_dir")).unwrap();
        symlink("sub/f.txt", root_dir.path().join("to_inside")).unwrap();
        symlink("sub", root_dir.path().join("to_sub")).unwrap();
        symlink(".sft/tmp", root_dir.path().join("to_staging")).unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        (root_dir, outside, root)
    }

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
    fn a_parent_swapped_for_a_symlink_cannot_redirect_the_commit() {
        let (dir, outside, root) = setup();
        let rp = root.check("sub/new.txt").unwrap();
        let target = root.prepare_target(&rp, false).unwrap();
        let (staged, mut f) = root.stage().unwrap();
        io::Write::write_all(&mut f, b"payload").unwrap();
        // Mid-transfer, someone replaces sub/ with a symlink to a folder outside the root.
        fs::rename(dir.path().join("sub"), dir.path().join("sub.moved")).unwrap();
        symlink(outside.path(), dir.path().join("sub")).unwrap();
        staged.commit(&target, false).unwrap();
        assert_eq!(
            fs::read(dir.path().join("sub.moved/new.txt")).unwrap(),
            b"payload"
        );
        assert!(
            !outside.path().join("new.txt").exists(),
            "nothing written outside the root"
        );
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
