//! The listing as the job reads it: sorted, well formed and filtered by the host's rules, one
//! entry at a time, and joined window by window with the previous snapshot's manifest.

use crate::catalog::Catalog;
use crate::config::Host;
use crate::error::Result;
use crate::model::{Entry, FileProblem, Kind};

use super::sorted::{Sorted, SortedIter};
use super::stream_filters::{RulesStream, WellFormed};

/// One pass over the sorted listing: entries the snapshot may hold, in path order.
/// Memory: the open folders of the current path, and what the rules hold back while an
/// excluded folder's fate is open (see `RulesStream`).
pub struct Filtered<'a> {
    input: SortedIter<'a>,
    well: WellFormed,
    rules: Option<RulesStream<'a>>,
    ready: std::collections::VecDeque<Entry>,
    out: Vec<Entry>,
    /// Entries refused on the way (not well formed).
    pub problems: Vec<FileProblem>,
    /// Entries the rules left out; final once the pass has ended.
    pub excluded: u64,
}

impl<'a> Filtered<'a> {
    pub fn new(sorted: &'a Sorted, host: &'a Host, roots: &'a [Vec<u8>]) -> Result<Filtered<'a>> {
        Ok(Filtered {
            input: sorted.iter()?,
            well: WellFormed::default(),
            rules: Some(RulesStream::new(&host.rules, roots)),
            ready: Default::default(),
            out: Vec::new(),
            problems: Vec::new(),
            excluded: 0,
        })
    }
}

impl Iterator for Filtered<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            let rules = self.rules.as_mut()?;
            match self.input.next() {
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(e)) => {
                    if self.well.check(&e, &mut self.problems) {
                        rules.push(e, &mut self.out);
                    }
                }
                None => {
                    let rules = self.rules.take().expect("checked above");
                    self.excluded = rules.finish(&mut self.out);
                }
            }
            self.ready.extend(self.out.drain(..));
        }
    }
}

/// What the previous snapshot says about a window of the listing.
pub struct Joined {
    /// Unchanged regular files: shared with the previous snapshot, not fetched.
    pub unchanged: Vec<bool>,
    /// In the previous snapshot at all (for case-clash names).
    pub in_prev: Vec<bool>,
    /// Content hashes: the previous snapshot's for unchanged files, filled in as files are
    /// stored. One vector for old and new (33 B a file).
    pub hashes: Vec<Option<[u8; 32]>>,
}

/// Merge-join `entries` (sorted, one window) with the previous manifest `base`, stored
/// under the same name rules. Reads only the manifest rows in the window's path range.
pub fn join_prev(
    catalog: &Catalog,
    base: Option<i64>,
    entries: &[Entry],
    preserve_owner: bool,
) -> Result<Joined> {
    let n = entries.len();
    let mut joined = Joined {
        unchanged: vec![false; n],
        in_prev: vec![false; n],
        hashes: vec![None; n],
    };
    let (Some(base), Some(first), Some(last)) = (base, entries.first(), entries.last()) else {
        return Ok(joined);
    };
    let mut i = 0;
    catalog.for_each_entry_between(base, &first.path, &last.path, |old, dirty| {
        while i < n && entries[i].path < old.path {
            i += 1;
        }
        if i < n && entries[i].path == old.path {
            joined.in_prev[i] = true;
            joined.unchanged[i] =
                !dirty && old.kind == Kind::File && entries[i].same_as(&old, preserve_owner);
        }
        Ok(())
    })?;
    let mut i = 0;
    let (unchanged, hashes) = (&joined.unchanged, &mut joined.hashes);
    catalog.for_each_hash_between(base, &first.path, &last.path, |path, hash| {
        while i < n && entries[i].path.as_slice() < path {
            i += 1;
        }
        if i < n && entries[i].path == path && unchanged[i] {
            hashes[i] = Some(hash);
        }
    })?;
    Ok(joined)
}
