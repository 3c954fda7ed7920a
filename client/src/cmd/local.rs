//! The local side of folder transfers, where names from the network meet the file system.
//!
//! Downloads: a name in a server's listing is used only if it is a plain relative path (no
//! `..`, no absolute path, no empty or `.` component), and folders are created one level at a
//! time without following symlinks, so nothing is ever written outside the local target.
//!
//! Uploads: the walk of a local folder is the library's (`sft_client::walk`).

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

/// Whether nothing is at `base/rel` and every folder on the way there that exists is a real
/// folder (no file or symlink in the way): a download there needs nothing compared, and
/// [`ensure_dir`] will create its folder.
pub(crate) fn fresh(base: &Path, rel: &Path) -> bool {
    let mut at = base.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(part) = parts.next() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Ok(meta) if meta.is_dir() && parts.peek().is_some() => {}
            _ => return false,
        }
    }
    false
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
}
