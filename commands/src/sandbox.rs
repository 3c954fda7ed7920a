//! The served root: every path a client names is resolved here, and only here.
//!
//! Two gates guard it. [`sft_protocol::normalize`] refuses absolute paths and `..` that climbs
//! out, lexically. Then [`Root`] resolves what is left against the real folder: symlinks are
//! followed only while they stay inside the root, and the staging area (`.sft/` at the top of the
//! root, where uploads are written before they are renamed into place) is neither readable nor
//! writable by name.
//!
//! All methods here block on the file system; async callers run them with
//! [`async_std::task::spawn_blocking`].

use sft_protocol::{normalize, ErrorCode, RemotePath, WireError};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The name, at the top of the root, of the folder sft keeps its own state in.
pub const RESERVED_DIR: &str = ".sft";
/// The suffix of a client's partial download (`.NAME.sft-part`); such files are not listed.
pub const PARTIAL_SUFFIX: &str = ".sft-part";
const STAGING_DIR: &str = "tmp";

/// The served folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Root {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    reserved: PathBuf,
    staging: PathBuf,
    counter: AtomicU64,
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

impl Root {
    /// Opens `dir` as the served root, creating the staging area and removing debris that a
    /// crash may have left in it.
    pub fn open(dir: &Path) -> io::Result<Root> {
        let dir = fs::canonicalize(dir)?;
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a folder", dir.display()),
            ));
        }
        let reserved = dir.join(RESERVED_DIR);
        let staging = reserved.join(STAGING_DIR);
        fs::create_dir_all(&staging)?;
        for entry in fs::read_dir(&staging)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Root {
            inner: Arc::new(Inner {
                dir,
                reserved,
                staging,
                counter: AtomicU64::new(0),
            }),
        })
    }

    /// The canonical path of the served folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The folder uploads are staged in before they are renamed into place.
    pub fn staging_dir(&self) -> &Path {
        &self.inner.staging
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
            return Err(WireError::new(
                ErrorCode::Forbidden,
                format!("{RESERVED_DIR}/ is reserved for the server's own use"),
            ));
        }
        Ok(rp)
    }

    fn join(&self, rp: &RemotePath) -> PathBuf {
        let mut p = self.inner.dir.clone();
        p.extend(rp.components());
        p
    }

    /// Refuses a real (symlink-resolved) path outside the root or inside the reserved folder.
    fn confine(&self, real: &Path, shown: &RemotePath) -> Result<(), WireError> {
        if !real.starts_with(&self.inner.dir) {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                format!("{shown} resolves outside the served root"),
            ));
        }
        if real.starts_with(&self.inner.reserved) {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                format!("{shown} resolves into the server's reserved folder"),
            ));
        }
        Ok(())
    }

    /// Resolves an existing path, following symlinks only while they stay inside the root.
    pub fn locate(&self, rp: &RemotePath) -> Result<PathBuf, WireError> {
        let real = fs::canonicalize(self.join(rp)).map_err(|e| io_error(&rp.to_string(), &e))?;
        self.confine(&real, rp)?;
        Ok(real)
    }

    /// Resolves an existing path like [`Root::locate`], except that a symlink named by the last
    /// component is not followed: the result is the link itself (`lstat` semantics). Symlinks
    /// in the folders leading to it are followed while they stay inside the root.
    pub fn locate_entry(&self, rp: &RemotePath) -> Result<PathBuf, WireError> {
        let Some(name) = rp.file_name() else {
            return self.locate(rp);
        };
        let parents: Vec<&str> = rp.components().take(rp.components().len() - 1).collect();
        let parent = normalize(&parents.join("/")).expect("already normalized");
        let parent_real = self.locate(&parent)?;
        if !parent_real.is_dir() {
            return Err(WireError::bad_request(format!("{parent} is not a folder")));
        }
        let real = parent_real.join(name);
        // Reached through a symlink to the root, the last name can still be the reserved one.
        self.confine(&real, rp)?;
        Ok(real)
    }

    /// Whether a listing leaves out the entry at `real` (a path inside the root whose last
    /// component is not resolved): the reserved folder, and partial downloads.
    pub fn is_hidden(&self, real: &Path) -> bool {
        if real == self.inner.reserved {
            return true;
        }
        real.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.len() > PARTIAL_SUFFIX.len() + 1 && n.starts_with('.') && n.ends_with(PARTIAL_SUFFIX)
        })
    }

    /// Opens an existing regular file for reading; returns it with its length.
    pub fn open_file(&self, rp: &RemotePath) -> Result<(File, u64), WireError> {
        let real = self.locate(rp)?;
        let file = File::open(&real).map_err(|e| io_error(&rp.to_string(), &e))?;
        let meta = file.metadata().map_err(|e| io_error(&rp.to_string(), &e))?;
        if !meta.is_file() {
            return Err(WireError::bad_request(format!(
                "{rp} is not a regular file"
            )));
        }
        Ok((file, meta.len()))
    }

    /// Resolves where a new file at `rp` goes, creating missing parent folders inside the root.
    /// Fails with `exists` if something is there and `overwrite` is false, and with `bad_request`
    /// if a folder is there.
    pub fn prepare_target(&self, rp: &RemotePath, overwrite: bool) -> Result<PathBuf, WireError> {
        let name = rp
            .file_name()
            .ok_or_else(|| WireError::bad_request("a file name is needed, not the root"))?;
        let mut cur = self.inner.dir.clone();
        let mut shown = RemotePath::default();
        let parents = rp.components().len() - 1;
        for part in rp.components().take(parents) {
            shown = normalize(&format!("{shown}/{part}")).expect("already normalized");
            let next = cur.join(part);
            match fs::symlink_metadata(&next) {
                Ok(m) if m.is_dir() => cur = next,
                Ok(m) if m.file_type().is_symlink() => {
                    let real =
                        fs::canonicalize(&next).map_err(|e| io_error(&shown.to_string(), &e))?;
                    self.confine(&real, &shown)?;
                    if !real.is_dir() {
                        return Err(WireError::bad_request(format!("{shown} is not a folder")));
                    }
                    cur = real;
                }
                Ok(_) => return Err(WireError::bad_request(format!("{shown} is not a folder"))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::create_dir(&next) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && next.is_dir() => {}
                        Err(e) => return Err(io_error(&shown.to_string(), &e)),
                    }
                    cur = next;
                }
                Err(e) => return Err(io_error(&shown.to_string(), &e)),
            }
        }
        let target = cur.join(name);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => Err(WireError::bad_request(format!("{rp} is a folder"))),
            Ok(_) if !overwrite => Err(WireError::new(
                ErrorCode::Exists,
                format!("{rp} already exists"),
            )),
            Ok(_) => Ok(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(target),
            Err(e) => Err(io_error(&rp.to_string(), &e)),
        }
    }

    /// Creates a new, empty staging file. It is removed when the guard drops, unless committed.
    pub fn stage(&self) -> io::Result<(Staged, File)> {
        loop {
            let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
            let path = self
                .inner
                .staging
                .join(format!("{}-{n}.part", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((Staged { path: Some(path) }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A staged upload: a file in the staging area that is deleted on drop unless committed.
#[derive(Debug)]
pub struct Staged {
    path: Option<PathBuf>,
}

impl Staged {
    /// The staging file's path.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("not yet committed")
    }

    /// Moves the staged file to `target` atomically. Without `overwrite` an existing target is
    /// never replaced, even one created after [`Root::prepare_target`] checked (`exists`).
    pub fn commit(mut self, target: &Path, overwrite: bool, shown: &str) -> Result<(), WireError> {
        let path = self.path.take().expect("committed once");
        let result = if overwrite {
            fs::rename(&path, target)
        } else {
            // A hard link fails if the target exists, atomically; the rename below would not.
            match fs::hard_link(&path, target) {
                Ok(()) => fs::remove_file(&path).or(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
                // File systems without hard links: check, then rename (a narrow race remains).
                Err(_) if fs::symlink_metadata(target).is_ok() => {
                    Err(io::Error::from(io::ErrorKind::AlreadyExists))
                }
                Err(_) => fs::rename(&path, target),
            }
        };
        result.map_err(|e| {
            let _ = fs::remove_file(&path);
            match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    WireError::new(ErrorCode::Exists, format!("{shown} already exists"))
                }
                _ => io_error(shown, &e),
            }
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
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
            assert_eq!(got.map_err(|e| e.code), Err(*want), "{p:?}");
        }
        assert!(
            fs::read_dir(outside.path()).unwrap().count() == 1,
            "nothing created outside"
        );
    }

    #[test]
    fn staged_files_commit_atomically_or_vanish() {
        let (dir, _o, root) = setup();
        let rp = root.check("new/deep/file.bin").unwrap();
        let target = root.prepare_target(&rp, false).unwrap();
        assert!(dir.path().join("new/deep").is_dir());
        let (staged, mut f) = root.stage().unwrap();
        io::Write::write_all(&mut f, b"data").unwrap();
        staged.commit(&target, false, "new/deep/file.bin").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"data");

        // Without overwrite an existing file wins, and the staging file is removed.
        let (staged, _f) = root.stage().unwrap();
        let err = staged.commit(&target, false, "x").unwrap_err();
        assert_eq!(err.code, ErrorCode::Exists);
        assert_eq!(fs::read(&target).unwrap(), b"data");

        // Dropped without commit: gone.
        let (staged, _f) = root.stage().unwrap();
        let p = staged.path().to_owned();
        drop(staged);
        assert!(!p.exists());
        assert_eq!(fs::read_dir(root.staging_dir()).unwrap().count(), 0);
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

    #[test]
    fn open_cleans_crash_debris() {
        let (dir, _o, root) = setup();
        let (staged, _f) = root.stage().unwrap();
        std::mem::forget(staged);
        assert_eq!(fs::read_dir(root.staging_dir()).unwrap().count(), 1);
        let again = Root::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(again.staging_dir()).unwrap().count(), 0);
    }
}
