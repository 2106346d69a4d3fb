//! Folders on the box itself (a mounted share, a USB stick): the same engine, read with
//! plain system calls. Never follows a symlink and never opens anything but regular files.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::listing::{all_ancestors, snapshot_path};
use super::{Fetched, Listing, Throttle};
use crate::error::Result;
use crate::model::{Entry, FileProblem, Kind, Severity};

#[derive(Default)]
pub struct LocalSource;

impl LocalSource {
    pub fn new() -> LocalSource {
        LocalSource
    }

    pub fn list(&mut self, folders: &[String], listing: &mut Listing) -> Result<()> {
        // Parents are followed like the folders: `/home -> /usr/home` is stored as a folder.
        for anc in all_ancestors(folders) {
            match fs::metadata(&anc) {
                Ok(md) => {
                    push(listing, Path::new(&anc), &anc, &md);
                }
                Err(e) => listing
                    .problems
                    .push(problem(Path::new(&anc), "listing", &e)),
            };
        }
        for folder in folders {
            // A configured folder that is a symlink is backed up as the folder it points to.
            let md = match fs::metadata(folder) {
                Ok(md) => md,
                Err(e) => {
                    listing.problems.push(missing_folder(folder, &e));
                    continue;
                }
            };
            let mut stack = Vec::new();
            if push(listing, Path::new(folder), folder, &md) {
                stack.push(PathBuf::from(folder));
            }
            while let Some(dir) = stack.pop() {
                let rd = match fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) => {
                        listing.problems.push(problem(&dir, "listing", &e));
                        continue;
                    }
                };
                for item in rd {
                    let path = match item {
                        Ok(item) => item.path(),
                        Err(e) => {
                            listing.problems.push(problem(&dir, "listing", &e));
                            continue;
                        }
                    };
                    match fs::symlink_metadata(&path) {
                        Ok(md) => {
                            if push(listing, &path, folder, &md) {
                                stack.push(path);
                            }
                        }
                        Err(e) => listing.problems.push(problem(&path, "listing", &e)),
                    }
                }
            }
        }
        Ok(())
    }

    pub fn fetch(
        &mut self,
        files: &[&Entry],
        throttle: &mut Throttle,
        sink: &mut dyn FnMut(usize, Fetched<'_>) -> Result<()>,
    ) -> Result<()> {
        for (index, f) in files.iter().enumerate() {
            let abs = PathBuf::from(std::ffi::OsStr::from_bytes(&[b"/", &f.path[..]].concat()));
            match open_regular(&abs) {
                Ok(Some(mut file)) => {
                    let md = file.metadata().ok();
                    let size = md.as_ref().map(|m| m.len()).unwrap_or(f.size);
                    let owner = md.as_ref().map(|m| (m.uid(), m.gid()));
                    let mut limited = throttle.reader(&mut file).take(size);
                    sink(
                        index,
                        Fetched::Content {
                            reader: &mut limited,
                            size,
                            owner,
                        },
                    )?;
                }
                Ok(None) => sink(
                    index,
                    Fetched::Failed(FileProblem {
                        path: f.display_path(),
                        action: "reading",
                        message: "is no longer a regular file; skipped".into(),
                        severity: Severity::Warning,
                    }),
                )?,
                Err(e) => sink(index, Fetched::Failed(problem(&abs, "reading", &e)))?,
            }
        }
        Ok(())
    }
}

/// Open without following a final symlink and without blocking on a FIFO that took the
/// file's place; None when the object is no longer a regular file.
fn open_regular(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(file.metadata()?.file_type().is_file().then_some(file))
}

/// Add one listed object; true when it is a folder to descend into.
fn push(listing: &mut Listing, abs: &Path, folder: &str, md: &Metadata) -> bool {
    let rel = match snapshot_path(abs.as_os_str().as_bytes(), folder) {
        Ok(rel) => rel,
        Err(why) => {
            listing
                .problems
                .push(super::listing::refused(abs.as_os_str().as_bytes(), why));
            return false;
        }
    };
    let Some(kind) = Kind::from_mode(md.mode()) else {
        return false;
    };
    let target = if kind == Kind::Symlink {
        match fs::read_link(abs) {
            Ok(t) => Some(t.as_os_str().as_bytes().to_vec()),
            Err(e) => {
                listing.problems.push(problem(abs, "listing", &e));
                return false;
            }
        }
    } else {
        None
    };
    listing.entries.push(Entry {
        path: rel,
        kind,
        size: if kind == Kind::File { md.len() } else { 0 },
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        target,
    });
    kind == Kind::Dir
}

/// A configured folder that cannot be read is an error, not a vanished file.
fn missing_folder(folder: &str, e: &io::Error) -> FileProblem {
    FileProblem {
        path: folder.to_string(),
        action: "listing",
        message: format!("configured folder: {e}"),
        severity: Severity::Error,
    }
}

fn problem(path: &Path, action: &'static str, e: &io::Error) -> FileProblem {
    let vanished = e.kind() == io::ErrorKind::NotFound;
    FileProblem {
        path: path.to_string_lossy().into_owned(),
        action,
        message: if vanished {
            "vanished before it could be read".into()
        } else {
            e.to_string()
        },
        severity: if vanished {
            Severity::Warning
        } else {
            Severity::Error
        },
    }
}
