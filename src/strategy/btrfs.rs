//! btrfs: the staging folder is a writable snapshot of the previous snapshot's subvolume,
//! so unchanged files are already there; the run rewrites what changed, removes what was
//! deleted, and the published snapshot is frozen read-only.

use std::path::{Path, PathBuf};

use crate::dest::btrfs;
use crate::error::{Error, Result};

/// Resume the newest interrupted staging subvolume, or snapshot `prev` (a fresh subvolume
/// when there is none, or when it is a plain folder left by another strategy).
pub fn staging(host_dir: &Path, prev: Option<&Path>) -> Result<(PathBuf, bool)> {
    if let Some(found) = crate::job::find_staging(host_dir)? {
        return Ok((found, true));
    }
    let path = crate::job::new_staging_path(host_dir);
    match prev.filter(|p| btrfs::is_subvolume(p)) {
        Some(prev) => {
            btrfs::snapshot(prev, &path, false)
                .map_err(|e| Error::io(&path, "making btrfs snapshot", e))?;
            Ok((path, true))
        }
        None => {
            btrfs::create_subvolume(&path)
                .map_err(|e| Error::io(&path, "creating btrfs subvolume", e))?;
            Ok((path, false))
        }
    }
}

/// A published snapshot can no longer change, not even by mistake.
pub fn freeze(snapshot: &Path) -> Result<()> {
    btrfs::set_read_only(snapshot).map_err(|e| Error::io(snapshot, "making snapshot read-only", e))
}
