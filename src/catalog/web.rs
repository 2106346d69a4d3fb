//! What the status page asks of the catalog: one manifest entry, a folder's direct children
//! (by index seeks, not by reading the whole subtree), entries in pages for archives, and
//! a host's runs with their counters.

use rusqlite::{params, OptionalExtension, Row};

use super::Catalog;
use crate::error::Result;
use crate::model::{Entry, Kind};

/// One run with the counters the history table shows.
#[derive(Clone, Debug)]
pub struct RunDetail {
    pub id: i64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// running | good | partial | failed | interrupted
    pub state: String,
    pub message: Option<String>,
    pub files: u64,
    pub bytes: u64,
    pub new_files: u64,
    pub new_bytes: u64,
    pub warnings: u64,
    pub errors: u64,
    /// The snapshot it published, if it still exists.
    pub snapshot: Option<String>,
}

const ENTRY_COLS: &str = "path, kind, size, mtime_ns, mode, uid, gid, target";

/// A manifest row selected as `ENTRY_COLS` (first) → Entry; the one place rows become entries.
pub(super) fn entry(r: &Row) -> rusqlite::Result<Entry> {
    let kind: String = r.get(1)?;
    Ok(Entry {
        path: r.get(0)?,
        kind: kind
            .chars()
            .next()
            .and_then(Kind::from_code)
            .unwrap_or(Kind::File),
        size: r.get::<_, i64>(2)? as u64,
        mtime_ns: r.get(3)?,
        mode: r.get(4)?,
        uid: r.get(5)?,
        gid: r.get(6)?,
        target: r.get(7)?,
    })
}

/// The exclusive upper bound of everything under `dir` (children sort between `dir/` and
/// `dir0`); the whole manifest for the root.
fn subtree(dir: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if dir.is_empty() {
        (Vec::new(), vec![0xff; 8])
    } else {
        ([dir, b"/"].concat(), [dir, b"0"].concat())
    }
}

impl Catalog {
    pub fn entry(&self, snapshot_id: i64, path: &[u8]) -> Result<Option<Entry>> {
        self.conn
            .query_row(
                &format!("SELECT {ENTRY_COLS} FROM entries WHERE snapshot_id = ?1 AND path = ?2"),
                params![snapshot_id, path],
                entry,
            )
            .optional()
            .map_err(self.err("reading manifest"))
    }

    /// Whether anything is recorded below `dir` (a folder the manifest lists only implicitly).
    pub fn has_children(&self, snapshot_id: i64, dir: &[u8]) -> Result<bool> {
        let (lo, hi) = subtree(dir);
        self.conn
            .query_row(
                "SELECT 1 FROM entries WHERE snapshot_id = ?1 AND path >= ?2 AND path < ?3 LIMIT 1",
                params![snapshot_id, lo, hi],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(self.err("reading manifest"))
    }

    /// The direct children of `dir` in name order, at most `limit` (and whether more exist).
    /// A parent folder the manifest does not list itself shows up as a plain folder.
    pub fn children(
        &self,
        snapshot_id: i64,
        dir: &[u8],
        limit: usize,
    ) -> Result<(Vec<Entry>, bool)> {
        let e = self.err("reading manifest");
        let (lo, hi) = subtree(dir);
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {ENTRY_COLS} FROM entries WHERE snapshot_id = ?1 AND path >= ?2 AND path < ?3 \
                 ORDER BY path LIMIT 1"
            ))
            .map_err(e)?;
        let mut out: Vec<Entry> = Vec::new();
        let mut listed_dirs: std::collections::HashSet<Vec<u8>> = Default::default();
        let mut from = lo.clone();
        loop {
            let Some(row) = st
                .query_row(params![snapshot_id, from, hi], entry)
                .optional()
                .map_err(e)?
            else {
                return Ok((out, false));
            };
            let rest = &row.path[lo.len()..];
            match rest.iter().position(|&b| b == b'/') {
                None => {
                    if out.len() >= limit {
                        return Ok((out, true));
                    }
                    // A direct child; the next candidate is anything after it.
                    from = [&row.path[..], b"\0"].concat();
                    if row.kind == Kind::Dir {
                        listed_dirs.insert(row.path.clone());
                    }
                    out.push(row);
                }
                Some(i) => {
                    // Inside a child folder: skip its subtree. A folder without an entry of its
                    // own is shown as a plain folder.
                    let child = [&lo[..], &rest[..i]].concat();
                    from = [&child[..], b"0"].concat();
                    // Its own entry may be a few rows back: `c-1` and `c.txt` sort between
                    // `c` and `c/x`.
                    if listed_dirs.contains(&child) {
                        continue;
                    }
                    if out.len() >= limit {
                        return Ok((out, true));
                    }
                    out.push(Entry {
                        path: child,
                        kind: Kind::Dir,
                        size: 0,
                        mtime_ns: 0,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        target: None,
                    });
                }
            }
        }
    }

    /// Up to `limit` entries at or below `prefix`, in path order, after `after` (exclusive):
    /// archives page through a big tree without holding a read transaction open.
    pub fn entries_page(
        &self,
        snapshot_id: i64,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let e = self.err("reading manifest");
        let (lo, hi) = subtree(prefix);
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {ENTRY_COLS} FROM entries WHERE snapshot_id = ?1 \
                 AND ((?2 IS NULL AND path = ?3) OR (path >= ?4 AND path < ?5 AND (?2 IS NULL OR path > ?2))) \
                 ORDER BY path LIMIT ?6"
            ))
            .map_err(e)?;
        let rows = st
            .query_map(
                params![snapshot_id, after, prefix, lo, hi, limit as i64],
                entry,
            )
            .map_err(e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(e)
    }

    /// A host's newest runs, newest first.
    pub fn runs(&self, host: &str, limit: usize) -> Result<Vec<RunDetail>> {
        let e = self.err("reading runs");
        let mut st = self
            .conn
            .prepare(
                "SELECT r.id, r.started_ms, r.finished_ms, r.state, r.message, r.files, r.bytes, r.new_files, \
                 r.new_bytes, r.warnings, r.errors, s.name FROM runs r \
                 LEFT JOIN snapshots s ON s.id = r.snapshot_id AND s.state = 'published' \
                 WHERE r.host = ?1 ORDER BY r.id DESC LIMIT ?2",
            )
            .map_err(e)?;
        let rows = st
            .query_map(params![host, limit as i64], |r| {
                Ok(RunDetail {
                    id: r.get(0)?,
                    started_ms: r.get(1)?,
                    finished_ms: r.get(2)?,
                    state: r.get(3)?,
                    message: r.get(4)?,
                    files: r.get::<_, i64>(5)? as u64,
                    bytes: r.get::<_, i64>(6)? as u64,
                    new_files: r.get::<_, i64>(7)? as u64,
                    new_bytes: r.get::<_, i64>(8)? as u64,
                    warnings: r.get::<_, i64>(9)? as u64,
                    errors: r.get::<_, i64>(10)? as u64,
                    snapshot: r.get(11)?,
                })
            })
            .map_err(e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, Stats};

    fn entry(path: &str, kind: Kind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            size: 1,
            mtime_ns: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            target: None,
        }
    }

    /// A manifest where siblings sort between a folder and its contents (`c-1`, `c.txt`
    /// come after `c` but before `c/x`), and one folder (`n`) has no entry of its own.
    fn catalog() -> (tempfile::TempDir, Catalog, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let run = c.begin_run("h", 0).unwrap();
        let mut entries = vec![
            entry("home", Kind::Dir),
            entry("home/c", Kind::Dir),
            entry("home/c-1", Kind::File),
            entry("home/c.txt", Kind::File),
            entry("home/c/x", Kind::File),
            entry("home/c/y", Kind::Dir),
            entry("home/c/y/z", Kind::File),
            entry("home/d", Kind::Symlink),
            entry("home/n/deep/file", Kind::File),
            entry("homes", Kind::File),
        ];
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let dirty = vec![false; entries.len()];
        let id = c
            .add_snapshot(
                "h",
                "s1",
                run,
                Outcome::Good,
                &Stats::default(),
                0,
                0,
                &entries,
                &dirty,
            )
            .unwrap();
        (dir, c, id)
    }

    fn names(v: &[Entry]) -> Vec<String> {
        v.iter()
            .map(|e| format!("{}:{}", String::from_utf8_lossy(&e.path), e.kind.code()))
            .collect()
    }

    #[test]
    fn children_are_direct_only_in_name_order() {
        let (_d, c, id) = catalog();
        let (root, more) = c.children(id, b"", 100).unwrap();
        assert_eq!(names(&root), ["home:d", "homes:f"]);
        assert!(!more);
        let (home, _) = c.children(id, b"home", 100).unwrap();
        assert_eq!(
            names(&home),
            [
                "home/c:d",
                "home/c-1:f",
                "home/c.txt:f",
                "home/d:l",
                "home/n:d"
            ]
        );
        let (cc, _) = c.children(id, b"home/c", 100).unwrap();
        assert_eq!(names(&cc), ["home/c/x:f", "home/c/y:d"]);
        let (two, more) = c.children(id, b"home", 2).unwrap();
        assert_eq!(two.len(), 2);
        assert!(more);
        assert!(c.has_children(id, b"home/n").unwrap());
        assert!(!c.has_children(id, b"home/c-1").unwrap());
    }

    #[test]
    fn pages_cover_a_subtree_exactly_once() {
        let (_d, c, id) = catalog();
        let mut all = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = c.entries_page(id, b"home/c", after.as_deref(), 2).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.path.clone());
            all.extend(page);
        }
        assert_eq!(
            names(&all),
            ["home/c:d", "home/c/x:f", "home/c/y:d", "home/c/y/z:f"]
        );
    }
}
