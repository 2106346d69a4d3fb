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

/// Move the previous snapshot's copy of unchanged `e` into the staging folder.
pub fn take(stage: &Stage, prev_root: &Path, e: &Entry) -> io::Result<Linked> {
    // Under the same name as in the previous snapshot (the job moves nothing else).
    let from = prev_root.join(std::ffi::OsStr::from_bytes(&stage.stored(&e.path)));
    let to = stage.path(e);
    match fs::symlink_metadata(&from) {
        Ok(md) if md.is_file() => {}
        // Already moved by an interrupted run, or lost: fetch it.
        _ => return Ok(Linked::No),
    }
    if fs::symlink_metadata(&to).is_ok() {
        crate::job::stage::remove(&to)?;
    }
    match fs::rename(&from, &to) {
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
        if fs::symlink_metadata(&home).is_err()
            && fs::symlink_metadata(&staged).is_ok_and(|m| m.is_file())
        {
            if let Some(parent) = home.parent() {
                fs::create_dir_all(parent).at(parent, "recreating folder in previous snapshot")?;
            }
            fs::rename(&staged, &home).at(&home, "moving back into previous snapshot")?;
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
            } else if ft.is_file()
                && fs::symlink_metadata(older.join(&r)).is_err()
                && real_folders_up_to(older, &r)
            {
                let to = older.join(&r);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).at(parent, "creating folder")?;
                }
                fs::rename(item.path(), &to).at(&to, "handing a file to the older snapshot")?;
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
}
