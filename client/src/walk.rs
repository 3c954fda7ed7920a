//! Local files to upload, and walking a local folder for them, so that what is sent is only
//! ever the file that was found.
//!
//! A folder being uploaded may be writable by others (a shared project folder), who could swap
//! a file for a symlink to something the uploading user can read but never meant to send. So
//! the walk reads every folder through its own descriptor (`openat` with `O_NOFOLLOW`, entries
//! described with `fstatat` relative to it), never by a path that could be redirected midway,
//! and records each file's identity (device and inode). An upload later opens the file with
//! `O_NOFOLLOW` and sends it only if the opened file is the one the walk recorded
//! ([`Client::send_upload`](crate::Client::send_upload)); anything else is refused, not sent.

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A local file to upload, as found: where it is, where it goes, and which file it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The file to read (a symlink found inside a walked folder is read through).
    pub local: PathBuf,
    /// Where it goes on the server.
    pub remote: String,
    /// Its length when found.
    pub size: u64,
    /// Its last modification when found, whole seconds since the epoch (rounded down, as the
    /// server reports times): what a sync's quick check compares.
    pub mtime: i64,
    /// Device and inode of the file found: only this file is ever sent.
    identity: (u64, u64),
    /// Whether `local` is read through a symlink (one found inside the walked folder, leading
    /// to a file in it, or a path the user named); otherwise it is opened with `O_NOFOLLOW`.
    follow: bool,
}

impl Upload {
    /// The file the user named at `local` (followed if it is a symlink: the user chose it),
    /// to go to `remote`.
    pub fn named(local: &Path, remote: String) -> io::Result<Upload> {
        let meta = fs::metadata(local)?;
        if !meta.is_file() {
            return Err(not_a_file());
        }
        Ok(Upload {
            local: local.to_owned(),
            remote,
            size: meta.len(),
            mtime: meta.mtime(),
            identity: (meta.dev(), meta.ino()),
            follow: true,
        })
    }

    /// Opens the file (blocking) and checks it is still the one found; anything else — a
    /// symlink swapped in, another file renamed over it — is an error, and nothing is read.
    pub(crate) fn open(&self) -> io::Result<(File, fs::Metadata)> {
        let mut flags = OFlags::NONBLOCK;
        if !self.follow {
            flags |= OFlags::NOFOLLOW;
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(&self.local)
            .map_err(|e| match fs::symlink_metadata(&self.local) {
                Ok(m) if m.file_type().is_symlink() && !self.follow => changed(),
                _ => e,
            })?;
        let meta = file.metadata()?;
        if !meta.is_file() || (meta.dev(), meta.ino()) != self.identity {
            return Err(changed());
        }
        Ok((file, meta))
    }
}

/// Why the walk left out a folder that changed while it was read.
const FOLDER_CHANGED: &str = "a folder that changed while it was read";
/// Why the walk left out an entry it could not describe.
const UNREADABLE: &str = "it could not be read";

fn not_a_file() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

fn changed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "it is no longer the file found when the folder was read (replaced by a symlink or by \
         another file), so it was not sent; check it and upload again",
    )
}

/// What walking a local folder found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Files to upload, in a stable order (names sorted, depth first).
    pub files: Vec<Upload>,
    /// Remote folders to create because no upload would create them (empty ones).
    pub folders: Vec<String>,
    /// Entries left out, and why.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

impl Walk {
    /// Whether the walk saw everything in the folder: no entry it could not read, no folder
    /// that changed under it. What it left out on purpose (symlinks, sockets, names that are
    /// not UTF-8) was still seen.
    pub fn complete(&self) -> bool {
        !self
            .skipped
            .iter()
            .any(|(_, why)| *why == FOLDER_CHANGED || *why == UNREADABLE)
    }
}

/// A folder still to read: its path, where it goes, and its identity when found.
struct Pending {
    path: PathBuf,
    remote: String,
    identity: Option<(u64, u64)>,
}

/// A symlink found inside the folder, resolved once the walk is complete.
struct Link {
    path: PathBuf,
    remote: String,
    /// Index in `files` it is to be sent at (its place in the order).
    at: usize,
    /// The remote folder it is in.
    folder: String,
}

/// Walks the local folder `base` for an upload into the remote folder `remote`. Symlinks are
/// followed only to regular files that the walk itself found inside `base`; others (to folders,
/// outside, dangling) are skipped, like sockets, FIFOs, devices and names that are not UTF-8.
pub fn walk(base: &Path, remote: &str) -> io::Result<Walk> {
    let mut out = Walk::default();
    let mut inside: HashSet<(u64, u64)> = HashSet::new();
    let mut links: Vec<Link> = Vec::new();
    // Folders still to read, depth first.
    let mut stack = vec![Pending {
        path: base.to_path_buf(),
        remote: remote.to_owned(),
        identity: None,
    }];
    while let Some(dir) = stack.pop() {
        // The folder the user named may be reached through symlinks; the ones below it never.
        let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if dir.identity.is_some() {
            flags |= OFlags::NOFOLLOW;
        }
        let fd = match rustix::fs::open(&dir.path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if dir.identity.is_none() => return Err(e.into()),
            Err(_) => {
                out.skipped.push((dir.path, FOLDER_CHANGED));
                continue;
            }
        };
        let st = rustix::fs::fstat(&fd)?;
        if dir.identity.is_some_and(|id| id != identity(&st)) {
            out.skipped.push((dir.path, FOLDER_CHANGED));
            continue;
        }
        let mut names = entries(&fd)?;
        names.sort();
        let mut holds = false;
        let mut subfolders = Vec::new();
        for name in names {
            let path = dir.path.join(OsStr::from_bytes(&name));
            let Some(utf8) = std::str::from_utf8(&name).ok().map(str::to_owned) else {
                out.skipped.push((path, "its name is not UTF-8"));
                continue;
            };
            let remote_path = join(&dir.remote, &utf8);
            let Ok(st) = rustix::fs::statat(&fd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) else {
                out.skipped.push((path, UNREADABLE));
                continue;
            };
            let identity = identity(&st);
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    subfolders.push(Pending {
                        path,
                        remote: remote_path,
                        identity: Some(identity),
                    });
                    holds = true;
                }
                FileType::RegularFile => {
                    inside.insert(identity);
                    out.files.push(Upload {
                        local: path,
                        remote: remote_path,
                        size: st.st_size as u64,
                        mtime: st.st_mtime,
                        identity,
                        follow: false,
                    });
                    holds = true;
                }
                FileType::Symlink => {
                    links.push(Link {
                        path,
                        remote: remote_path,
                        at: out.files.len(),
                        folder: dir.remote.clone(),
                    });
                }
                _ => out
                    .skipped
                    .push((path, "not a regular file (a socket, FIFO or device)")),
            }
        }
        // A folder of symlinks only is empty unless one of them leads to a file: known once
        // the walk is done.
        if !holds && !dir.remote.is_empty() {
            out.folders.push(dir.remote);
        }
        stack.extend(subfolders.into_iter().rev());
    }
    resolve_links(&mut out, links, &inside);
    Ok(out)
}

/// Keeps the symlinks that lead to a file the walk found inside the folder (by identity, so
/// whatever path they take), each at its place in the order; skips the others.
fn resolve_links(out: &mut Walk, links: Vec<Link>, inside: &HashSet<(u64, u64)>) {
    let mut filled = HashSet::new();
    for link in links.into_iter().rev() {
        let why = match fs::metadata(&link.path) {
            Err(_) => "a symlink that leads nowhere",
            Ok(m) if m.is_dir() => "a symlink to a folder (not followed)",
            Ok(m) if !inside.contains(&(m.dev(), m.ino())) && m.is_file() => {
                "a symlink that leads outside the folder"
            }
            Ok(m) if !m.is_file() => "a symlink to something that is not a file",
            Ok(m) => {
                filled.insert(link.folder);
                out.files.insert(
                    link.at,
                    Upload {
                        local: link.path,
                        remote: link.remote,
                        size: m.len(),
                        mtime: m.mtime(),
                        identity: (m.dev(), m.ino()),
                        follow: true,
                    },
                );
                continue;
            }
        };
        out.skipped.push((link.path, why));
    }
    // Folders that hold a symlink sent as a file are created by that upload.
    out.folders.retain(|f| !filled.contains(f));
    out.skipped.sort();
}

/// Device and inode (their types differ between platforms, hence the casts).
#[allow(clippy::unnecessary_cast)]
fn identity(st: &rustix::fs::Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// The names in the folder open at `fd`, `.` and `..` left out.
fn entries(fd: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(fd)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// `name` inside the remote folder `dir` (`""` or `.` for the served root).
fn join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "" | "." => name.to_owned(),
        dir => format!("{dir}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_skip_what_cannot_be_sent_safely() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let d = base.path();
        fs::create_dir_all(d.join("sub/empty")).unwrap();
        fs::create_dir_all(d.join("only-skipped")).unwrap();
        fs::write(d.join("a.txt"), b"aa").unwrap();
        fs::write(d.join("sub/b.txt"), b"b").unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink("a.txt", d.join("inside-link")).unwrap();
        std::os::unix::fs::symlink("../a.txt", d.join("sub/up-link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.join("out-link")).unwrap();
        std::os::unix::fs::symlink("sub", d.join("dir-link")).unwrap();
        std::os::unix::fs::symlink("missing", d.join("only-skipped/dangling")).unwrap();
        let w = walk(d, "r").unwrap();
        let files: Vec<(&str, u64)> = w
            .files
            .iter()
            .map(|u| (u.remote.as_str(), u.size))
            .collect();
        assert_eq!(
            files,
            [
                ("r/a.txt", 2),
                ("r/inside-link", 2),
                ("r/sub/b.txt", 1),
                ("r/sub/up-link", 2)
            ]
        );
        assert_eq!(w.folders, ["r/only-skipped", "r/sub/empty"]);
        let mut skipped: Vec<String> = w
            .skipped
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        skipped.sort();
        assert_eq!(skipped, ["dangling", "dir-link", "out-link"]);
    }

    #[test]
    fn a_file_swapped_after_the_walk_is_not_opened() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(base.path().join("a.txt"), b"mine").unwrap();
        fs::write(outside.path().join("secret"), b"secret").unwrap();
        let w = walk(base.path(), "").unwrap();
        assert!(w.files[0].open().is_ok());
        fs::remove_file(base.path().join("a.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), base.path().join("a.txt"))
            .unwrap();
        assert_eq!(
            w.files[0].open().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
