//! Remote paths: UTF-8, `/`-separated, relative to the served root, checked lexically here.
//!
//! This is the first of two gates. It needs no file system: it rejects absolute paths, `..` that
//! climbs above the root, NUL bytes and over-long names. The server's sandbox then resolves the
//! normalized components against the real root without following symlinks out of it.

use crate::limits::{MAX_NAME_LEN, MAX_PATH_LEN};
use std::fmt;

/// Why a remote path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Starts with `/` (or is a Windows drive or UNC path).
    Absolute,
    /// A `..` climbs above the root.
    Escapes,
    /// Contains a NUL byte.
    Nul,
    /// Longer than [`MAX_PATH_LEN`], or a component longer than [`MAX_NAME_LEN`].
    TooLong,
}

impl PathError {
    /// Whether this is a refusal to leave the root (`forbidden`) rather than a malformed name.
    pub fn is_escape(self) -> bool {
        matches!(self, PathError::Absolute | PathError::Escapes)
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Absolute => {
                "absolute paths are not allowed; paths are relative to the served root"
            }
            PathError::Escapes => "path leaves the served root",
            PathError::Nul => "path contains a NUL byte",
            PathError::TooLong => "path or one of its names is too long",
        })
    }
}

impl std::error::Error for PathError {}

/// A normalized remote path: its components, none of them empty, `.` or `..`.
/// The empty path is the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotePath {
    parts: Vec<String>,
}

impl RemotePath {
    /// The components, outermost first.
    pub fn components(&self) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator {
        self.parts.iter().map(String::as_str)
    }

    /// Whether this is the root itself.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The folder holding this path (lexically: symlinks are the server's to resolve), or
    /// `None` for the root itself. The parent of a top-level name is the root.
    pub fn parent(&self) -> Option<RemotePath> {
        let (_, parts) = self.parts.split_last()?;
        Some(RemotePath {
            parts: parts.to_vec(),
        })
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str(".");
        }
        f.write_str(&self.parts.join("/"))
    }
}

/// Normalizes a remote path lexically: drops empty and `.` components, resolves `..` against the
/// components before it, and refuses anything that is absolute or climbs above the root.
pub fn normalize(path: &str) -> Result<RemotePath, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if path.starts_with('/') || looks_foreign_absolute(path) {
        return Err(PathError::Absolute);
    }
    let mut parts: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes);
                }
            }
            name if name.len() > MAX_NAME_LEN => return Err(PathError::TooLong),
            name => parts.push(name.to_owned()),
        }
    }
    // Checked again on the normalized form, so that every spelling of a path gets one answer
    // (`./C:x` is refused like `C:x`).
    if parts.first().is_some_and(|p| looks_foreign_absolute(p)) {
        return Err(PathError::Absolute);
    }
    Ok(RemotePath { parts })
}

/// A Windows drive (`C:…`) or UNC (`\\host…`) prefix: absolute on the peers that use them.
fn looks_foreign_absolute(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') || s.starts_with("\\\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> String {
        normalize(p).unwrap().to_string()
    }

    #[test]
    fn normal_paths() {
        assert_eq!(ok("a.txt"), "a.txt");
        assert_eq!(ok("dir/sub/f"), "dir/sub/f");
        assert_eq!(ok("./a//b/"), "a/b");
        assert_eq!(ok("a/../b"), "b");
        assert_eq!(ok("with space/ünïcødé ✓.bin"), "with space/ünïcødé ✓.bin");
        assert_eq!(ok("-leading-dash"), "-leading-dash");
        assert_eq!(ok("..."), "...");
        assert_eq!(ok("..a/b.."), "..a/b..");
        assert_eq!(
            ok("%2e%2e/x"),
            "%2e%2e/x",
            "no percent-decoding: a literal name"
        );
        assert!(normalize("").unwrap().is_root());
        assert!(normalize(".").unwrap().is_root());
        assert!(normalize("a/..").unwrap().is_root());
    }

    #[test]
    fn parents() {
        let parent = |p: &str| normalize(p).unwrap().parent().map(|p| p.to_string());
        assert_eq!(parent("a/b/c.txt").as_deref(), Some("a/b"));
        assert_eq!(parent("./a//b/").as_deref(), Some("a"));
        assert_eq!(parent("a.txt").as_deref(), Some("."));
        assert!(normalize("a.txt").unwrap().parent().unwrap().is_root());
        assert_eq!(parent(""), None);
        assert_eq!(parent("a/.."), None);
    }

    #[test]
    fn hostile_paths() {
        let table: &[(&str, PathError)] = &[
            ("/etc/passwd", PathError::Absolute),
            ("//etc/passwd", PathError::Absolute),
            ("\\\\server\\share", PathError::Absolute),
            ("C:\\Windows", PathError::Absolute),
            ("c:/x", PathError::Absolute),
            ("..", PathError::Escapes),
            ("../x", PathError::Escapes),
            ("a/../../x", PathError::Escapes),
            ("./../x", PathError::Escapes),
            ("a/b/../../../etc", PathError::Escapes),
            ("a\0b", PathError::Nul),
            ("\0", PathError::Nul),
        ];
        for (path, want) in table {
            assert_eq!(normalize(path), Err(*want), "{path:?}");
        }
        assert_eq!(
            normalize(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(PathError::TooLong)
        );
        assert_eq!(
            normalize(&"a/".repeat(MAX_PATH_LEN)),
            Err(PathError::TooLong)
        );
        assert!(normalize(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }
}
