//! Getting files back: copy a path out of a snapshot into a folder, with the metadata the
//! manifest recorded (mode, owner when root, mtime in ns), symlinks as symlinks.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, SnapshotRow};
use crate::error::{Error, IoContext, Result};
use crate::job::stage::{CopyError, Stage};
use crate::model::{Entry, Kind};
use crate::storage::Storage;

#[derive(Debug, Default)]
pub struct Restored {
    pub snapshot: String,
    pub destination: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub folders: u64,
    pub symlinks: u64,
    pub skipped: u64,
}

/// The snapshot named `spec` (`latest`, a full name, or a unique prefix such as `2026-11-23`).
pub fn find_snapshot(catalog: &Catalog, host: &str, spec: &str) -> Result<SnapshotRow> {
    let all: Vec<SnapshotRow> = catalog
        .snapshots(Some(host))?
        .into_iter()
        .filter(|s| s.published)
        .collect();
    if all.is_empty() {
        return Err(Error::Other(format!("host {host} has no snapshots yet")));
    }
    if spec == "latest" {
        return Ok(all.last().cloned().expect("not empty"));
    }
    if let Some(s) = all.iter().find(|s| s.name == spec) {
        return Ok(s.clone());
    }
    let matches: Vec<&SnapshotRow> = all.iter().filter(|s| s.name.starts_with(spec)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::Other(format!(
            "host {host} has no snapshot {spec:?} (see `snapnest list {host}`)"
        ))),
        many => Err(Error::Other(format!(
            "{spec:?} matches {} snapshots of {host} ({} … {}); give more of the name",
            many.len(),
            many[0].name,
            many[many.len() - 1].name
        ))),
    }
}

/// Restore `path` (as it was on the source, e.g. `/home/alice/docs`) from `snapshot` into
/// `to/<last part of path>`. Refuses to overwrite anything that exists there.
pub fn restore(
    storage: &Storage,
    host: &str,
    spec: &str,
    path: &str,
    to: &Path,
) -> Result<Restored> {
    let catalog = storage.catalog()?;
    let snap = find_snapshot(&catalog, host, spec)?;
    let rel: Vec<u8> = path.trim_matches('/').as_bytes().to_vec();
    if rel.split(|&b| b == b'/').any(|p| p == b"." || p == b"..") {
        return Err(Error::Other(format!(
            "{path:?}: give the path without . or .. parts"
        )));
    }
    let base: Vec<u8> = rel.rsplit(|&b| b == b'/').next().unwrap_or(b"").to_vec();
    let mut entries: Vec<Entry> = Vec::new();
    catalog.for_each_entry(snap.id, Some(&rel), |mut e, _| {
        // Re-root under `to`: `/home/alice/docs/a` → `docs/a`.
        let rest = &e.path[rel.len()..];
        e.path = [&base[..], rest].concat();
        if e.path.first() == Some(&b'/') {
            e.path.remove(0);
        }
        entries.push(e);
        Ok(())
    })?;
    if entries.is_empty() {
        return Err(Error::Other(format!(
            "{path} is not in snapshot {} of {host}",
            snap.name
        )));
    }
    std::fs::create_dir_all(to).at(to, "creating restore folder")?;
    let destination = to.join(std::ffi::OsStr::from_bytes(&base));
    // Restoring a whole snapshot (`/`) goes into `to` itself, which must then be empty.
    let occupied = if base.is_empty() {
        std::fs::read_dir(to).at(to, "reading")?.next().is_some()
    } else {
        std::fs::symlink_metadata(&destination).is_ok()
    };
    if occupied {
        return Err(Error::Other(format!(
            "{} already exists; restore into an empty folder so nothing is overwritten",
            destination.display()
        )));
    }
    let stage = Stage {
        root: to.to_path_buf(),
        preserve_owner: rustix::process::geteuid().is_root(),
        keep: crate::job::stage::Keep::all(),
        renamed: Default::default(),
    };
    // Copy-with-history snapshots keep some files in later snapshots' folders.
    let locator = crate::strategy::Locator::new(storage, &catalog, host, &snap.name)?;
    let mut out = Restored {
        snapshot: snap.name.clone(),
        destination,
        ..Default::default()
    };
    let mut buf = vec![0u8; 1 << 20];
    for e in &entries {
        match e.kind {
            Kind::Dir => {
                stage.dir(e).at(stage.path(e), "creating folder")?;
                out.folders += 1;
            }
            Kind::File => {
                // The manifest's own entry: its path as the source had it.
                let mut stored = e.clone();
                stored.path = [&rel[..], &e.path[base.len()..]].concat();
                let src = locator
                    .dir()
                    .join(std::ffi::OsStr::from_bytes(&stored.path));
                let mut file = locator.open(&stored)?;
                match stage.write(e, &mut file, &mut buf, &mut |_| {}) {
                    Ok(n) => {
                        out.files += 1;
                        out.bytes += n;
                    }
                    Err(CopyError::Read(err)) => return Err(Error::io(src, "reading", err)),
                    Err(CopyError::Write(err)) => {
                        return Err(Error::io(stage.path(e), "writing", err))
                    }
                }
            }
            Kind::Symlink => {
                stage.symlink(e).at(stage.path(e), "creating symlink")?;
                out.symlinks += 1;
            }
            _ => out.skipped += 1,
        }
    }
    for e in entries.iter().rev().filter(|e| e.kind == Kind::Dir) {
        stage
            .finish_dir(e)
            .at(stage.path(e), "setting folder metadata")?;
    }
    Ok(out)
}
