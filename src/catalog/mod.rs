//! The catalog: SQLite (WAL) on the backup disk. Runs with their counters and problems,
//! snapshots, and each snapshot's manifest. Every change is one transaction, so a kill -9
//! at any point leaves either the old or the new state.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::model::{Entry, FileProblem, Outcome, Stats};

pub mod copy;
mod dest;
mod history;
mod web;
pub use dest::StrategyInfo;
mod renamed;
mod schema;
mod snapshot_names;
mod verify;
mod writing;
pub use history::HostHistory;
use schema::{SCHEMA_V1, SCHEMA_VERSION};
pub use verify::{Damage, HashedFile, VerifyRun};
pub use web::RunDetail;

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
    /// Set where the disk holds a whole-file copy of this working catalog (see `copy`).
    copy: Option<copy::CopyBack>,
}

/// A snapshot as the catalog knows it.
#[derive(Clone, Debug)]
pub struct SnapshotRow {
    pub id: i64,
    pub host: String,
    pub name: String,
    pub published: bool,
    pub result: Outcome,
    pub created_ms: i64,
    pub duration_ms: i64,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub new_files: u64,
    pub new_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct RunRow {
    pub id: i64,
    pub host: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub state: String,
    pub message: Option<String>,
    pub warnings: u64,
    pub errors: u64,
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Catalog> {
        // SQLite's WAL is not for network filesystems (its shared memory is per machine);
        // davfs2 fails its maps now and then, so those get a rollback journal from the start.
        let journal = match path.parent().and_then(crate::dest::fsinfo::mount_of) {
            Some(m) if crate::dest::fsinfo::is_network(&m) => "DELETE",
            _ => "WAL",
        };
        let conn = match dest::open_connection(path, journal) {
            // WAL needs shared memory maps, which some FUSE disks (fusefat) cannot give.
            Err(Error::Catalog { source, .. }) if dest::is_shm_error(&source) => {
                dest::leave_wal(path)?;
                dest::open_connection(path, "DELETE")?
            }
            other => other?,
        };
        let mut c = Catalog {
            conn,
            path: path.to_path_buf(),
            copy: None,
        };
        c.migrate()?;
        Ok(c)
    }

    fn err(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> Error + Copy + '_ {
        err_at(&self.path, action)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.err("reading schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Other(format!(
                "catalog {} was written by a newer snapnest (schema {version}); upgrade snapnest",
                self.path.display()
            )));
        }
        if version < 1 {
            let tx = self
                .conn
                .transaction()
                .map_err(err_at(&self.path, "migrating"))?;
            tx.execute_batch(SCHEMA_V1)
                .and_then(|_| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
                .and_then(|_| tx.commit())
                .map_err(err_at(&self.path, "creating schema"))?;
        }
        // Content hashes and verify results: tables of their own, added to older catalogs.
        self.conn
            .execute_batch(verify::TABLES)
            .map_err(err_at(&self.path, "adding content-hash tables"))?;
        self.conn
            .execute_batch(snapshot_names::TABLE)
            .map_err(err_at(&self.path, "adding the snapshot name-rules table"))?;
        snapshot_names::add_trigger(&self.conn)
            .map_err(err_at(&self.path, "adding the snapshot name-rules trigger"))?;
        self.conn
            .execute_batch(renamed::TABLE)
            .map_err(err_at(&self.path, "adding the renamed-entries table"))?;
        Ok(())
    }

    pub fn set_storage_id(&self, id: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('storage_id', ?1)",
                [id],
            )
            .map_err(self.err("writing storage id"))?;
        Ok(())
    }

    pub fn storage_id(&self) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'storage_id'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err("reading storage id"))
    }

    /// Settle what a crash left behind for `host`: runs still "running" become "interrupted";
    /// a snapshot caught between catalog and rename is published if its folder made it,
    /// forgotten otherwise. `exists` tells whether a snapshot folder is on disk.
    pub fn recover(&mut self, host: &str, exists: impl Fn(&str) -> bool) -> Result<()> {
        // A manifest still being written belongs to a run that ended mid-way.
        self.abandon_writing(host)?;
        let pending: Vec<(i64, String, i64)> = {
            let mut st = self
                .conn
                .prepare("SELECT id, name, run_id FROM snapshots WHERE host = ?1 AND state = 'publishing'")
                .map_err(self.err("reading snapshots"))?;
            let rows = st
                .query_map([host], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(self.err("reading snapshots"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(self.err("reading snapshots"))?
        };
        let e = err_at(&self.path, "recovering after a crash");
        let tx = self.conn.transaction().map_err(e)?;
        for (id, name, run_id) in pending {
            if exists(&name) {
                tx.execute(
                    "UPDATE snapshots SET state = 'published' WHERE id = ?1",
                    [id],
                )
                .map_err(e)?;
                tx.execute(
                    "UPDATE runs SET state = (SELECT result FROM snapshots WHERE id = ?1), snapshot_id = ?1 WHERE id = ?2",
                    params![id, run_id],
                )
                .map_err(e)?;
            } else {
                tx.execute("DELETE FROM entries WHERE snapshot_id = ?1", [id])
                    .map_err(e)?;
                tx.execute("DELETE FROM snapshots WHERE id = ?1", [id])
                    .map_err(e)?;
            }
        }
        tx.execute(
            "UPDATE runs SET state = 'interrupted', message = 'interrupted (the process stopped before the run ended)' \
             WHERE host = ?1 AND state = 'running'",
            [host],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(())
    }

    pub fn begin_run(&self, host: &str, started_ms: i64) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs(host, started_ms, state) VALUES (?1, ?2, 'running')",
                params![host, started_ms],
            )
            .map_err(self.err("recording run start"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// End a run: its outcome, counters and per-file problems, in one transaction.
    pub fn finish_run(
        &mut self,
        run_id: i64,
        outcome: Outcome,
        stats: &Stats,
        message: Option<&str>,
        problems: &[FileProblem],
        finished_ms: i64,
    ) -> Result<()> {
        let e = err_at(&self.path, "recording run end");
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "UPDATE runs SET state = ?2, finished_ms = ?3, message = ?4, entries = ?5, files = ?6, bytes = ?7, \
             new_files = ?8, new_bytes = ?9, linked = ?10, resumed = ?11, skipped_special = ?12, excluded = ?13, \
             warnings = ?14, errors = ?15 WHERE id = ?1",
            params![
                run_id,
                outcome.as_str(),
                finished_ms,
                message,
                stats.entries as i64,
                stats.files as i64,
                stats.bytes as i64,
                stats.new_files as i64,
                stats.new_bytes as i64,
                stats.linked as i64,
                stats.resumed as i64,
                stats.skipped_special as i64,
                stats.excluded as i64,
                stats.warnings as i64,
                stats.errors as i64
            ],
        )
        .map_err(e)?;
        {
            let mut st = tx
                .prepare("INSERT INTO problems(run_id, path, action, message, severity) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(e)?;
            for p in problems {
                st.execute(params![
                    run_id,
                    p.path,
                    p.action,
                    p.message,
                    p.severity.as_str()
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// A run stopped on request: neither a failure (no backoff) nor a result.
    pub fn mark_interrupted(&self, run_id: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET state = 'interrupted' WHERE id = ?1",
                [run_id],
            )
            .map_err(self.err("recording run end"))?;
        Ok(())
    }

    /// The newest published snapshot of `host`: the base for linking.
    pub fn latest_snapshot(&self, host: &str) -> Result<Option<SnapshotRow>> {
        // The most recently published (highest id), not the highest name: names are
        // wall-clock stamps, and after the clock was set back the newest sorts first.
        Ok(self
            .snapshots(Some(host))?
            .into_iter()
            .filter(|s| s.published)
            .max_by_key(|s| s.id))
    }

    /// Snapshots oldest first, published or not; never one whose manifest is being written.
    pub fn snapshots(&self, host: Option<&str>) -> Result<Vec<SnapshotRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, host, name, state, result, created_ms, duration_ms, entries, files, bytes, new_files, new_bytes \
                 FROM snapshots WHERE (?1 IS NULL OR host = ?1) AND state != 'writing' ORDER BY host, name",
            )
            .map_err(self.err("reading snapshots"))?;
        let rows = st
            .query_map([host], |r| {
                Ok(SnapshotRow {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    name: r.get(2)?,
                    published: r.get::<_, String>(3)? == "published",
                    result: Outcome::parse(&r.get::<_, String>(4)?).unwrap_or(Outcome::Partial),
                    created_ms: r.get(5)?,
                    duration_ms: r.get(6)?,
                    entries: r.get::<_, i64>(7)? as u64,
                    files: r.get::<_, i64>(8)? as u64,
                    bytes: r.get::<_, i64>(9)? as u64,
                    new_files: r.get::<_, i64>(10)? as u64,
                    new_bytes: r.get::<_, i64>(11)? as u64,
                })
            })
            .map_err(self.err("reading snapshots"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.err("reading snapshots"))
    }

    pub fn last_run(&self, host: &str) -> Result<Option<RunRow>> {
        self.conn
            .query_row(
                "SELECT id, host, started_ms, finished_ms, state, message, warnings, errors FROM runs WHERE host = ?1 ORDER BY id DESC LIMIT 1",
                [host],
                |r| {
                    Ok(RunRow {
                        id: r.get(0)?,
                        host: r.get(1)?,
                        started_ms: r.get(2)?,
                        finished_ms: r.get(3)?,
                        state: r.get(4)?,
                        message: r.get(5)?,
                        warnings: r.get::<_, i64>(6)? as u64,
                        errors: r.get::<_, i64>(7)? as u64,
                    })
                },
            )
            .optional()
            .map_err(self.err("reading runs"))
    }

    pub fn problems(&self, run_id: i64) -> Result<Vec<FileProblem>> {
        let mut st = self
            .conn
            .prepare("SELECT path, action, message, severity FROM problems WHERE run_id = ?1 ORDER BY rowid")
            .map_err(self.err("reading problems"))?;
        let rows = st
            .query_map([run_id], |r| {
                let action: String = r.get(1)?;
                Ok(FileProblem {
                    path: r.get(0)?,
                    action: static_action(&action),
                    message: r.get(2)?,
                    severity: if r.get::<_, String>(3)? == "warning" {
                        crate::model::Severity::Warning
                    } else {
                        crate::model::Severity::Error
                    },
                })
            })
            .map_err(self.err("reading problems"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.err("reading problems"))
    }

    /// Record a snapshot about to be renamed into place, with its whole manifest, in one
    /// transaction. `dirty[i]` marks entries whose content may not match their metadata.
    /// Runs write theirs window by window (`start_snapshot`); tests build catalogs with this.
    #[cfg(test)]
    pub fn add_snapshot(
        &mut self,
        host: &str,
        name: &str,
        run_id: i64,
        result: Outcome,
        stats: &Stats,
        created_ms: i64,
        duration_ms: i64,
        entries: &[Entry],
        dirty: &[bool],
    ) -> Result<i64> {
        // One transaction, as ever: a crash leaves the snapshot with its whole manifest or nothing.
        let e = err_at(&self.path, "recording snapshot");
        let tx = self.conn.transaction().map_err(e)?;
        let id = writing::insert_writing(&tx, host, run_id, created_ms).map_err(e)?;
        writing::insert_rows(&tx, id, entries, dirty, None).map_err(e)?;
        writing::mark_finished(&tx, id, name, result, stats, duration_ms).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(id)
    }

    /// The snapshot's folder has its final name: it is now a good base for the next run.
    pub fn publish(&self, snapshot_id: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE snapshots SET state = 'published' WHERE id = ?1",
                [snapshot_id],
            )
            .map_err(self.err("publishing snapshot"))?;
        Ok(())
    }

    /// Visit a snapshot's manifest in path order (bytewise), with each entry's dirty flag,
    /// optionally only the entries at or below `prefix`.
    pub fn for_each_entry(
        &self,
        snapshot_id: i64,
        prefix: Option<&[u8]>,
        mut f: impl FnMut(Entry, bool) -> Result<()>,
    ) -> Result<()> {
        let mut st = self
            .conn
            .prepare(
                "SELECT path, kind, size, mtime_ns, mode, uid, gid, target, dirty FROM entries \
                 WHERE snapshot_id = ?1 AND (?2 IS NULL OR path = ?2 OR (path > ?3 AND path < ?4)) ORDER BY path",
            )
            .map_err(self.err("reading manifest"))?;
        // Children of `p` sort between `p/` and `p0` ('0' follows '/').
        let (lo, hi) = match prefix {
            Some(p) if !p.is_empty() => ([p, b"/"].concat(), [p, b"0"].concat()),
            _ => (Vec::new(), vec![0xff; 1]),
        };
        let prefix = prefix.filter(|p| !p.is_empty());
        let mut rows = st
            .query(params![snapshot_id, prefix, lo, hi])
            .map_err(self.err("reading manifest"))?;
        while let Some(r) = rows.next().map_err(self.err("reading manifest"))? {
            let read = || -> rusqlite::Result<(Entry, bool)> {
                Ok((web::entry(r)?, r.get::<_, i64>(8)? != 0))
            };
            let (entry, dirty) = read().map_err(self.err("reading manifest"))?;
            f(entry, dirty)?;
        }
        Ok(())
    }
}

/// Problems are recorded with a fixed set of action words; map stored text back to them.
fn static_action(s: &str) -> &'static str {
    const ACTIONS: &[&str] = &[
        "listing", "reading", "writing", "linking", "storing", "skipping",
    ];
    ACTIONS
        .iter()
        .copied()
        .find(|a| *a == s)
        .unwrap_or("processing")
}

/// Error mapper for one catalog action. A free function (not a method) so it can be used
/// while a transaction borrows the connection.
fn err_at<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(rusqlite::Error) -> Error + Copy + 'a {
    move |source| Error::Catalog {
        path: path.to_path_buf(),
        action,
        source,
    }
}
