//! Property tests of the sandbox: whatever path a client sends, every path `Root` hands back is a
//! real path inside the root and outside the reserved `.sft/`, reads never reach files outside,
//! and uploads never land outside or in the reserved folder.
//!
//! Each case builds a fresh root full of awkward symlinks (inside, outside, absolute, relative,
//! escaping through `..`, into `.sft`, loops, dangling) and throws paths at it made of segments
//! that name them. Case counts are moderate so the suite stays fast; set `PROPTEST_CASES` for
//! more.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sft_commands::sandbox::RESERVED_DIR;
use sft_commands::Root;
use sft_protocol::{ErrorCode, RemotePath};
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

const SECRET: &[u8] = b"SECRET: outside the root";

/// A temporary folder holding `root/` (served) and `outside/` (never to be touched).
struct Fixture {
    _base: tempfile::TempDir,
    outside: PathBuf,
    root: Root,
}

impl Fixture {
    fn new() -> Fixture {
        // A RAM-backed folder where there is one: each case builds a fresh fixture, and file
        // system metadata operations on a journaled disk make that slow.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            tempfile::Builder::new().prefix("sft-prop").tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .or_else(|_| tempfile::tempdir())
        .unwrap();
        let b = fs::canonicalize(base.path()).unwrap();
        let (r, outside) = (b.join("root"), b.join("outside"));
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::create_dir_all(r.join("b")).unwrap();
        fs::create_dir_all(r.join("tmp")).unwrap();
        fs::create_dir_all(r.join("ü")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(r.join("a/b/file"), b"a/b/file").unwrap();
        fs::write(r.join("file"), b"file").unwrap();
        fs::write(r.join("x y"), b"x y").unwrap();
        fs::write(outside.join("secret"), SECRET).unwrap();
        fs::write(outside.join("file"), SECRET).unwrap();
        for (link, target) in [
            ("a/link_up", PathBuf::from("..")),
            ("a/link_esc", PathBuf::from("../..")),
            ("link_in", PathBuf::from("a")),
            ("link_out", outside.clone()),
            ("link_file_out", outside.join("secret")),
            ("link_root", PathBuf::from(".")),
            ("link_abs_in", r.join("a/b")),
            ("link_abs_sft", r.join(".sft/tmp")),
            ("link_sft", PathBuf::from(".sft")),
            ("via_sft", PathBuf::from(".sft/../a")),
            ("b/link_back_in", PathBuf::from("../../root/a")),
            ("link_abs_root", r.clone()),
            ("link_dots", PathBuf::from("./a/./b/")),
            ("a/up_sft", PathBuf::from("../.sft/tmp")),
            ("link_loop", PathBuf::from("link_loop")),
            ("dangling", PathBuf::from("nowhere")),
        ] {
            symlink(target, r.join(link)).unwrap();
        }
        let root = Root::open(&r).unwrap();
        assert_eq!(root.dir(), r);
        // The reserved folder appears with the first upload: make it exist, so that the links
        // into it above lead somewhere.
        drop(root.stage().unwrap());
        Fixture {
            _base: base,
            outside,
            root,
        }
    }

    fn reserved(&self) -> PathBuf {
        self.root.dir().join(RESERVED_DIR)
    }

    /// Asserts `p` is a path the sandbox may hand out: inside the root, not reserved.
    fn assert_confined(&self, p: &Path, what: &str) -> Result<(), TestCaseError> {
        prop_assert!(
            p.starts_with(self.root.dir()),
            "{}: {} is outside the root",
            what,
            p.display()
        );
        prop_assert!(
            !p.starts_with(self.reserved()),
            "{}: {} is in the reserved folder",
            what,
            p.display()
        );
        Ok(())
    }

    /// Everything under `outside/`, with contents.
    fn outside_snapshot(&self) -> BTreeSet<(PathBuf, Vec<u8>)> {
        snapshot(&self.outside)
    }
}

fn snapshot(dir: &Path) -> BTreeSet<(PathBuf, Vec<u8>)> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.insert((p.clone(), Vec::new()));
            out.extend(snapshot(&p));
        } else {
            out.insert((p.clone(), fs::read(&p).unwrap_or_default()));
        }
    }
    out
}

const SEGMENTS: &[&str] = &[
    "a",
    "b",
    "..",
    ".",
    "",
    ".sft",
    "tmp",
    "x y",
    "ü",
    "file",
    "secret",
    "outside",
    "root",
    "new",
    "link_in",
    "link_out",
    "link_file_out",
    "link_up",
    "link_esc",
    "link_root",
    "link_abs_in",
    "link_abs_sft",
    "link_sft",
    "via_sft",
    "link_back_in",
    "link_abs_root",
    "link_dots",
    "up_sft",
    "link_loop",
    "dangling",
];

/// Links whose resolution leaves the root or passes through `.sft/` at some point: a path using
/// one may be refused even where the operating system would end up at an allowed place.
const DETOURS: &[&str] = &[
    "link_out",
    "link_file_out",
    "link_esc",
    "link_abs_sft",
    "link_sft",
    "via_sft",
    "link_back_in",
    "up_sft",
];

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SEGMENTS), 0..7).prop_map(|v| v.join("/"))
}

/// The operating system's answer: the real path `rp` leads to, if it exists.
fn os_resolve(root: &Root, rp: &RemotePath) -> Option<PathBuf> {
    let mut p = root.dir().to_path_buf();
    p.extend(rp.components());
    fs::canonicalize(p).ok()
}

/// Runs `test` on `cases` generated paths against one fixture (for tests that only read).
fn run_on_one_fixture(cases: u32, test: impl Fn(&Fixture, String) -> Result<(), TestCaseError>) {
    let fx = Fixture::new();
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&path(), |path| test(&fx, path)) {
        panic!("{e}");
    }
}

#[test]
fn located_paths_are_real_and_confined() {
    run_on_one_fixture(1000, |fx, path| {
        let Ok(rp) = fx.root.check(&path) else {
            return Ok(());
        };
        let os = os_resolve(&fx.root, &rp);
        match fx.root.locate(&rp) {
            Ok(p) => {
                fx.assert_confined(&p, &path)?;
                prop_assert_eq!(Some(&p), os.as_ref(), "{:?}: not the real path", path);
            }
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                // Where the OS reaches an allowed place without a detour, so must the sandbox.
                let detour = path.split('/').any(|s| DETOURS.contains(&s));
                if let Some(real) = os {
                    let allowed =
                        real.starts_with(fx.root.dir()) && !real.starts_with(fx.reserved());
                    prop_assert!(
                        !allowed || detour,
                        "{:?} refused ({}) but resolves to {}",
                        path,
                        e,
                        real.display()
                    );
                }
            }
        }
        Ok(())
    });
}

#[test]
fn opened_files_are_inside() {
    run_on_one_fixture(1000, |fx, path| {
        let Ok(rp) = fx.root.check(&path) else {
            return Ok(());
        };
        if let Ok((mut file, len)) = fx.root.open_file(&rp) {
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            prop_assert_eq!(data.len() as u64, len);
            prop_assert_ne!(&data[..], SECRET, "{:?} read a file outside the root", path);
            let located = fx.root.locate(&rp);
            prop_assert!(located.is_ok(), "{:?}: opened but not located", path);
            let located = located.unwrap();
            fx.assert_confined(&located, &path)?;
            let (a, b) = (file.metadata().unwrap(), fs::metadata(&located).unwrap());
            prop_assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        }
        Ok(())
    });
}

proptest! {
    // Each case builds a fresh root, as uploads change it.
    #![proptest_config(config(512))]

    #[test]
    fn uploads_land_inside(path in path(), overwrite in any::<bool>()) {
        let fx = Fixture::new();
        let before = (fx.outside_snapshot(), snapshot(&fx.reserved()));
        let Ok(rp) = fx.root.check(&path) else { return Ok(()) };
        match fx.root.prepare_target(&rp, overwrite) {
            Ok(target) => {
                let p = target.path().to_owned();
                fx.assert_confined(&p, &path)?;
                prop_assert_eq!(p.file_name().and_then(|n| n.to_str()), rp.file_name());
                let parent = p.parent().unwrap();
                let real_parent = fs::canonicalize(parent).ok();
                prop_assert_eq!(
                    real_parent.as_deref(),
                    Some(parent),
                    "{:?}: the target's folder is not a real path",
                    path
                );
                prop_assert!(!p.is_dir() || fs::symlink_metadata(&p).unwrap().is_symlink());

                let (staged, mut f) = fx.root.stage().unwrap();
                f.write_all(b"uploaded").unwrap();
                drop(f);
                match staged.commit(&target, overwrite) {
                    Ok(()) => {
                        prop_assert_eq!(fs::read(&p).unwrap(), b"uploaded");
                        // The same name now reads what was uploaded, unless the upload replaced
                        // a symlink the path itself goes through (`link_root/link_root`).
                        if let Ok((mut f, _)) = fx.root.open_file(&rp) {
                            let mut data = Vec::new();
                            f.read_to_end(&mut data).unwrap();
                            prop_assert_eq!(data, b"uploaded");
                        }
                    }
                    Err(e) => prop_assert_eq!(e.code, ErrorCode::Exists, "{}", e),
                }
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
        // Nothing changed outside the root, nor in the server's own folder (the staging file
        // was renamed away or removed).
        let after = (fx.outside_snapshot(), snapshot(&fx.reserved()));
        prop_assert_eq!(&after.0, &before.0, "{:?} changed files outside the root", path);
        prop_assert_eq!(&after.1, &before.1, "{:?} changed .sft/", path);
    }
}

/// Paths that must be refused whatever the fixture holds: they name `.sft/` or leave the root.
#[test]
fn detours_are_refused() {
    let fx = Fixture::new();
    let forbidden = |got: Result<PathBuf, sft_protocol::WireError>, path: &str| {
        assert!(
            matches!(&got, Err(e) if e.code == ErrorCode::Forbidden),
            "{path:?}: {got:?}"
        );
    };
    for path in [
        "link_sft/tmp",
        "link_abs_sft",
        "link_root/.sft/tmp",
        "a/link_up/.sft",
        "link_in/link_up/.sft/tmp",
        "via_sft/b/file",
        "link_out/secret",
        "link_file_out",
        "a/link_esc/outside/secret",
        "b/link_back_in/b/file",
        "link_abs_root/.sft/tmp",
        "a/up_sft",
    ] {
        let rp = fx.root.check(path).unwrap();
        forbidden(fx.root.locate(&rp), path);
    }
    // A symlink as the last name of an upload is replaced, not followed: only parents count.
    for path in [
        "link_sft/tmp/x",
        "link_abs_sft/x",
        "link_root/.sft/tmp/x",
        "a/link_up/.sft/x",
        "link_in/link_up/.sft/tmp/x",
        "via_sft/x",
        "link_out/x",
        "a/link_esc/outside/x",
        "b/link_back_in/x",
        "link_abs_root/.sft/x",
        "a/up_sft/x",
    ] {
        let rp = fx.root.check(path).unwrap();
        forbidden(
            fx.root
                .prepare_target(&rp, true)
                .map(|t| t.path().to_owned()),
            path,
        );
    }
}
