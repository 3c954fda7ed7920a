//! The local side of folder transfers, where names from the network meet the file system.
//!
//! Downloads: a name in a server's listing is used only if it is a plain relative path (no
//! `..`, no absolute path, no empty or `.` component), and folders are created one level at a
//! time without following symlinks, so nothing is ever written outside the local target.
//!
//! Uploads: a local folder is walked without following symlinks out of it; what cannot be sent
//! is reported, not silently dropped.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// `name` from a server as a relative local path, or `None` if it could lead anywhere but
/// below the folder it is joined to.
pub(crate) fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\0') || name.starts_with('/') {
        return None;
    }
    let mut path = PathBuf::new();
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        path.push(part);
    }
    // Belt and braces: only normal components made it.
    path.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(path)
}

/// Makes sure the folder `base/rel` exists, creating each missing level, and refuses to go
/// through anything below `base` that is not a real folder (a symlink, a file).
pub(crate) fn ensure_dir(base: &Path, rel: &Path) -> io::Result<()> {
    let mut at = base.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "something that is not a folder (a file or a symlink) is in the way",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && at.is_dir() => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `name` inside the remote folder `dir` (`""` or `.` for the served root).
pub(crate) fn remote_join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "" | "." => name.to_owned(),
        dir => format!("{dir}/{name}"),
    }
}

/// The last name of a remote path (`None` for the root, or a path ending in `..`).
pub(crate) fn remote_name(remote: &str) -> Option<&str> {
    remote
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
}

/// The name a local file or folder goes by on the server: its last name (of the absolute path
/// for `.` and the like).
pub(crate) fn local_name(local: &Path) -> Option<String> {
    let named = match local.file_name() {
        Some(n) => Some(n.to_owned()),
        None => fs::canonicalize(local)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_owned())),
    };
    named.and_then(|n| n.to_str().map(str::to_owned))
}

/// One file to upload.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    /// The file to read (a symlink inside the folder is read through).
    pub(crate) local: PathBuf,
    /// Where it goes on the server.
    pub(crate) remote: String,
    /// Its length when walked.
    pub(crate) size: u64,
}

/// What walking a local folder found.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Files to upload, in a stable order (names sorted, depth first).
    pub(crate) files: Vec<Upload>,
    /// Remote folders to create because no upload would create them (empty ones).
    pub(crate) folders: Vec<String>,
    /// Entries left out, and why.
    pub(crate) skipped: Vec<(PathBuf, &'static str)>,
}

/// Walks the local folder `base` for an upload into the remote folder `remote`. Symlinks are
/// followed only to regular files inside `base`; others (to folders, outside, dangling) are
/// skipped, like sockets, FIFOs, devices and names that are not UTF-8.
pub(crate) fn walk(base: &Path, remote: &str) -> io::Result<Walk> {
    let inside = fs::canonicalize(base)?;
    let mut out = Walk::default();
    // Folders still to read: local path, remote path.
    let mut stack = vec![(base.to_path_buf(), remote.to_owned())];
    while let Some((dir, remote_dir)) = stack.pop() {
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(&dir)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut holds = false;
        let mut subfolders = Vec::new();
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                out.skipped.push((path, "its name is not UTF-8"));
                continue;
            };
            let remote_path = remote_join(&remote_dir, &name);
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(_) => {
                    out.skipped.push((path, "it could not be read"));
                    continue;
                }
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                subfolders.push((path, remote_path));
                holds = true;
            } else if kind.is_file() {
                out.files.push(Upload {
                    local: path,
                    remote: remote_path,
                    size: meta.len(),
                });
                holds = true;
            } else if kind.is_symlink() {
                match fs::canonicalize(&path) {
                    Err(_) => out.skipped.push((path, "a symlink that leads nowhere")),
                    Ok(target) if !target.starts_with(&inside) => out
                        .skipped
                        .push((path, "a symlink that leads outside the folder")),
                    Ok(target) => match fs::metadata(&target) {
                        Ok(m) if m.is_file() => {
                            out.files.push(Upload {
                                local: path,
                                remote: remote_path,
                                size: m.len(),
                            });
                            holds = true;
                        }
                        Ok(m) if m.is_dir() => out
                            .skipped
                            .push((path, "a symlink to a folder (not followed)")),
                        _ => out
                            .skipped
                            .push((path, "a symlink to something that is not a file")),
                    },
                }
            } else {
                out.skipped
                    .push((path, "not a regular file (a socket, FIFO or device)"));
            }
        }
        if !holds && !remote_dir.is_empty() {
            out.folders.push(remote_dir);
        }
        // Depth first, in name order.
        stack.extend(subfolders.into_iter().rev());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_safe() {
        for good in ["a", "a/b.txt", "-dash", "sp ace/ü", "..a/b..", "a\\..\\b"] {
            assert!(safe_relative(good).is_some(), "{good:?}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/../../x",
            "a/..",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/.",
            "a\0b",
            "a/",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn remote_names_and_joins() {
        assert_eq!(remote_join("", "a"), "a");
        assert_eq!(remote_join(".", "a"), "a");
        assert_eq!(remote_join("d/", "a"), "d/a");
        assert_eq!(remote_name("a/b/"), Some("b"));
        assert_eq!(remote_name("b"), Some("b"));
        assert_eq!(remote_name(""), None);
        assert_eq!(remote_name("a/.."), None);
    }

    #[test]
    fn folders_are_not_created_through_symlinks() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        ensure_dir(base.path(), Path::new("a/b c/ü")).unwrap();
        assert!(base.path().join("a/b c/ü").is_dir());
        ensure_dir(base.path(), Path::new("a/b c")).unwrap();
        std::os::unix::fs::symlink(outside.path(), base.path().join("link")).unwrap();
        assert!(ensure_dir(base.path(), Path::new("link/x")).is_err());
        fs::write(base.path().join("file"), b"").unwrap();
        assert!(ensure_dir(base.path(), Path::new("file/x")).is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

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
            [("r/a.txt", 2), ("r/inside-link", 2), ("r/sub/b.txt", 1)]
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
}
