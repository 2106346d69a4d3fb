//! The listing's two whole-listing filters (`keep_well_formed`, `Rules::filter`) as filters
//! that take one entry at a time in path order, with the same results in the same order.
//!
//! Both rest on one fact of bytewise order: later paths can still lie inside folder `d` only
//! while the current path starts with `d` and the byte after it (if any) sorts at or before
//! `/` ("a", "a.txt", "a/b": '.' < '/'). Such "open" folders are prefixes of the current path
//! and of each other, so a stack holds them, and a folder leaves it for good once closed.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use crate::config::rules::{is_ancestor_or_self, parent};
use crate::config::Rules;
use crate::model::{Entry, FileProblem, Kind, Severity};

/// Whether a path at or after `p` can still be inside folder `d`.
fn still_open(d: &[u8], p: &[u8]) -> bool {
    p.starts_with(d) && p.get(d.len()).is_none_or(|&b| b <= b'/')
}

/// Drops entries whose parent is not a listed folder, as `keep_well_formed` does.
/// Memory: the accepted folders that are prefixes of the current path.
#[derive(Default)]
pub struct WellFormed {
    /// Accepted folders still open, each a prefix of the next.
    open: Vec<Vec<u8>>,
}

impl WellFormed {
    /// Whether `e` is kept; a refused entry adds its problem. Entries come sorted by path,
    /// each path once.
    pub fn check(&mut self, e: &Entry, problems: &mut Vec<FileProblem>) -> bool {
        while self.open.last().is_some_and(|d| !still_open(d, &e.path)) {
            self.open.pop();
        }
        let ok = match parent(&e.path) {
            // The snapshot root itself can only be a folder.
            None if e.path.is_empty() => e.kind == Kind::Dir,
            None => true,
            // A listed parent is a prefix of this path followed by '/': open, so here.
            Some(p) => self.open.iter().rev().any(|d| d == p),
        };
        if !ok {
            problems.push(FileProblem {
                path: e.display_path(),
                action: "listing",
                message: "refused: its parent is not a listed folder".into(),
                severity: Severity::Error,
            });
            return false;
        }
        if e.kind == Kind::Dir {
            self.open.push(e.path.clone());
        }
        true
    }
}

/// `Rules::filter` one entry at a time. An excluded folder is kept after all (bare) when an
/// included path lies inside it, which is known only when it closes; from the first such
/// undecided folder on, output waits.
/// Memory: the open folders' decisions, and the held output: only entries between an
/// undecided folder `d` and the end of `d`'s subtree that are kept or themselves undecided
/// folders (an excluded folder's excluded contents are dropped at once). Siblings that sort
/// between `d` and `d/` (`d.old/...`) are held until `d` is decided.
pub struct RulesStream<'a> {
    rules: &'a Rules,
    roots: &'a [Vec<u8>],
    /// Listed folders still open, each a prefix of the next.
    open: Vec<OpenDir>,
    /// Output waiting for the first undecided folder, in path order; `held[0]` is number
    /// `held_base` of all entries ever held.
    held: VecDeque<Held>,
    held_base: u64,
    excluded: u64,
}

struct OpenDir {
    path: Vec<u8>,
    /// The rules' decision, which its contents inherit.
    included: bool,
    /// Included, or excluded but holding an included path.
    kept: bool,
    /// Where it waits in `held` while excluded and not kept.
    held_at: Option<u64>,
}

enum Held {
    Kept(Entry),
    /// An excluded folder, kept only if an included path turns up inside it.
    Undecided(Entry),
    /// An excluded folder that closed with nothing included inside.
    Dropped,
}

impl<'a> RulesStream<'a> {
    pub fn new(rules: &'a Rules, roots: &'a [Vec<u8>]) -> RulesStream<'a> {
        RulesStream {
            rules,
            roots,
            open: Vec::new(),
            held: VecDeque::new(),
            held_base: 0,
            excluded: 0,
        }
    }

    /// Takes the next entry (sorted by path, each path once) and appends to `out` the
    /// entries that are now decided and kept, in path order.
    pub fn push(&mut self, e: Entry, out: &mut Vec<Entry>) {
        if self.rules.is_empty() {
            out.push(e);
            return;
        }
        while self
            .open
            .last()
            .is_some_and(|d| !still_open(&d.path, &e.path))
        {
            let closed = self.open.pop().expect("checked");
            self.close(closed);
        }
        let is_dir = e.kind == Kind::Dir;
        let is_root = self.roots.iter().any(|r| is_ancestor_or_self(&e.path, r));
        let parent_at = parent(&e.path).and_then(|p| self.find(p, self.open.len()));
        let included = is_root
            || self
                .rules
                .decide(&e.path, is_dir)
                .unwrap_or_else(|| parent_at.is_none_or(|i| self.open[i].included));
        if included {
            self.keep_ancestors(parent_at);
            if is_dir {
                self.open.push(OpenDir {
                    path: e.path.clone(),
                    included,
                    kept: true,
                    held_at: None,
                });
            }
            match self.held.is_empty() {
                true => out.push(e),
                false => self.held.push_back(Held::Kept(e)),
            }
        } else if is_dir {
            self.open.push(OpenDir {
                path: e.path.clone(),
                included,
                kept: false,
                held_at: Some(self.held_base + self.held.len() as u64),
            });
            self.held.push_back(Held::Undecided(e));
        } else {
            self.excluded += 1;
        }
        self.flush(out);
    }

    /// Flushes what was held; returns how many entries were excluded, as `Rules::filter`.
    pub fn finish(mut self, out: &mut Vec<Entry>) -> u64 {
        while let Some(closed) = self.open.pop() {
            self.close(closed);
        }
        self.flush(out);
        debug_assert!(self.held.is_empty(), "every undecided folder was open");
        self.excluded
    }

    /// Index in `open[..below]` of the folder `path`.
    fn find(&self, path: &[u8], below: usize) -> Option<usize> {
        self.open[..below].iter().rposition(|d| d.path == path)
    }

    /// Excluded ancestors become bare containers, up to the first kept or unlisted one.
    fn keep_ancestors(&mut self, mut at: Option<usize>) {
        while let Some(i) = at.filter(|&i| !self.open[i].kept) {
            let dir = &mut self.open[i];
            dir.kept = true;
            if let Some(n) = dir.held_at.take() {
                let slot = &mut self.held[(n - self.held_base) as usize];
                if let Held::Undecided(e) = std::mem::replace(slot, Held::Dropped) {
                    *slot = Held::Kept(e);
                }
            }
            at = parent(&self.open[i].path).and_then(|p| self.find(p, i));
        }
    }

    /// Nothing later lies inside `dir`: still undecided, it is excluded.
    fn close(&mut self, dir: OpenDir) {
        let Some(n) = dir.held_at.filter(|_| !dir.kept) else {
            return;
        };
        self.excluded += 1;
        self.held[(n - self.held_base) as usize] = Held::Dropped;
        // Nothing refers to a dropped slot: at the back they go at once (the usual case,
        // an excluded folder with excluded contents), so they do not pile up.
        while matches!(self.held.back(), Some(Held::Dropped)) {
            self.held.pop_back();
        }
    }

    fn flush(&mut self, out: &mut Vec<Entry>) {
        while let Some(front) = self.held.front() {
            if matches!(front, Held::Undecided(_)) {
                break;
            }
            if let Some(Held::Kept(e)) = self.held.pop_front() {
                out.push(e);
            }
            self.held_base += 1;
        }
    }
}
