//! Changing the tree: removing a file, removing an empty folder, renaming, setting a
//! modification time.
//!
//! Like everything in the sandbox, these never act on a path string. The path is resolved to
//! the open handle of the folder holding the entry and the entry's last name, and the change is
//! made relative to that handle (`unlinkat`, `renameat2`): a folder on the way swapped for a
//! symlink meanwhile cannot redirect it out of the root. The last component is never followed:
//! a symlink there is removed or moved itself, not what it points to.
//!
//! The root itself, the reserved `.sft/` and anything inside it are refused, by name and (at
//! the top of the root) by identity, so another spelling of `.sft` on a case-insensitive file
//! system is refused too.

use super::moves::move_entry;
use super::resolve::{reserved, Last, Resolved};
use super::{errno, exists, io_error, Kind, Root};
use rustix::fs::{self as rfs, AtFlags};
use rustix::io::Errno;
use sft_protocol::{ErrorCode, RemotePath, WireError};

/// An existing entry, resolved without following its last component.
struct Entry {
    at: Resolved,
    name: String,
    kind: Kind,
}

fn root_refused(what: &str) -> WireError {
    WireError::new(
        ErrorCode::Forbidden,
        format!("the served folder itself cannot be {what}"),
    )
}

impl Root {
    /// Resolves the existing entry `rp` (not the root) through its parent folder's handle.
    fn entry(&self, rp: &RemotePath, what: &str) -> Result<Entry, WireError> {
        if rp.is_root() {
            return Err(root_refused(what));
        }
        let at = self.resolve(rp, Last::Entry)?;
        let name = at.name.clone().expect("a non-root path has a last name");
        let st = rfs::statat(&*at.parent.fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
        if at.parent.is_root() && at.handle.is_reserved(&st) {
            return Err(reserved());
        }
        Ok(Entry {
            at,
            name,
            kind: Kind::of(&st),
        })
    }

    /// Removes the file at `rp`: a regular file, a symlink (the link itself, never its target)
    /// or another non-folder entry. Returns what was removed. A folder is `bad_request` (see
    /// [`Root::remove_folder`]); the root and the reserved folder are `forbidden`.
    pub fn remove_file(&self, rp: &RemotePath) -> Result<Kind, WireError> {
        let entry = self.entry(rp, "removed")?;
        if entry.kind == Kind::Folder {
            return Err(WireError::bad_request(format!(
                "{rp} is a folder: remove it as a folder (it must be empty)"
            )));
        }
        // Without AT_REMOVEDIR, unlinkat refuses a folder swapped in since the look above.
        rfs::unlinkat(&*entry.at.parent.fd, entry.name.as_str(), AtFlags::empty()).map_err(
            |e| match e {
                Errno::ISDIR => WireError::bad_request(format!(
                    "{rp} is a folder: remove it as a folder (it must be empty)"
                )),
                e => io_error(&rp.to_string(), &errno(e)),
            },
        )?;
        Ok(entry.kind)
    }

    /// Removes the empty folder at `rp`. A folder with anything in it is `bad_request` (nothing
    /// is removed recursively), and so is anything but a folder — a symlink to a folder too.
    pub fn remove_folder(&self, rp: &RemotePath) -> Result<(), WireError> {
        let entry = self.entry(rp, "removed")?;
        let not_folder = || WireError::bad_request(format!("{rp} is not a folder"));
        if entry.kind != Kind::Folder {
            return Err(not_folder());
        }
        rfs::unlinkat(
            &*entry.at.parent.fd,
            entry.name.as_str(),
            AtFlags::REMOVEDIR,
        )
        .map_err(|e| match e {
            Errno::NOTEMPTY | Errno::EXIST => {
                WireError::bad_request(format!("{rp} is not empty: only empty folders are removed"))
            }
            Errno::NOTDIR => not_folder(),
            Errno::BUSY => WireError::bad_request(format!("{rp} is in use (a mount point?)")),
            e => io_error(&rp.to_string(), &errno(e)),
        })
    }

    /// Gives the file or folder at `rp` the modification time `mtime` (whole seconds since the
    /// epoch), leaving its contents and access time alone. Returns what it is. A symlink there
    /// is `bad_request` (its target is never touched: the change is made to the name in the
    /// folder resolved, not followed), and so is anything but a file or folder; the root and
    /// the reserved folder are `forbidden`.
    pub fn set_mtime(&self, rp: &RemotePath, mtime: i64) -> Result<Kind, WireError> {
        let entry = self.entry(rp, "given a time")?;
        if !matches!(entry.kind, Kind::File | Kind::Folder) {
            return Err(WireError::bad_request(format!(
                "{rp} is not a file or folder: only their times are set"
            )));
        }
        rfs::utimensat(
            &*entry.at.parent.fd,
            entry.name.as_str(),
            &crate::attributes::modified_at(mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_error(&rp.to_string(), &errno(e)))?;
        Ok(entry.kind)
    }

    /// Moves the file, folder or symlink at `from` to `to`, atomically, inside the root.
    /// Returns what was moved.
    ///
    /// `to`'s parent folder must exist. An existing `to` is `exists` unless `overwrite`; even
    /// then a folder is never replaced (`bad_request`). A folder moved into itself is
    /// `bad_request`; the root and the reserved folder, as either end, are `forbidden`.
    pub fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<Kind, WireError> {
        let source = self.entry(from, "moved")?;
        if to.is_root() {
            return Err(root_refused("replaced"));
        }
        let dest = self.resolve(to, Last::Entry)?;
        let dest_name = dest.name.clone().expect("a non-root path has a last name");
        let shown = to.to_string();
        match rfs::statat(
            &*dest.parent.fd,
            dest_name.as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if dest.parent.is_root() && dest.handle.is_reserved(&st) => {
                return Err(reserved())
            }
            Ok(st) if Kind::of(&st) == Kind::Folder && !same(&source, &dest, &dest_name) => {
                return Err(WireError::bad_request(format!(
                    "{to} is a folder: a folder is never replaced"
                )))
            }
            Ok(_) if !overwrite => return Err(exists(to)),
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io_error(&shown, &errno(e))),
        }
        if same(&source, &dest, &dest_name) {
            // Onto itself, with `overwrite` (without, `exists` above): nothing changes.
            return Ok(source.kind);
        }
        // The look above gives the common refusals their words; the move itself never relies
        // on it (see `moves.rs`): what is at either end may change meanwhile.
        let replace = overwrite && source.kind != Kind::Folder;
        let result = move_entry(
            &source.at.parent.fd,
            source.name.as_str(),
            &dest.parent.fd,
            dest_name.as_str(),
            replace,
        );
        result.map_err(|e| match e {
            Errno::EXIST if !overwrite => exists(to),
            Errno::EXIST if source.kind == Kind::Folder => WireError::bad_request(format!(
                "{from} is a folder and {to} exists: a folder replaces nothing"
            )),
            Errno::EXIST | Errno::NOTEMPTY | Errno::ISDIR => {
                WireError::bad_request(format!("{to} is a folder: a folder is never replaced"))
            }
            Errno::INVAL => {
                WireError::bad_request(format!("{from} cannot be moved into itself ({to})"))
            }
            Errno::NOTDIR => WireError::bad_request(format!(
                "{from} is a folder and {to} is not: a folder replaces nothing"
            )),
            Errno::XDEV => WireError::bad_request(format!(
                "{from} and {to} are on different file systems: cannot move atomically"
            )),
            Errno::BUSY => WireError::bad_request(format!("{from} is in use (a mount point?)")),
            Errno::NOENT => io_error(&from.to_string(), &errno(e)),
            e => io_error(&format!("{from} -> {to}"), &errno(e)),
        })?;
        Ok(source.kind)
    }
}

/// Whether `dest`/`name` is the source entry itself (a rename onto itself changes nothing).
fn same(source: &Entry, dest: &Resolved, name: &str) -> bool {
    source.name == name && source.at.parent.names == dest.parent.names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::tests::setup;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::sync::{Barrier, Mutex};

    fn remove(root: &Root, p: &str, folder: bool) -> Result<(), ErrorCode> {
        let rp = root.check(p).map_err(|e| e.code)?;
        if folder {
            root.remove_folder(&rp).map_err(|e| e.code)
        } else {
            root.remove_file(&rp).map(drop).map_err(|e| e.code)
        }
    }

    fn mv(root: &Root, from: &str, to: &str, overwrite: bool) -> Result<Kind, ErrorCode> {
        let from = root.check(from).map_err(|e| e.code)?;
        let to = root.check(to).map_err(|e| e.code)?;
        root.rename(&from, &to, overwrite).map_err(|e| e.code)
    }

    /// Every name below `dir`, sorted, for "nothing changed" checks.
    fn tree(dir: &Path) -> Vec<String> {
        let mut all = Vec::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                all.push(p.strip_prefix(dir).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    todo.push(p);
                }
            }
        }
        all.sort();
        all
    }

    /// A root whose reserved folder exists, with a link to it and to the root.
    fn hostile_setup() -> (tempfile::TempDir, tempfile::TempDir, Root) {
        let (dir, outside, _) = setup();
        let d = dir.path();
        fs::create_dir_all(d.join(".sft/tmp")).unwrap();
        fs::write(d.join(".sft/tmp/x"), b"x").unwrap();
        symlink(".sft", d.join("to_reserved")).unwrap();
        symlink(".", d.join("to_root")).unwrap();
        fs::create_dir(d.join("empty")).unwrap();
        let root = Root::open(d).unwrap();
        (dir, outside, root)
    }

    #[test]
    fn set_mtime_changes_a_files_or_folders_time_and_never_follows_a_symlink() {
        use std::os::unix::fs::MetadataExt;
        let (dir, outside, _) = hostile_setup();
        let root = Root::open(dir.path()).unwrap();
        let touch = |p: &str, t: i64| {
            let rp = root.check(p).map_err(|e| e.code)?;
            root.set_mtime(&rp, t).map_err(|e| e.code)
        };
        let mtime = |p: &Path| fs::symlink_metadata(p).unwrap().mtime();
        assert_eq!(touch("sub/f.txt", 1_000_000_000), Ok(Kind::File));
        assert_eq!(mtime(&dir.path().join("sub/f.txt")), 1_000_000_000);
        assert_eq!(fs::read(dir.path().join("sub/f.txt")).unwrap(), b"f");
        assert_eq!(touch("sub", -86_400), Ok(Kind::Folder));
        assert_eq!(mtime(&dir.path().join("sub")), -86_400);
        let secret = mtime(&outside.path().join("secret"));
        assert_eq!(touch("to_secret", 5), Err(ErrorCode::BadRequest));
        assert_eq!(mtime(&outside.path().join("secret")), secret);
        assert_eq!(touch("nothing", 5), Err(ErrorCode::NotFound));
        for (p, _) in HOSTILE.iter().filter(|(_, c)| *c == ErrorCode::Forbidden) {
            assert_eq!(touch(p, 5), Err(ErrorCode::Forbidden), "{p}");
        }
    }

    const HOSTILE: &[(&str, ErrorCode)] = &[
        ("", ErrorCode::Forbidden),
        (".", ErrorCode::Forbidden),
        ("sub/..", ErrorCode::Forbidden),
        (".sft", ErrorCode::Forbidden),
        ("./.sft", ErrorCode::Forbidden),
        (".sft/tmp", ErrorCode::Forbidden),
        (".sft/tmp/x", ErrorCode::Forbidden),
        ("sub/../.sft", ErrorCode::Forbidden),
        ("sub/../.sft/tmp/x", ErrorCode::Forbidden),
        ("to_reserved/tmp/x", ErrorCode::Forbidden),
        ("to_root/.sft", ErrorCode::Forbidden),
        ("to_root/.sft/tmp/x", ErrorCode::Forbidden),
        ("to_sub/../.sft/tmp", ErrorCode::Forbidden),
        ("to_staging/x", ErrorCode::Forbidden),
        ("../x", ErrorCode::Forbidden),
        ("/etc/passwd", ErrorCode::Forbidden),
        ("to_outside_dir/secret", ErrorCode::Forbidden),
        ("a\0b", ErrorCode::BadRequest),
        ("missing", ErrorCode::NotFound),
        ("missing/x", ErrorCode::NotFound),
        ("inside.txt/x", ErrorCode::BadRequest),
    ];

    #[test]
    fn hostile_removals_change_nothing() {
        let (dir, outside, root) = hostile_setup();
        let (before, outside_before) = (tree(dir.path()), tree(outside.path()));
        for folder in [false, true] {
            for (p, want) in HOSTILE {
                assert_eq!(
                    remove(&root, p, folder),
                    Err(*want),
                    "{p:?} folder={folder}"
                );
            }
        }
        assert_eq!(remove(&root, "sub", false), Err(ErrorCode::BadRequest));
        assert_eq!(
            remove(&root, "sub", true),
            Err(ErrorCode::BadRequest),
            "not empty"
        );
        assert_eq!(
            remove(&root, "inside.txt", true),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            remove(&root, "to_sub", true),
            Err(ErrorCode::BadRequest),
            "a link"
        );
        assert_eq!(tree(dir.path()), before);
        assert_eq!(tree(outside.path()), outside_before);
    }

    #[test]
    fn removals_remove_the_entry_itself() {
        let (dir, outside, root) = hostile_setup();
        let d = dir.path();
        assert_eq!(remove(&root, "to_secret", false), Ok(()));
        assert!(
            outside.path().join("secret").exists(),
            "the link went, not its target"
        );
        assert_eq!(remove(&root, "to_sub", false), Ok(()));
        assert!(d.join("sub/f.txt").exists());
        assert_eq!(
            remove(&root, "to_reserved", false),
            Ok(()),
            "a link to .sft is not .sft"
        );
        assert!(d.join(".sft/tmp/x").exists());
        assert_eq!(remove(&root, "sub/f.txt", false), Ok(()));
        assert_eq!(remove(&root, "sub", true), Ok(()));
        assert_eq!(remove(&root, "to_root/empty", true), Ok(()));
        assert!(!d.join("sub").exists() && !d.join("empty").exists());
        assert_eq!(remove(&root, "inside.txt", false), Ok(()));
        assert_eq!(remove(&root, "inside.txt", false), Err(ErrorCode::NotFound));
    }

    #[test]
    fn hostile_renames_change_nothing() {
        let (dir, outside, root) = hostile_setup();
        let (before, outside_before) = (tree(dir.path()), tree(outside.path()));
        for (p, want) in HOSTILE {
            for overwrite in [false, true] {
                assert_eq!(
                    mv(&root, p, "new", overwrite).map(drop),
                    Err(*want),
                    "from {p:?}"
                );
                if *want == ErrorCode::NotFound && !p.contains('/') {
                    continue; // a missing target is where a rename goes
                }
                let got = mv(&root, "inside.txt", p, overwrite).map(drop);
                assert_eq!(got, Err(*want), "to {p:?}");
            }
        }
        let table: &[(&str, &str, bool, ErrorCode)] = &[
            ("sub", "sub/inner", false, ErrorCode::BadRequest),
            ("sub", "to_sub/inner", true, ErrorCode::BadRequest),
            ("sub", "empty", true, ErrorCode::BadRequest),
            ("inside.txt", "sub/f.txt", false, ErrorCode::Exists),
            ("inside.txt", "sub", true, ErrorCode::BadRequest),
            ("empty", "inside.txt", true, ErrorCode::BadRequest),
            ("inside.txt", "missing/x", false, ErrorCode::NotFound),
        ];
        for (from, to, overwrite, want) in table {
            assert_eq!(
                mv(&root, from, to, *overwrite).map(drop),
                Err(*want),
                "{from:?} -> {to:?}"
            );
        }
        assert_eq!(tree(dir.path()), before);
        assert_eq!(tree(outside.path()), outside_before);
    }

    #[test]
    fn renames_move_files_folders_and_links() {
        let (dir, outside, root) = hostile_setup();
        let d = dir.path();
        assert_eq!(
            mv(&root, "inside.txt", "sub/moved.txt", false),
            Ok(Kind::File)
        );
        assert_eq!(fs::read(d.join("sub/moved.txt")).unwrap(), b"in");
        assert_eq!(mv(&root, "sub", "empty/sub2", false), Ok(Kind::Folder));
        assert!(d.join("empty/sub2/f.txt").exists());
        assert_eq!(mv(&root, "to_secret", "link", false), Ok(Kind::Symlink));
        assert!(fs::symlink_metadata(d.join("link")).unwrap().is_symlink());
        assert!(outside.path().join("secret").exists());
        fs::write(d.join("a"), b"a").unwrap();
        fs::write(d.join("b"), b"b").unwrap();
        assert_eq!(mv(&root, "a", "b", false), Err(ErrorCode::Exists));
        assert_eq!(mv(&root, "a", "b", true), Ok(Kind::File));
        assert_eq!(fs::read(d.join("b")).unwrap(), b"a");
        assert!(!d.join("a").exists());
        assert_eq!(
            mv(&root, "b", "b", true),
            Ok(Kind::File),
            "onto itself: no change"
        );
        assert_eq!(fs::read(d.join("b")).unwrap(), b"a");
    }

    #[test]
    fn a_parent_swapped_for_a_symlink_cannot_redirect_a_rename() {
        let (dir, outside, root) = setup();
        let d = dir.path();
        fs::create_dir(d.join("sub/inner")).unwrap();
        fs::create_dir(outside.path().join("inner")).unwrap();
        fs::write(outside.path().join("inner/victim"), b"v").unwrap();
        let outside_before = tree(outside.path());
        // A folder on the way is a symlink out of the root when the request comes: refused,
        // whichever end it is on (the swap during a rename is tested end to end).
        let from = root.check("sub/f.txt").unwrap();
        let to = root.check("sub/inner/victim").unwrap();
        fs::rename(d.join("sub"), d.join("sub.moved")).unwrap();
        symlink(outside.path(), d.join("sub")).unwrap();
        assert_eq!(
            root.rename(&from, &to, true).map_err(|e| e.code),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            root.remove_file(&to).map_err(|e| e.code),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(tree(outside.path()), outside_before);
    }

    /// Rounds of each race below: without the kernel's checks in the move, the racing folder
    /// was replaced in some of them. Each round ends by itself; the check is exact.
    const RACE_ROUNDS: usize = 2000;

    /// Removes whatever is at `p`, folder or not.
    fn clear(p: &Path) {
        let _ = fs::remove_file(p).or_else(|_| fs::remove_dir_all(p));
    }

    /// Makes an empty folder at `p` and opens it, if nothing is there.
    fn make_folder(p: &Path) -> Option<fs::File> {
        fs::create_dir(p).ok()?;
        fs::File::open(p).ok()
    }

    /// Runs [`RACE_ROUNDS`] rounds of an overwriting rename of `from` to `to` while `racer`
    /// changes the tree at the same moment; `prepare` sets each round up. A folder the racer
    /// made (and opened) must never be replaced: it still has a name once the round is over.
    /// Returns how many rounds the racer made its folder.
    fn race(prepare: impl Fn(&Path), racer: impl Fn(&Path) -> Option<fs::File> + Sync) -> usize {
        use std::os::unix::fs::MetadataExt;
        let (dir, _outside, root) = setup();
        let d = dir.path();
        let (from, to) = (root.check("from").unwrap(), root.check("to").unwrap());
        let (start, end) = (Barrier::new(2), Barrier::new(2));
        let made = Mutex::new(None);
        let (mut contested, mut replaced) = (0, Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..RACE_ROUNDS {
                    start.wait();
                    *made.lock().unwrap() = racer(d);
                    end.wait();
                }
            });
            for round in 0..RACE_ROUNDS {
                clear(&d.join("from"));
                clear(&d.join("to"));
                prepare(d);
                start.wait();
                let _ = root.rename(&from, &to, true);
                end.wait();
                if let Some(folder) = made.lock().unwrap().take() {
                    contested += 1;
                    if folder.metadata().unwrap().nlink() == 0 {
                        replaced.push(round);
                    }
                }
            }
        });
        // Judged once both threads are done (a panic in a round would leave the racer waiting).
        assert_eq!(
            replaced,
            [] as [usize; 0],
            "rounds where a folder was replaced"
        );
        contested
    }

    #[test]
    fn an_overwriting_rename_never_replaces_a_folder_made_meanwhile() {
        // A folder is moved to a free name, where an empty folder appears.
        let made = race(
            |d| {
                fs::create_dir(d.join("from")).unwrap();
                fs::write(d.join("from/marker"), b"m").unwrap();
            },
            |d| make_folder(&d.join("to")),
        );
        assert!(made > 0, "the racer never made its folder");
    }

    #[test]
    fn an_overwriting_rename_of_a_file_never_moves_a_folder_over_one() {
        // A file is to replace a file; meanwhile both become folders.
        let made = race(
            |d| {
                fs::write(d.join("from"), b"new").unwrap();
                fs::write(d.join("to"), b"old").unwrap();
            },
            |d| {
                clear(&d.join("from"));
                let _ = fs::create_dir(d.join("from"));
                let _ = fs::write(d.join("from/marker"), b"m");
                clear(&d.join("to"));
                make_folder(&d.join("to"))
            },
        );
        assert!(made > 0, "the racer never made its folder");
    }
}
