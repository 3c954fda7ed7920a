//! Moving an entry from one folder handle to another without ever replacing what must stay.
//!
//! `RENAME` and the commit of an upload move a name while anything else — another connection,
//! another server sharing the root, a local user — may change either end at the same moment. A
//! look before the move does not hold: an empty folder made at the destination between the look
//! and a plain `rename` would be replaced by a folder moved there. So the checks are the
//! kernel's, made in the same call as the move:
//! - [`rename_no_replace`]: nothing at the destination is replaced (`RENAME_NOREPLACE`).
//! - [`replace_non_folder`]: a non-folder replaces a non-folder, never a folder, and a folder
//!   replaces nothing (`RENAME_EXCHANGE`, then a look at what was exchanged, then a removal that
//!   cannot remove a folder).
//!
//! Where a file system or kernel lacks those flags, each falls back to a look, then the move: a
//! narrow race remains there, and only there.

use super::Kind;
use rustix::fs::{self as rfs, AtFlags, RenameFlags};
use rustix::io::Errno;
use std::os::fd::OwnedFd;

/// Moves `old` in `old_dir` to `new` in `new_dir`, atomically. Something at `new` is `EXIST`,
/// unless `replace`: then a non-folder there is replaced, when `old` is a non-folder too
/// ([`replace_non_folder`]). A folder is never replaced, and replaces nothing.
pub(crate) fn move_entry(
    old_dir: &OwnedFd,
    old: &str,
    new_dir: &OwnedFd,
    new: &str,
    replace: bool,
) -> Result<(), Errno> {
    // A round ends the move, unless `new` went between its two steps; then it starts again,
    // a few times at most against a name that keeps changing.
    for _ in 0..4 {
        match rename_no_replace(old_dir, old, new_dir, new) {
            Err(Errno::EXIST) if replace => {}
            other => return other,
        }
        match replace_non_folder(old_dir, old, new_dir, new) {
            Err(Errno::NOENT) => {}
            other => return other,
        }
    }
    Err(Errno::AGAIN)
}

/// Whether `renameat2` refused a flag it does not know: an old kernel (`NOSYS`), or a file
/// system without it (`INVAL`, `OPNOTSUPP`). `INVAL` is also a folder moved into itself, which
/// the fallback's plain rename reports again.
fn unsupported(e: Errno) -> bool {
    matches!(e, Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)
}

/// Moves `old` in `old_dir` to `new` in `new_dir` unless something is at `new` (`EXIST`): one
/// `renameat2` with `RENAME_NOREPLACE`, atomic. Where that flag is missing, a hard link, which
/// fails if `new` exists, atomically too, then `old` is removed; where a hard link cannot be made
/// either (a folder, a file system without them), a look, then a plain rename.
pub(crate) fn rename_no_replace(
    old_dir: &OwnedFd,
    old: &str,
    new_dir: &OwnedFd,
    new: &str,
) -> Result<(), Errno> {
    match rfs::renameat_with(old_dir, old, new_dir, new, RenameFlags::NOREPLACE) {
        Err(e) if unsupported(e) => {}
        other => return other,
    }
    match rfs::linkat(old_dir, old, new_dir, new, AtFlags::empty()) {
        Ok(()) => {
            let _ = rfs::unlinkat(old_dir, old, AtFlags::empty());
            Ok(())
        }
        Err(Errno::EXIST) => Err(Errno::EXIST),
        Err(_) => match rfs::statat(new_dir, new, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Err(Errno::EXIST),
            Err(Errno::NOENT) => rfs::renameat(old_dir, old, new_dir, new),
            Err(e) => Err(e),
        },
    }
}

/// Replaces the entry at `new` in `new_dir` with `old` in `old_dir`, when neither is a folder:
/// `ISDIR` if `new` is a folder, `NOTDIR` if `old` is; `NOENT` if either is missing.
///
/// Why not a plain rename: it replaces an empty folder with a folder, and either end may become
/// a folder after any look. Instead, both entries are swapped in one step (`renameat2` with
/// `RENAME_EXCHANGE`), which removes nothing; then what was swapped is looked at. Were either a
/// folder, they are swapped back and the move refused (should another process have changed
/// either name in that moment, the swap back moves what it put there: it removes nothing
/// either); otherwise the replaced entry, now at
/// `old`, is removed by `unlinkat` without `AT_REMOVEDIR`, which never removes a folder. So
/// whatever happens meanwhile, no folder is replaced or removed, and `new` always names an
/// entry. The price: between the swap and the removal, `old` names the replaced entry.
pub(crate) fn replace_non_folder(
    old_dir: &OwnedFd,
    old: &str,
    new_dir: &OwnedFd,
    new: &str,
) -> Result<(), Errno> {
    let stat = |dir: &OwnedFd, name: &str| rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW);
    let is_folder =
        |st: &Result<rfs::Stat, Errno>| st.as_ref().is_ok_and(|st| Kind::of(st) == Kind::Folder);
    match rfs::renameat_with(old_dir, old, new_dir, new, RenameFlags::EXCHANGE) {
        Ok(()) => {}
        Err(e) if unsupported(e) => {
            return match (stat(old_dir, old), stat(new_dir, new)) {
                (_, ref at_new) if is_folder(at_new) => Err(Errno::ISDIR),
                (ref at_old, _) if is_folder(at_old) => Err(Errno::NOTDIR),
                _ => rfs::renameat(old_dir, old, new_dir, new),
            };
        }
        Err(e) => return Err(e),
    }
    let (moved, replaced) = (stat(new_dir, new), stat(old_dir, old));
    if is_folder(&replaced) || is_folder(&moved) {
        let _ = rfs::renameat_with(old_dir, old, new_dir, new, RenameFlags::EXCHANGE);
        return Err(match is_folder(&replaced) {
            true => Errno::ISDIR,
            false => Errno::NOTDIR,
        });
    }
    // One file under both names (two hard links, or one name spelled two ways): the swap
    // changed nothing, and, as `rename(2)` does then, both stay.
    if let (Ok(a), Ok(b)) = (&moved, &replaced) {
        if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
            return Ok(());
        }
    }
    match rfs::unlinkat(old_dir, old, AtFlags::empty()) {
        // Gone, or a folder put there meanwhile: not this move's to remove.
        Ok(()) | Err(Errno::NOENT | Errno::ISDIR | Errno::PERM) => Ok(()),
        Err(e) => Err(e),
    }
}
