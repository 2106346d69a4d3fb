//! Writing a snapshot's manifest a window at a time, so a run never holds its whole listing.
//! The snapshot row exists from the start in state 'writing', under a placeholder name unique
//! per run: no reader (list, web, verify, prune, the next run's base) ever sees it, and
//! `recover` drops it with all its rows. `finish_snapshot` turns it into what `add_snapshot`
//! leaves ('publishing'), so publishing and recovery after that work as before.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{err_at, web, Catalog};
use crate::error::{Error, Result};
use crate::model::{Entry, Outcome, Stats};

/// The state of a snapshot whose manifest is still being appended.
pub(super) const WRITING: &str = "writing";

/// Rows a cleanup deletes per transaction: a backup waiting for the catalog is never held
/// up for long, and a crash in between leaves an invisible snapshot the next recover finishes.
const CHUNK: i64 = 5000;

/// The range reads: index seeks on (snapshot_id, path), no sorting (a unit test checks the plan).
const ENTRIES_BETWEEN: &str =
    "SELECT path, kind, size, mtime_ns, mode, uid, gid, target, dirty FROM entries \
     WHERE snapshot_id = ?1 AND path >= ?2 AND path <= ?3 ORDER BY path";
/// Folders deepest first: the index read backwards, no sorting.
const DIRS_REV: &str =
    "SELECT path, kind, size, mtime_ns, mode, uid, gid, target, dirty FROM entries \
     WHERE snapshot_id = ?1 AND kind = 'd' ORDER BY path DESC";
const HASHES_BETWEEN: &str = "SELECT path, hash FROM file_hashes \
     WHERE snapshot_id = ?1 AND path >= ?2 AND path <= ?3 ORDER BY path";

/// The snapshot row of a run that is still writing its manifest (placeholder name).
pub(super) fn insert_writing(
    tx: &Transaction,
    host: &str,
    run_id: i64,
    created_ms: i64,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO snapshots(host, name, run_id, state, result, created_ms, duration_ms, entries, files, bytes, new_files, new_bytes) \
         VALUES (?1, ?2, ?3, 'writing', 'partial', ?4, 0, 0, 0, 0, 0, 0)",
        params![host, format!(".writing-{run_id}"), run_id, created_ms],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Manifest rows, and the hashes given, with one prepared statement each.
pub(super) fn insert_rows(
    tx: &Transaction,
    snapshot_id: i64,
    entries: &[Entry],
    dirty: &[bool],
    hashes: Option<&[Option<[u8; 32]>]>,
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO entries(snapshot_id, path, kind, size, mtime_ns, mode, uid, gid, target, dirty) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (entry, dirty) in entries.iter().zip(dirty) {
        st.execute(params![
            snapshot_id,
            entry.path,
            entry.kind.code().to_string(),
            entry.size as i64,
            entry.mtime_ns,
            entry.mode,
            entry.uid,
            entry.gid,
            entry.target,
            *dirty as i64
        ])?;
    }
    if let Some(hashes) = hashes {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO file_hashes(snapshot_id, path, hash) VALUES (?1, ?2, ?3)",
        )?;
        for (entry, hash) in entries.iter().zip(hashes) {
            if let Some(hash) = hash {
                st.execute(params![snapshot_id, entry.path, &hash[..]])?;
            }
        }
    }
    Ok(())
}

/// The manifest is complete: final name, result and stats; the run points at its snapshot.
/// False if `snapshot_id` was not being written.
pub(super) fn mark_finished(
    tx: &Transaction,
    snapshot_id: i64,
    name: &str,
    result: Outcome,
    stats: &Stats,
    duration_ms: i64,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE snapshots SET name = ?2, state = 'publishing', result = ?3, duration_ms = ?4, entries = ?5, \
         files = ?6, bytes = ?7, new_files = ?8, new_bytes = ?9 WHERE id = ?1 AND state = 'writing'",
        params![
            snapshot_id,
            name,
            result.as_str(),
            duration_ms,
            stats.entries as i64,
            stats.files as i64,
            stats.bytes as i64,
            stats.new_files as i64,
            stats.new_bytes as i64
        ],
    )?;
    if n == 1 {
        tx.execute(
            "UPDATE runs SET snapshot_id = ?1 WHERE id = (SELECT run_id FROM snapshots WHERE id = ?1)",
            [snapshot_id],
        )?;
    }
    Ok(n == 1)
}

/// Every entry comes after `last` (the snapshot's last row) and the one before it: the order
/// the manifest's readers (merge joins with the next listing) rely on.
fn check_order(last: Option<&[u8]>, entries: &[Entry]) -> std::result::Result<(), String> {
    let mut prev = last;
    for e in entries {
        if let Some(p) = prev {
            if p >= e.path.as_slice() {
                return Err(format!(
                    "manifest rows out of order: {:?} after {:?}",
                    String::from_utf8_lossy(&e.path),
                    String::from_utf8_lossy(p)
                ));
            }
        }
        prev = Some(&e.path);
    }
    Ok(())
}

impl Catalog {
    /// Begin the snapshot this run writes. Invisible to every reader (list, web, verify,
    /// prune, latest_snapshot, history…) and deleted by `recover` with all its rows until
    /// `finish_snapshot`.
    pub fn start_snapshot(&mut self, host: &str, run_id: i64, created_ms: i64) -> Result<i64> {
        let e = err_at(&self.path, "starting snapshot");
        let tx = self.conn.transaction().map_err(e)?;
        let id = insert_writing(&tx, host, run_id, created_ms).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(id)
    }

    /// Append manifest rows with their dirty flags and content hashes (None = not hashed) in
    /// one transaction. Paths sorted, each after every row appended before.
    pub fn append_entries(
        &mut self,
        snapshot_id: i64,
        entries: &[Entry],
        dirty: &[bool],
        hashes: &[Option<[u8; 32]>],
    ) -> Result<()> {
        if dirty.len() != entries.len() || hashes.len() != entries.len() {
            return Err(Error::Other(format!(
                "catalog {}: appending manifest rows: {} entries with {} dirty flags and {} hashes",
                self.path.display(),
                entries.len(),
                dirty.len(),
                hashes.len()
            )));
        }
        let e = err_at(&self.path, "appending manifest rows");
        let tx = self.conn.transaction().map_err(e)?;
        let state = snapshot_state(&tx, snapshot_id).map_err(e)?;
        if state.as_deref() != Some(WRITING) {
            return Err(Error::Other(format!(
                "catalog {}: appending manifest rows: snapshot {snapshot_id} is not being written ({})",
                self.path.display(),
                state.as_deref().unwrap_or("no such snapshot")
            )));
        }
        let last: Option<Vec<u8>> = tx
            .query_row(
                "SELECT path FROM entries WHERE snapshot_id = ?1 ORDER BY path DESC LIMIT 1",
                [snapshot_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        check_order(last.as_deref(), entries).map_err(|why| {
            Error::Other(format!(
                "catalog {}: appending to snapshot {snapshot_id}: {why}",
                self.path.display()
            ))
        })?;
        insert_rows(&tx, snapshot_id, entries, dirty, Some(hashes)).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// The manifest is complete: record the final name, result and stats; the snapshot is now
    /// in the state add_snapshot leaves it ('publishing'), so `publish` and `recover` work as
    /// before.
    pub fn finish_snapshot(
        &mut self,
        snapshot_id: i64,
        name: &str,
        result: Outcome,
        stats: &Stats,
        duration_ms: i64,
    ) -> Result<()> {
        let e = err_at(&self.path, "finishing snapshot");
        let tx = self.conn.transaction().map_err(e)?;
        if !mark_finished(&tx, snapshot_id, name, result, stats, duration_ms).map_err(e)? {
            return Err(Error::Other(format!(
                "catalog {}: finishing snapshot {name}: snapshot {snapshot_id} is not being written",
                self.path.display()
            )));
        }
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// Drop a snapshot still being written, with all its rows (a run that failed or crashed
    /// mid-manifest). Rows go in small transactions; the snapshot row last, so a crash in
    /// between leaves it invisible and for the next call. Any other snapshot is left alone.
    pub fn abandon_snapshot(&mut self, snapshot_id: i64) -> Result<()> {
        let e = err_at(&self.path, "dropping an unfinished snapshot");
        let state = snapshot_state(&self.conn, snapshot_id).map_err(e)?;
        if state.as_deref() != Some(WRITING) {
            return Ok(());
        }
        for table in ["entries", "file_hashes"] {
            let sql = format!(
                "DELETE FROM {table} WHERE snapshot_id = ?1 AND path IN \
                 (SELECT path FROM {table} WHERE snapshot_id = ?1 LIMIT ?2)"
            );
            while self
                .conn
                .execute(&sql, params![snapshot_id, CHUNK])
                .map_err(e)?
                > 0
            {}
        }
        let tx = self.conn.transaction().map_err(e)?;
        let has_strategy: bool = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'snapshot_strategy'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(e)?
            > 0;
        if has_strategy {
            tx.execute(
                "DELETE FROM snapshot_strategy WHERE snapshot_id = ?1",
                [snapshot_id],
            )
            .map_err(e)?;
        }
        // Triggers take its name rules, renamed entries and any hashes left with it.
        tx.execute(
            "DELETE FROM snapshots WHERE id = ?1 AND state = 'writing'",
            [snapshot_id],
        )
        .map_err(e)?;
        tx.execute(
            "UPDATE runs SET snapshot_id = NULL WHERE snapshot_id = ?1",
            [snapshot_id],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// Drop every snapshot of `host` still being written: their runs ended without a manifest.
    pub(super) fn abandon_writing(&mut self, host: &str) -> Result<()> {
        let ids: Vec<i64> = {
            let e = self.err("reading snapshots");
            let mut st = self
                .conn
                .prepare("SELECT id FROM snapshots WHERE host = ?1 AND state = 'writing'")
                .map_err(e)?;
            let rows = st.query_map([host], |r| r.get(0)).map_err(e)?;
            rows.collect::<rusqlite::Result<_>>().map_err(e)?
        };
        for id in ids {
            self.abandon_snapshot(id)?;
        }
        Ok(())
    }

    /// Like `for_each_entry`, for the rows with from <= path <= to (bytewise), in path order.
    pub fn for_each_entry_between(
        &self,
        snapshot_id: i64,
        from: &[u8],
        to: &[u8],
        f: impl FnMut(Entry, bool) -> Result<()>,
    ) -> Result<()> {
        self.entries_where(ENTRIES_BETWEEN, params![snapshot_id, from, to], f)
    }

    /// The snapshot's folders, deepest first (path order reversed: a folder's contents sort
    /// after it), for finishing folder metadata after their contents.
    pub fn for_each_dir_rev(
        &self,
        snapshot_id: i64,
        mut f: impl FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        self.entries_where(DIRS_REV, params![snapshot_id], |e, _| f(e))
    }

    /// Like `for_each_hash`, for the rows with from <= path <= to (bytewise).
    pub fn for_each_hash_between(
        &self,
        snapshot_id: i64,
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], [u8; 32]),
    ) -> Result<()> {
        let e = self.err("reading content hashes");
        let mut st = self.conn.prepare_cached(HASHES_BETWEEN).map_err(e)?;
        let mut rows = st.query(params![snapshot_id, from, to]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let path: Vec<u8> = r.get(0).map_err(e)?;
            let hash: Vec<u8> = r.get(1).map_err(e)?;
            if let Ok(h) = <[u8; 32]>::try_from(hash) {
                f(&path, h);
            }
        }
        Ok(())
    }

    fn entries_where(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        mut f: impl FnMut(Entry, bool) -> Result<()>,
    ) -> Result<()> {
        let e = self.err("reading manifest");
        let mut st = self.conn.prepare_cached(sql).map_err(e)?;
        let mut rows = st.query(params).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let entry = web::entry(r).map_err(e)?;
            let dirty = r.get::<_, i64>(8).map_err(e)? != 0;
            f(entry, dirty)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "writing_tests.rs"]
mod tests;

/// A snapshot's state, None if there is no such snapshot.
fn snapshot_state(
    conn: &rusqlite::Connection,
    snapshot_id: i64,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT state FROM snapshots WHERE id = ?1",
        [snapshot_id],
        |r| r.get(0),
    )
    .optional()
}
