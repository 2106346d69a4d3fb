//! Resume cleanup for a listing too large for memory: the staging folder is walked in the
//! global bytewise order of its relative paths and merged against the sorted stored names.
//!
//! The walk keeps a min-heap of paths found but not handled yet: a folder's contents sort
//! after the folder, so popping the smallest and pushing a kept folder's contents visits
//! everything in order, holding only the contents of the folders being walked.
//!
//! Parts (`x%part001`) belong to the FILE `x`, which sorts before them, possibly with other
//! names in between (`x b`, `x!/…`). A name passed in `wanted` is remembered while it is a
//! prefix of the path being handled: every path between `x` and its parts starts with `x`,
//! so `x` is still remembered when they come, and the memory is one path's prefixes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{remove, Stage};
use crate::error::{Error, Result};

/// A path below the staging folder waiting to be handled: relative path, is a folder.
type Pending = Reverse<(Vec<u8>, bool)>;

/// The wanted names, checked for order: a name out of order would delete wanted work.
struct Wanted<'a> {
    iter: &'a mut dyn Iterator<Item = Result<(Vec<u8>, bool)>>,
    next: Option<(Vec<u8>, bool)>,
    last: Option<Vec<u8>>,
}

impl Wanted<'_> {
    fn advance(&mut self) -> Result<()> {
        self.next = match self.iter.next().transpose()? {
            Some((name, dir)) => {
                if let Some(last) = &self.last {
                    // A repeated name is harmless (the first decides); a smaller one is not.
                    if *last > name {
                        return Err(Error::Other(format!(
                            "cleaning up an interrupted run: wanted names out of order ({:?} after {:?})",
                            String::from_utf8_lossy(&name),
                            String::from_utf8_lossy(last)
                        )));
                    }
                }
                self.last = Some(name.clone());
                Some((name, dir))
            }
            None => None,
        };
        Ok(())
    }
}

impl Stage {
    /// remove_unlisted for a listing too large for memory: `wanted` yields (stored name, is
    /// folder) sorted by bytes, each once. Memory: the entries of the folders being walked,
    /// not the listing. Returns how many objects were removed.
    pub fn remove_unlisted_sorted(
        &self,
        wanted: &mut dyn Iterator<Item = Result<(Vec<u8>, bool)>>,
    ) -> Result<u64> {
        let mut wanted = Wanted {
            iter: wanted,
            next: None,
            last: None,
        };
        wanted.advance()?;
        let mut pending: BinaryHeap<Pending> = BinaryHeap::new();
        push_contents(&self.root, &[], &mut pending)?;
        // Wanted non-folders that are prefixes of the current path: the bases its parts need.
        let mut files: Vec<Vec<u8>> = Vec::new();
        let mut removed = 0;
        while let Some(Reverse((rel, is_dir))) = pending.pop() {
            files.retain(|f| rel.starts_with(f));
            let mut listed = None;
            while let Some((name, dir)) = wanted.next.take() {
                if name > rel {
                    wanted.next = Some((name, dir));
                    break;
                }
                let exact = name == rel;
                if exact {
                    listed = Some(dir);
                }
                if !dir && rel.starts_with(&name) {
                    files.push(name);
                }
                wanted.advance()?;
                if exact {
                    break;
                }
            }
            // A part of a listed file (never of a folder: `files` holds no folders).
            let listed = listed.or_else(|| {
                crate::store::parts::base_of(&rel)
                    .filter(|base| files.iter().any(|f| f == base))
                    .map(|_| false)
            });
            let path = self.root.join(std::ffi::OsStr::from_bytes(&rel));
            if listed != Some(is_dir) {
                remove(&path).map_err(|e| Error::io(&path, "removing unlisted leftover", e))?;
                removed += 1;
            } else if is_dir {
                // A crash after folder modes were applied can leave read-only folders.
                if self.keep.mode {
                    fs::set_permissions(&path, Permissions::from_mode(0o700))
                        .map_err(|e| Error::io(&path, "making writable", e))?;
                }
                push_contents(&path, &rel, &mut pending)?;
            }
        }
        Ok(removed)
    }
}

/// Queue the contents of folder `dir` (relative path `rel`, empty for the staging folder).
fn push_contents(dir: &Path, rel: &[u8], pending: &mut BinaryHeap<Pending>) -> Result<()> {
    let err = |e| Error::io(dir, "cleaning up interrupted run in", e);
    for item in fs::read_dir(dir).map_err(err)? {
        let item = item.map_err(err)?;
        let is_dir = item
            .file_type()
            .map_err(|e| Error::io(item.path(), "reading type of", e))?
            .is_dir();
        let name = item.file_name();
        let child = if rel.is_empty() {
            name.as_bytes().to_vec()
        } else {
            [rel, b"/", name.as_bytes()].concat()
        };
        pending.push(Reverse((child, is_dir)));
    }
    Ok(())
}

#[cfg(test)]
#[path = "stage_cleanup_tests.rs"]
mod tests;
