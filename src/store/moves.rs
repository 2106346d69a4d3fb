//! Publishing a snapshot on a disk whose renamed folders lose what they hold (fusefat 1.0):
//! the final folder tree is made anew and every file and symlink is renamed into it (file
//! renames work there), then the emptied staging folders are removed.
//!
//! Promise: a crash at any point leaves each file either in the staging folder or in the
//! final one, never lost; the note `.snapnest-publish-to` in the staging folder names the
//! final folder, and `finish_interrupted` completes the move before anything else uses it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

const NOTE: &str = ".snapnest-publish-to";

/// Move everything in `staging` into the new folder `final_path` (same parent), file by file.
pub fn publish_by_moves(staging: &Path, final_path: &Path) -> Result<()> {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let note = staging.join(NOTE);
    let mut f = fs::File::create(&note).at(&note, "creating")?;
    io::Write::write_all(&mut f, name.as_bytes()).at(&note, "writing")?;
    f.sync_all().at(&note, "syncing")?;
    drop(f);
    move_all(staging, final_path)
}

/// A staging folder an interrupted publication left: finish it. Returns whether it was one.
pub fn finish_interrupted(staging: &Path) -> Result<bool> {
    let note = staging.join(NOTE);
    let name = match fs::read_to_string(&note) {
        Ok(n) if !n.is_empty() && !n.contains('/') => n,
        _ => return Ok(false),
    };
    let Some(host_dir) = staging.parent() else {
        return Ok(false);
    };
    move_all(staging, &host_dir.join(name))?;
    Ok(true)
}

/// Rename a file and give it its mtime back: fusefat stamps a renamed file with the time
/// of the rename.
pub fn rename_keeping_mtime(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(from)?;
    fs::rename(from, to)?;
    if !md.is_file() {
        return Ok(());
    }
    let ns = md.mtime() as i64 * 1_000_000_000 + md.mtime_nsec() as i64;
    crate::file_time::set_times(to, ns, crate::file_time::Follow::NoLinks)
}

fn move_all(staging: &Path, final_path: &Path) -> Result<()> {
    match fs::create_dir(final_path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(crate::Error::io(final_path, "creating snapshot folder", e))
        }
        _ => {}
    }
    // Folders in walk order, so they are removed deepest first afterwards.
    let mut folders: Vec<PathBuf> = vec![PathBuf::new()];
    let mut i = 0;
    while i < folders.len() {
        let rel = folders[i].clone();
        i += 1;
        let from_dir = staging.join(&rel);
        for item in fs::read_dir(&from_dir).at(&from_dir, "reading")? {
            let item = item.at(&from_dir, "reading")?;
            let r = rel.join(item.file_name());
            if rel.as_os_str().is_empty() && item.file_name() == NOTE {
                continue;
            }
            let to = final_path.join(&r);
            if item.file_type().at(item.path(), "reading")?.is_dir() {
                match fs::create_dir(&to) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(crate::Error::io(to, "creating folder", e))
                    }
                    _ => {}
                }
                folders.push(r);
            } else {
                rename_keeping_mtime(&item.path(), &to).at(&to, "moving into the snapshot")?;
            }
        }
    }
    crate::storage::sync_dir(final_path)?;
    for rel in folders.iter().skip(1).rev() {
        let d = staging.join(rel);
        fs::remove_dir(&d).at(&d, "removing emptied staging folder")?;
    }
    let note = staging.join(NOTE);
    fs::remove_file(&note).at(&note, "removing")?;
    fs::remove_dir(staging).at(staging, "removing emptied staging folder")?;
    if let Some(parent) = staging.parent() {
        crate::storage::sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_publication_is_finished_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, fin) = (dir.path().join(".incomplete-x"), dir.path().join("snap"));
        fs::create_dir_all(staging.join("a/b")).unwrap();
        fs::write(staging.join("a/b/f"), "f").unwrap();
        fs::write(staging.join("top"), "t").unwrap();
        // As if killed after the note and the first move.
        fs::write(staging.join(NOTE), "snap").unwrap();
        fs::create_dir(&fin).unwrap();
        fs::rename(staging.join("top"), fin.join("top")).unwrap();
        assert!(finish_interrupted(&staging).unwrap());
        assert!(!staging.exists());
        assert_eq!(fs::read_to_string(fin.join("a/b/f")).unwrap(), "f");
        assert_eq!(fs::read_to_string(fin.join("top")).unwrap(), "t");
        let other = dir.path().join(".incomplete-y");
        fs::create_dir(&other).unwrap();
        assert!(
            !finish_interrupted(&other).unwrap(),
            "no note: a plain resume"
        );
    }
}
