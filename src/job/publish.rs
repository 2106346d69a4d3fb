//! Naming and publishing snapshots in `<storage>/<host>/`: the staging folder an interrupted
//! run resumes into, dated names, and the `latest` symlink, replaced atomically.

use std::fs;
use std::path::{Path, PathBuf};

use super::stage;
use crate::error::{IoContext, Result};
use crate::storage::sync_dir;

const STAGING_PREFIX: &str = ".incomplete-";

/// The newest interrupted run's staging folder (resume), or a new one.
pub fn staging_dir(host_dir: &Path) -> Result<(PathBuf, bool)> {
    if let Some(found) = find_staging(host_dir)? {
        return Ok((found, true));
    }
    let path = new_staging_path(host_dir);
    fs::create_dir(&path).at(&path, "creating staging folder")?;
    Ok((path, false))
}

/// Where a new staging folder goes (not created).
pub fn new_staging_path(host_dir: &Path) -> PathBuf {
    host_dir.join(format!("{STAGING_PREFIX}{}", stamp()))
}

/// The newest interrupted run's staging folder; older leftovers are removed.
pub fn find_staging(host_dir: &Path) -> Result<Option<PathBuf>> {
    let found: Vec<String> = fs::read_dir(host_dir)
        .at(host_dir, "reading host folder")?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(STAGING_PREFIX))
        .collect();
    // A publication by moves that was cut short is finished first (see `store::moves`).
    let mut unfinished = Vec::new();
    for n in found {
        if !crate::store::moves::finish_interrupted(&host_dir.join(&n))? {
            unfinished.push(n);
        }
    }
    let mut found = unfinished;
    found.sort();
    if let Some(newest) = found.pop() {
        // Older leftovers only cost space; the newest holds the most work.
        for old in found {
            let old = host_dir.join(old);
            if crate::dest::btrfs::is_subvolume(&old) {
                let _ = crate::dest::btrfs::delete_subvolume(&old);
            } else {
                let _ = stage::remove(&old);
            }
        }
        return Ok(Some(host_dir.join(newest)));
    }
    Ok(None)
}

/// Every staging folder in `host_dir`, oldest first, touching nothing (for readers).
pub fn staging_folders(host_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(host_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_string_lossy().starts_with(STAGING_PREFIX))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn stamp() -> String {
    chrono::Local::now().format("%Y-%m-%d_%H%M%S").to_string()
}

/// `YYYY-MM-DD_HHMMSS`, with a suffix if a snapshot of that second exists.
pub(super) fn snapshot_name(host_dir: &Path) -> String {
    let base = stamp();
    let mut name = base.clone();
    let mut n = 1;
    while fs::symlink_metadata(host_dir.join(&name)).is_ok() {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Repoint `<host>/latest` atomically: a new symlink renamed over the old one.
pub(super) fn point_latest(host_dir: &Path, name: &str) -> Result<()> {
    let tmp = host_dir.join(".latest.tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp).at(&tmp, "creating")?;
    let latest = host_dir.join("latest");
    fs::rename(&tmp, &latest).at(&latest, "updating")?;
    sync_dir(host_dir)
}
