//! The sandbox against arbitrary paths: a root full of awkward symlinks (inside, outside,
//! absolute, escaping through `..`, into `.sft/`, loops, dangling). Every path `Root` hands back
//! is inside the root and outside `.sft/`; reads never return a file from outside; an upload
//! (prepared, staged and committed in a fresh copy of the root) never changes anything outside
//! the root or in `.sft/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sft_commands::sandbox::RESERVED_DIR;
use sft_commands::Root;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SECRET: &[u8] = b"SECRET: outside the root";

struct Fixture {
    _base: tempfile::TempDir,
    outside: PathBuf,
    root: Root,
}

impl Fixture {
    fn new() -> Fixture {
        // RAM-backed where possible: the upload check builds a fresh fixture per input.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            tempfile::Builder::new().prefix("sft-fuzz").tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .or_else(|_| tempfile::tempdir())
        .unwrap();
        let b = fs::canonicalize(base.path()).unwrap();
        let (r, outside) = (b.join("root"), b.join("outside"));
        for d in ["a/b", "b", "tmp", "ü"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::create_dir_all(&outside).unwrap();
        fs::write(r.join("a/b/file"), b"a/b/file").unwrap();
        fs::write(r.join("file"), b"file").unwrap();
        fs::write(outside.join("secret"), SECRET).unwrap();
        for (link, target) in [
            ("a/link_up", PathBuf::from("..")),
            ("a/link_esc", PathBuf::from("../..")),
            ("a/up_sft", PathBuf::from("../.sft/tmp")),
            ("link_in", PathBuf::from("a")),
            ("link_out", outside.clone()),
            ("link_file_out", outside.join("secret")),
            ("link_root", PathBuf::from(".")),
            ("link_abs_root", r.clone()),
            ("link_abs_in", r.join("a/b")),
            ("link_abs_sft", r.join(".sft/tmp")),
            ("link_sft", PathBuf::from(".sft")),
            ("via_sft", PathBuf::from(".sft/../a")),
            ("b/link_back_in", PathBuf::from("../../root/a")),
            ("link_loop", PathBuf::from("link_loop")),
            ("dangling", PathBuf::from("nowhere")),
        ] {
            symlink(target, r.join(link)).unwrap();
        }
        let root = Root::open(&r).unwrap();
        Fixture {
            _base: base,
            outside,
            root,
        }
    }

    fn assert_confined(&self, p: &Path, path: &str) {
        assert!(
            p.starts_with(self.root.dir()),
            "{path:?} → {} is outside the root",
            p.display()
        );
        assert!(
            !p.starts_with(self.root.dir().join(RESERVED_DIR)),
            "{path:?} → {} is in the reserved folder",
            p.display()
        );
    }
}

fn snapshot(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.push((p.clone(), Vec::new()));
            snapshot(&p, out);
        } else {
            out.push((p.clone(), fs::read(&p).unwrap_or_default()));
        }
    }
}

fn shared() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::new)
}

fuzz_target!(|input: (bool, &str)| {
    let (overwrite, path) = input;
    let fx = shared();
    let Ok(rp) = fx.root.check(path) else { return };

    // Reads, on the shared root (they change nothing).
    if let Ok(p) = fx.root.locate(&rp) {
        fx.assert_confined(&p, path);
    }
    if let Ok(folder) = fx.root.open_folder(&rp) {
        fx.assert_confined(&fx.root.dir().join(folder.relative()), path);
    }
    if let Ok((mut file, _)) = fx.root.open_file(&rp) {
        let mut data = Vec::new();
        file.read_to_end(&mut data).unwrap();
        assert_ne!(data, SECRET, "{path:?} read a file outside the root");
    }

    // An upload, in a fresh root (it creates folders and files).
    let fx = Fixture::new();
    let reserved = fx.root.dir().join(RESERVED_DIR);
    let mut before = Vec::new();
    snapshot(&fx.outside, &mut before);
    snapshot(&reserved, &mut before);
    if let Ok(target) = fx.root.prepare_target(&rp, overwrite) {
        fx.assert_confined(target.path(), path);
        let (staged, mut f) = fx.root.stage().unwrap();
        f.write_all(b"uploaded").unwrap();
        if staged.commit(&target, overwrite).is_ok() {
            assert_eq!(fs::read(target.path()).unwrap(), b"uploaded");
        }
    }
    let mut after = Vec::new();
    snapshot(&fx.outside, &mut after);
    snapshot(&reserved, &mut after);
    assert_eq!(
        before, after,
        "{path:?} changed files outside the root or in .sft/"
    );
});
