//! The served root: every path a client names is resolved here, and only here.
//!
//! Two gates guard it. [`sft_protocol::normalize`] refuses absolute paths and `..` that climbs
//! out, lexically. Then [`Root`] resolves what is left **component by component**, from an open
//! handle on the root folder (`openat` with `O_NOFOLLOW`): a symlink is read and its target
//! resolved the same way, so it is followed only while it stays inside the root. The final
//! open, the final rename and every folder created go through the folder handle that resolution
//! produced, never through a path string — so a parent folder swapped for a symlink in the
//! middle of a transfer cannot redirect a read or a write out of the root. The walk is in
//! `sandbox/resolve.rs`; the root's own handle, and what happens when the root vanishes, in
//! `sandbox/handle.rs`.
//!
//! The top-level folder `.sft/` is reserved: uploads are staged in `.sft/tmp/` (in a folder of
//! each running server's own, see `locks.rs`) or `.sft/partial/` and renamed into place when
//! complete. Clients can neither read nor write anything in it by any name. It is created when
//! the first upload needs it, never by opening the root.
//!
//! All methods here block on the file system; async callers run them through
//! [`Root::blocking`], which decides where (see `sandbox/offload.rs`).

mod change;
mod handle;
mod health;
mod moves;
mod offload;
mod resolve;

use crate::hashes::HashCache;
use crate::signatures::SignatureCache;
use handle::RootHandle;
use sft_io::Pool;
use sft_protocol::{ErrorCode, WireError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use crate::staging::{PartialLimits, Staged, Upload};
pub(crate) use handle::{FileId, DIR_FLAGS};
pub use health::{StorageHealth, FRESH, PROBE_DEADLINE};
pub(crate) use moves::rename_no_replace;
pub use offload::{Closing, Work};
pub(crate) use resolve::is_partial_download;
pub use resolve::{Folder, Kind, Target};

/// The name, at the top of the root, of the folder sft keeps its own state in.
pub const RESERVED_DIR: &str = ".sft";
/// The suffix of a client's partial download (`.NAME.sft-part`); such files are not listed.
pub const PARTIAL_SUFFIX: &str = ".sft-part";
pub(crate) const STAGING_DIR: &str = "tmp";
pub(crate) const PARTIAL_DIR: &str = "partial";
/// Where each running server's lock file is (see `locks.rs`).
pub(crate) const LOCK_DIR: &str = "lock";

/// The served folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Root {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// The root folder as opened; replaced if it vanishes and a folder returns at `dir`.
    handle: RwLock<Arc<RootHandle>>,
    /// When the root was opened, and (milliseconds since then) last checked for vanishing.
    opened: Instant,
    checked_ms: AtomicU64,
    /// Whether the root is known to have vanished (so that it is logged once).
    vanished: AtomicBool,
    hashes: HashCache,
    signatures: SignatureCache,
    /// Whether the root is on a local file system (see `sandbox/offload.rs`).
    local: bool,
    /// Where its file-system work runs (see `sandbox/offload.rs`).
    pool: Pool,
    /// Whether its storage answers (see `sandbox/health.rs`).
    health: Arc<health::Health>,
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
        // A call given up on ([`Hung`]), or a soft network mount's own time-out.
        io::ErrorKind::TimedOut => WireError::new(
            ErrorCode::Unavailable,
            format!("{what}: {e}; try again later, or on another server"),
        ),
        _ => WireError::internal(format!("{what}: {e}")),
    }
}

/// How many file-system calls of a root may wait on its storage at once, by default
/// (`--storage-jobs`): each holds a thread while its storage hangs.
pub const STORAGE_JOBS: usize = 64;

/// How long a file-system call may go without progress before its request is answered
/// `unavailable`, by default (`--storage-timeout`): below the client's and the server's stall
/// timeouts, so that the client hears why.
pub const STORAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Characters of a requested path kept for the request log line (a longer one is cut, with `…`).
pub const LOGGED_PATH_CHARS: usize = 256;

/// A path as a request named it, for the request log line when it is refused before it could
/// be normalized (`../etc/passwd`, `.sft/x`): bounded to [`LOGGED_PATH_CHARS`] characters.
/// The logger escapes control characters.
pub fn requested(path: &str) -> String {
    match path.char_indices().nth(LOGGED_PATH_CHARS) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    }
}

/// A system call's error as an `io::Error`, for the file-system code of the root and staging.
pub(crate) fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl Root {
    /// Opens `dir` as the served root, its work on a pool of [`STORAGE_JOBS`] places and a
    /// [`STORAGE_TIMEOUT`] deadline (see [`Root::open_on`]).
    pub fn open(dir: &Path) -> io::Result<Root> {
        Root::open_on(dir, Pool::new(STORAGE_JOBS, STORAGE_TIMEOUT))
    }

    /// Opens `dir` as the served root, its file-system work on `pool`. Only reads: the staging
    /// area is created, and debris a crash left in it removed, when the first upload needs it.
    pub fn open_on(dir: &Path, pool: Pool) -> io::Result<Root> {
        let dir = fs::canonicalize(dir)?;
        let handle = RootHandle::open(&dir)?;
        let local = offload::is_local(&*handle.fd);
        Ok(Root {
            inner: Arc::new(Inner {
                dir,
                handle: RwLock::new(Arc::new(handle)),
                opened: Instant::now(),
                checked_ms: AtomicU64::new(0),
                vanished: AtomicBool::new(false),
                hashes: HashCache::default(),
                signatures: SignatureCache::default(),
                local,
                pool,
                health: Arc::default(),
            }),
        })
    }

    /// Whether the root's storage answers: a probe off the executor, at most about once a
    /// second, within [`PROBE_DEADLINE`] (see `sandbox/health.rs`). What `HELLO` reports.
    pub async fn storage_health(&self) -> StorageHealth {
        let handle = self.handle_unchecked();
        let dir = self.inner.dir.display().to_string();
        self.inner.health.check(&handle.fd, &dir).await
    }

    /// What is known of the storage's health without waiting, for a metrics page: whether it
    /// answered the last probe (`None` before the first) and that probe's latency (or how long
    /// an overdue one has waited). Starts a probe when the last is stale.
    pub fn storage_known(&self) -> (Option<bool>, Duration) {
        self.inner.health.known(&self.handle_unchecked().fd)
    }

    /// The cache of served files' BLAKE3 hashes.
    pub fn hashes(&self) -> &HashCache {
        &self.inner.hashes
    }

    /// The cache of served files' level-1 signatures (`SIGN`).
    pub fn signatures(&self) -> &SignatureCache {
        &self.inner.signatures
    }

    /// The canonical path of the served folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// `exists`, naming the path that does.
pub(crate) fn exists(shown: &impl std::fmt::Display) -> WireError {
    WireError::exists(format!("{shown} already exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_paths_are_bounded() {
        assert_eq!(requested("../etc/passwd"), "../etc/passwd");
        let long = "é".repeat(LOGGED_PATH_CHARS + 5);
        let logged = requested(&long);
        assert_eq!(logged.chars().count(), LOGGED_PATH_CHARS + 1);
        assert!(logged.ends_with('…'));
    }
    use std::os::unix::fs::symlink;

    /// A root with files, folders and symlinks inside and out (shared with `resolve`'s tests).
    pub(crate) fn setup() -> (tempfile::TempDir, tempfile::TempDir, Root) {
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
    fn opening_writes_nothing_and_staging_files_are_each_servers_own() {
        let (dir, _o, root) = setup();
        assert!(
            !dir.path().join(RESERVED_DIR).exists(),
            "opening the root creates nothing"
        );
        let limits = PartialLimits {
            ttl: Default::default(),
            max_count: 0,
            max_bytes: Some(0),
        };
        assert_eq!(root.expire_partials(&limits), 0);
        assert_eq!(root.clean_staging().unwrap(), 0);
        assert!(!dir.path().join(RESERVED_DIR).exists(), "nor does expiring");
        let (staged, _f) = root.stage().unwrap();
        let pending = staged.path().to_owned();
        assert_eq!(fs::read_dir(root.staging_dir()).unwrap().count(), 1);

        // A second server over the same root: its first upload leaves the first one's alone
        // while that one runs, in a folder of its own.
        let again = Root::open(dir.path()).unwrap();
        let (_staged, _f) = again.stage().unwrap();
        assert_ne!(again.staging_dir(), root.staging_dir());
        assert!(
            pending.exists(),
            "a running server's staging file is its own"
        );
        assert_eq!(root.clean_staging().unwrap(), 1, "…until it cleans up");
        assert_eq!(fs::read_dir(again.staging_dir()).unwrap().count(), 1);

        // Stopped, a server's folder goes with it.
        let own = root.staging_dir();
        drop((staged, root));
        assert!(!own.exists());
    }
}
