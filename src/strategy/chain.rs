//! Where a snapshot's files are on the disk, for everything that reads them back (restore,
//! the web page's files and archives).
//!
//! A snapshot's file is in its own folder, or, when the run after it was a copy-with-history
//! run (which moves unchanged files out of its previous snapshot), in the first later folder
//! of that unbroken run of history snapshots that has it, or in the staging folder of the run
//! in progress (or interrupted) after the newest. A file found further along is another
//! snapshot's copy: it is used only if its size and mtime are the manifest entry's.
//! Every folder on the way is opened without following a symlink.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{openat, Mode, OFlags, CWD};

use super::Strategy;
use crate::catalog::{Catalog, SnapshotRow};
use crate::error::Result;
use crate::model::Entry;
use crate::store::clash::Renamed;
use crate::store::names::NameRules;
use crate::store::parts::{self, Joined};

/// One folder that may hold a snapshot's files, with the names its disk stored them under.
#[derive(Clone, Debug)]
struct Link {
    dir: PathBuf,
    names: NameRules,
    /// Entries this folder's snapshot stored under another name (case clashes).
    renamed: Renamed,
}

#[derive(Clone, Debug)]
pub struct Chain {
    /// The snapshot's own folder first, then where its files may have moved, oldest first.
    links: Vec<Link>,
    /// How far a stored mtime may be from the manifest's (the disk's mtime step); None
    /// where the disk does not keep the times snapnest sets.
    mtime_slack_ns: Option<i64>,
}

impl Chain {
    /// The chain of `snapshot` of `host`, whose folders live in `host_dir`.
    pub fn new(
        host_dir: &Path,
        catalog: &Catalog,
        host: &str,
        snapshot: &SnapshotRow,
    ) -> Result<Chain> {
        let mut links = vec![Link {
            dir: host_dir.join(&snapshot.name),
            names: catalog.snapshot_names(snapshot.id)?,
            renamed: catalog.snapshot_renamed(snapshot.id)?,
        }];
        // Publication order (id), never names: names are wall-clock stamps. Unpublished
        // rows count too: a run's folder has its final name a moment before the catalog
        // says so.
        let mut later: Vec<SnapshotRow> = catalog
            .snapshots(Some(host))?
            .into_iter()
            .filter(|s| s.id > snapshot.id)
            .collect();
        later.sort_by_key(|s| s.id);
        let mut reached_newest = true;
        for s in later {
            // Only a copy-with-history run takes files out of the snapshot before it.
            if catalog.snapshot_strategy(s.id)?.as_deref() != Some(Strategy::History.name()) {
                reached_newest = false;
                break;
            }
            links.push(Link {
                dir: host_dir.join(&s.name),
                names: catalog.snapshot_names(s.id)?,
                renamed: catalog.snapshot_renamed(s.id)?,
            });
        }
        if reached_newest {
            // A run in progress or interrupted may have taken files from the newest; it uses
            // the disk's current rules, and keeps the newest one's renamed entries (names are
            // stable across runs for what a run takes from the snapshot before it).
            let current = catalog.name_rules()?;
            let renamed = links.last().map(|l| l.renamed.clone()).unwrap_or_default();
            for dir in crate::job::staging_folders(host_dir) {
                links.push(Link {
                    dir,
                    names: current.clone(),
                    renamed: renamed.clone(),
                });
            }
        }
        let probe = catalog.probe()?;
        // A share that uploads after close (davfs2) hands back the server's upload time
        // once its cache is gone, never the time snapnest set: there only size can tell.
        let mtime_slack_ns = match &probe {
            Some(f) if !f.durable_on_close.ok => None,
            Some(f) => Some(f.mtime_step_ns.clamp(1, i64::MAX as u64) as i64),
            None => Some(2_000_000_000),
        };
        Ok(Chain {
            links,
            mtime_slack_ns,
        })
    }

    /// The snapshot's own folder, for messages.
    pub fn dir(&self) -> &Path {
        &self.links[0].dir
    }

    /// Open the stored file of manifest entry `e` (a regular file) for reading: its parts
    /// joined where it was stored in parts (`store::parts`).
    pub fn open(&self, e: &Entry) -> io::Result<Joined> {
        let mut last = io::Error::from(io::ErrorKind::NotFound);
        for (i, link) in self.links.iter().enumerate() {
            let stored = link.renamed.path(&link.names, &e.path);
            let f = match open_pieces(&link.dir, &stored) {
                Ok(f) => f,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    last = err;
                    continue;
                }
                Err(err) => return Err(err),
            };
            // Parts are whole only when their lengths add up (a move of parts cut short).
            let whole = !f.is_split() || f.len() == e.size;
            if whole && (i == 0 || self.is_version_of(&f, e)?) {
                return Ok(f);
            }
            // A later snapshot's own version of the path (it changed there): not this one.
            last = io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "only other versions are stored (first in {})",
                    link.dir.display()
                ),
            );
        }
        Err(last)
    }

    fn is_version_of(&self, f: &Joined, e: &Entry) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let md = f.first().metadata()?;
        let mtime = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
        let mtime_ok = match self.mtime_slack_ns {
            Some(slack) => (mtime - e.mtime_ns as i128).abs() <= slack as i128,
            None => true,
        };
        Ok(f.len() == e.size && mtime_ok)
    }
}

/// The plain stored file at `stored` below `dir`, else its parts, opened as one.
fn open_pieces(dir: &Path, stored: &[u8]) -> io::Result<Joined> {
    let rel = Path::new(std::ffi::OsStr::from_bytes(stored));
    match open_below(dir, rel) {
        Ok(f) => return Joined::new(vec![f]),
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        Err(_) => {}
    }
    let mut files = Vec::new();
    for n in 1.. {
        match open_below(dir, &parts::part_path(rel, n)) {
            Ok(f) => files.push(f),
            Err(err) if err.kind() == io::ErrorKind::NotFound => break,
            Err(err) => return Err(err),
        }
    }
    if files.is_empty() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    Joined::new(files)
}

/// Open a stored file for reading: every folder on the way and the file itself are opened
/// with O_NOFOLLOW, so a symlink anywhere (planted or recorded) is never followed out of
/// the store.
pub fn open_below(snapshot_dir: &Path, rel: &Path) -> io::Result<File> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = openat(CWD, snapshot_dir, dir_flags, Mode::empty())?;
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let std::path::Component::Normal(name) = part else {
            return Err(io::Error::other("unexpected path component"));
        };
        let last = i + 1 == parts.len();
        let flags = if last {
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK
        } else {
            dir_flags
        };
        dir = openat(&dir, *name, flags, Mode::empty())?;
    }
    let f = File::from(dir);
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}
