//! Copy-with-history: the newest snapshot folder is a full mirror. A run moves each
//! unchanged file from the previous snapshot into its staging folder and fetches the rest,
//! so the previous folder keeps exactly its versions of what changed or was deleted.
//!
//! Invariant, true at every instant (also mid-run and after a crash): the file of path P of
//! snapshot S is in the first folder of S, S+1, …, newest, staging that has P.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::catalog::Catalog;
use crate::error::{IoContext, Result};
use crate::job::stage::{Linked, Stage};
use crate::model::{Entry, Kind};
use crate::store::moves::rename_keeping_mtime;
use crate::store::parts;

/// Move the previous snapshot's copy of unchanged `e` into the staging folder.
pub fn take(stage: &Stage, prev_root: &Path, e: &Entry) -> io::Result<Linked> {
    // Under the same name as in the previous snapshot (the job moves nothing else).
    let from = prev_root.join(std::ffi::OsStr::from_bytes(&stage.stored(&e.path)));
    let to = stage.path(e);
    let pieces = parts::pieces(&from);
    if pieces.is_empty() {
        // Already moved by an interrupted run, or lost: fetch it.
        return Ok(Linked::No);
    }
    if fs::symlink_metadata(&to).is_ok() {
        crate::job::stage::remove(&to)?;
    }
    parts::remove_parts(&to)?;
    // Parts in order: cut short, the previous folder lacks part 1 and is not read as whole.
    let moved = pieces.iter().enumerate().try_for_each(|(i, piece)| {
        let dest = match piece == &from {
            true => to.clone(),
            false => parts::part_path(&to, i as u32 + 1),
        };
        rename_keeping_mtime(piece, &dest)
    });
    match moved {
        Ok(()) => Ok(Linked::Yes),
        // The previous snapshot is a read-only btrfs subvolume (made by the btrfs strategy
        // before history was chosen): its files cannot move, so they are fetched again.
        Err(err) if matches!(err.raw_os_error(), Some(libc::EXDEV) | Some(libc::EROFS)) => {
            Ok(Linked::No)
        }
        Err(err) => Err(err),
    }
}

/// Resume: files an interrupted run moved out of the previous snapshot go back before the
/// new listing decides again (a file unchanged then may have changed since). `names` and
/// `renamed`: the previous snapshot's name rules and renamed entries, which a run that
/// moved files from it also used. Returns how many were moved back.
pub fn give_back(
    catalog: &Catalog,
    prev_id: i64,
    stage: &Stage,
    prev_root: &Path,
    names: &crate::store::names::NameRules,
    renamed: &crate::store::clash::Renamed,
) -> Result<u64> {
    let mut files: HashSet<Vec<u8>> = HashSet::new();
    catalog.for_each_entry(prev_id, None, |e, _| {
        if e.kind == Kind::File {
            files.insert(e.path);
        }
        Ok(())
    })?;
    let mut moved = 0;
    for path in files {
        let e = Entry {
            path,
            kind: Kind::File,
            size: 0,
            mtime_ns: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            target: None,
        };
        let stored = renamed.path(names, &e.path);
        let staged = stage.root.join(std::ffi::OsStr::from_bytes(&stored));
        let home = prev_root.join(std::ffi::OsStr::from_bytes(&stored));
        // The plain file, or each part the home folder lacks (a move of parts cut short).
        let mut pieces: Vec<(std::path::PathBuf, std::path::PathBuf)> = Vec::new();
        if fs::symlink_metadata(&staged).is_ok_and(|m| m.is_file()) {
            pieces.push((staged.clone(), home.clone()));
        } else {
            for n in 1.. {
                let p = parts::part_path(&staged, n);
                let h = parts::part_path(&home, n);
                if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                    pieces.push((p, h));
                } else if fs::symlink_metadata(&h).is_err() {
                    break;
                }
            }
        }
        for (staged, home) in pieces {
            if fs::symlink_metadata(&home).is_ok() {
                continue;
            }
            if let Some(parent) = home.parent() {
                fs::create_dir_all(parent).at(parent, "recreating folder in previous snapshot")?;
            }
            rename_keeping_mtime(&staged, &home).at(&home, "moving back into previous snapshot")?;
            moved += 1;
        }
    }
    Ok(moved)
}

/// Whether every folder on the way to `rel` inside `root` is a real folder or missing (never
/// a symlink or a file): a backed-up symlink must never steer a move out of the snapshot,
/// and a path under a non-folder is not one the older snapshot can have.
fn real_folders_up_to(root: &Path, rel: &Path) -> bool {
    let mut at = root.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for c in parents {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(md) if md.file_type().is_dir() => {}
            Ok(_) => return false,
            Err(_) => return true, // missing from here down: create_dir_all makes real folders
        }
    }
    true
}

/// Deleting snapshot `doomed`: each file in it that `older` lacks moves there (older
/// snapshots found it through `doomed`, and will find it there first).
pub fn merge_into(doomed: &Path, older: &Path) -> Result<()> {
    // A file stored in parts moves whole or not at all: its first part decides for all,
    // and a later part follows when its first part already went (a merge cut short).
    let lacks = |r: &Path| -> bool {
        let name = r.as_os_str().as_bytes();
        let Some(base) = parts::base_of(name) else {
            return fs::symlink_metadata(older.join(r)).is_err()
                && parts::pieces(&older.join(r)).is_empty();
        };
        let base = Path::new(std::ffi::OsStr::from_bytes(base));
        let (first_here, first_there) = (
            parts::part_path(&doomed.join(base), 1),
            parts::part_path(&older.join(base), 1),
        );
        let free = |p: &Path| fs::symlink_metadata(p).is_err();
        free(&older.join(r))
            && free(&older.join(base))
            && if name.ends_with(b"%part001") {
                free(&first_there)
            } else {
                free(&first_here) || !free(&first_there)
            }
    };
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = doomed.join(&rel);
        let items = match fs::read_dir(&dir) {
            Ok(i) => i,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::Error::io(dir, "reading", e)),
        };
        for item in items {
            let item = item.at(&dir, "reading")?;
            let r = rel.join(item.file_name());
            let ft = item.file_type().at(item.path(), "reading")?;
            if ft.is_dir() {
                stack.push(r);
            } else if ft.is_file() && lacks(&r) && real_folders_up_to(older, &r) {
                let to = older.join(&r);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).at(parent, "creating folder")?;
                }
                rename_keeping_mtime(&item.path(), &to)
                    .at(&to, "handing a file to the older snapshot")?;
                if let Some(base) = parts::base_of(r.as_os_str().as_bytes()) {
                    // The rest of its parts go with it, whatever order the folder lists.
                    let base = Path::new(std::ffi::OsStr::from_bytes(base));
                    for n in 2.. {
                        let from = parts::part_path(&doomed.join(base), n);
                        if fs::symlink_metadata(&from).is_err() {
                            break;
                        }
                        let to = parts::part_path(&older.join(base), n);
                        if fs::symlink_metadata(&to).is_err() {
                            rename_keeping_mtime(&from, &to)
                                .at(&to, "handing a part to the older snapshot")?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    #[test]
    fn a_backed_up_symlink_in_the_older_snapshot_never_steers_a_hand_over_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let (doomed, older, outside) = (
            dir.path().join("B"),
            dir.path().join("A"),
            dir.path().join("outside"),
        );
        for d in [&doomed.join("d"), &doomed.join("e"), &older, &outside] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(doomed.join("d/x"), "from B").unwrap();
        fs::write(doomed.join("e/y"), "from B").unwrap();
        // In A, `d` was a symlink the machine had (to anywhere), and `e` a plain file.
        std::os::unix::fs::symlink(&outside, older.join("d")).unwrap();
        fs::write(older.join("e"), "a file").unwrap();
        fs::create_dir_all(doomed.join("new")).unwrap();
        fs::write(doomed.join("new/z"), "only in B").unwrap();
        merge_into(&doomed, &older).unwrap();
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written through the link"
        );
        assert_eq!(fs::read_to_string(older.join("e")).unwrap(), "a file");
        assert_eq!(
            fs::read_to_string(older.join("new/z")).unwrap(),
            "only in B",
            "real hand-over still works"
        );
    }

    #[test]
    fn parts_are_handed_over_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let (doomed, older) = (dir.path().join("B"), dir.path().join("A"));
        fs::create_dir_all(&doomed).unwrap();
        fs::create_dir_all(&older).unwrap();
        let part = |d: &Path, name: &str, n: u32| parts::part_path(&d.join(name), n);
        // Older lacks `f` in every form: all its parts move.
        for n in 1..=3 {
            fs::write(part(&doomed, "f", n), format!("f{n}")).unwrap();
        }
        // Older has its own plain `g`: none of the doomed one's parts go there.
        fs::write(older.join("g"), "own g").unwrap();
        fs::write(part(&doomed, "g", 1), "g1").unwrap();
        fs::write(part(&doomed, "g", 2), "g2").unwrap();
        // A hand-over cut short: part 1 of `h` already moved, part 2 follows.
        fs::write(part(&older, "h", 1), "h1").unwrap();
        fs::write(part(&doomed, "h", 2), "h2").unwrap();
        merge_into(&doomed, &older).unwrap();
        for n in 1..=3 {
            assert_eq!(
                fs::read_to_string(part(&older, "f", n)).unwrap(),
                format!("f{n}")
            );
        }
        assert!(!part(&older, "g", 1).exists() && !part(&older, "g", 2).exists());
        assert_eq!(fs::read_to_string(older.join("g")).unwrap(), "own g");
        assert_eq!(fs::read_to_string(part(&older, "h", 2)).unwrap(), "h2");
    }
}
