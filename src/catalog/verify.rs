//! Content hashes (BLAKE3) of stored files, recorded at backup time, and what `verify` found
//! when it read them again. In tables of their own, created when a catalog is opened: older
//! catalogs gain them without touching their rows, and their snapshots read as "not hashed".

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{err_at, Catalog};
use crate::error::Result;

pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS file_hashes (
    snapshot_id INTEGER NOT NULL,
    path BLOB NOT NULL,
    hash BLOB NOT NULL,             -- BLAKE3 of the content as written to the disk
    verified_ms INTEGER,            -- last time verify read it; NULL: never
    PRIMARY KEY (snapshot_id, path)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS file_hashes_forget AFTER DELETE ON snapshots
BEGIN DELETE FROM file_hashes WHERE snapshot_id = OLD.id; END;
CREATE TABLE IF NOT EXISTS verify_runs (
    id INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    scope TEXT NOT NULL,
    sample TEXT,
    checked INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    damaged INTEGER NOT NULL DEFAULT 0,
    not_hashed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    message TEXT
);
CREATE TABLE IF NOT EXISTS verify_damage (
    run_id INTEGER NOT NULL,
    host TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    path BLOB NOT NULL,
    problem TEXT NOT NULL,          -- missing | differs | unreadable
    expected TEXT NOT NULL,
    found TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verify_damage_run ON verify_damage(run_id);
";

/// One file to check: which snapshot, its manifest path and its recorded hash.
#[derive(Clone, Debug)]
pub struct HashedFile {
    pub snapshot_id: i64,
    pub path: Vec<u8>,
    pub hash: [u8; 32],
    /// The manifest's size and mtime: a copy found in a later snapshot of a copy-with-history
    /// chain counts only if it is this version.
    pub size: u64,
    pub mtime_ns: i64,
}

/// A verify run as recorded.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyRun {
    pub id: i64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub scope: String,
    pub sample: Option<String>,
    pub checked: u64,
    pub bytes: u64,
    pub damaged: u64,
    pub not_hashed: u64,
    pub skipped: u64,
    pub message: Option<String>,
}

/// A damaged file as recorded.
#[derive(Clone, Debug, Serialize)]
pub struct Damage {
    pub host: String,
    pub snapshot: String,
    /// Manifest path, lossily as text (for people and JSON).
    pub path: String,
    pub problem: String,
    pub expected: String,
    pub found: String,
}

fn to_hash(v: Vec<u8>) -> Option<[u8; 32]> {
    v.try_into().ok()
}

impl Catalog {
    /// Record the content hashes of a snapshot being published (before its folder is renamed,
    /// so a crash in between leaves a snapshot that `recover` forgets with its hashes).
    pub fn set_hashes<'a>(
        &mut self,
        snapshot_id: i64,
        hashes: impl Iterator<Item = (&'a [u8], &'a [u8; 32])>,
    ) -> Result<()> {
        let e = err_at(&self.path, "recording content hashes");
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut st = tx
                .prepare("INSERT OR REPLACE INTO file_hashes(snapshot_id, path, hash) VALUES (?1, ?2, ?3)")
                .map_err(e)?;
            for (path, hash) in hashes {
                st.execute(params![snapshot_id, path, &hash[..]])
                    .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// Visit a snapshot's recorded hashes in path order (bytewise), like `for_each_entry`.
    pub fn for_each_hash(
        &self,
        snapshot_id: i64,
        mut f: impl FnMut(&[u8], [u8; 32]),
    ) -> Result<()> {
        let mut st = self
            .conn
            .prepare("SELECT path, hash FROM file_hashes WHERE snapshot_id = ?1 ORDER BY path")
            .map_err(self.err("reading content hashes"))?;
        let mut rows = st
            .query([snapshot_id])
            .map_err(self.err("reading content hashes"))?;
        while let Some(r) = rows.next().map_err(self.err("reading content hashes"))? {
            let path: Vec<u8> = r.get(0).map_err(self.err("reading content hashes"))?;
            let hash: Vec<u8> = r.get(1).map_err(self.err("reading content hashes"))?;
            if let Some(h) = to_hash(hash) {
                f(&path, h);
            }
        }
        Ok(())
    }

    /// Regular files of published snapshot `snapshot_id` without a recorded hash.
    pub fn unhashed_files(&self, snapshot_id: i64) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM entries e WHERE e.snapshot_id = ?1 AND e.kind = 'f' \
                 AND NOT EXISTS (SELECT 1 FROM file_hashes h WHERE h.snapshot_id = e.snapshot_id AND h.path = e.path)",
                [snapshot_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.err("reading content hashes"))
    }

    /// The hashed files of the given snapshots: all of them, or (`limit`) those verified
    /// longest ago first, never-verified before all others, so repeated sampled runs go
    /// round the whole store.
    pub fn hashed_files(&self, snapshots: &[i64], limit: Option<u64>) -> Result<Vec<HashedFile>> {
        let ids = snapshots
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT h.snapshot_id, h.path, h.hash, e.size, e.mtime_ns FROM file_hashes h \
             JOIN entries e ON e.snapshot_id = h.snapshot_id AND e.path = h.path \
             WHERE h.snapshot_id IN ({ids}) \
             ORDER BY h.verified_ms IS NOT NULL, h.verified_ms, h.snapshot_id, h.path LIMIT ?1"
        );
        let mut st = self
            .conn
            .prepare(&sql)
            .map_err(self.err("reading content hashes"))?;
        let limit = limit.map(|n| n as i64).unwrap_or(-1);
        let rows = st
            .query_map([limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(self.err("reading content hashes"))?;
        let mut out = Vec::new();
        for row in rows {
            let (snapshot_id, path, hash, size, mtime_ns) =
                row.map_err(self.err("reading content hashes"))?;
            if let Some(hash) = to_hash(hash) {
                out.push(HashedFile {
                    snapshot_id,
                    path,
                    hash,
                    size: size as u64,
                    mtime_ns,
                });
            }
        }
        // Snapshot then path order reads each folder together.
        out.sort_by(|a, b| (a.snapshot_id, &a.path).cmp(&(b.snapshot_id, &b.path)));
        Ok(out)
    }

    /// How many hashed files the given snapshots hold.
    pub fn count_hashed(&self, snapshots: &[i64]) -> Result<u64> {
        let ids = snapshots
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        self.conn
            .query_row(
                &format!("SELECT count(*) FROM file_hashes WHERE snapshot_id IN ({ids})"),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.err("reading content hashes"))
    }

    /// Remember that these files were read now (whatever was found: damage is in the report).
    pub fn mark_verified(&mut self, files: &[(i64, &[u8])], at_ms: i64) -> Result<()> {
        let e = err_at(&self.path, "recording verification");
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut st = tx
                .prepare(
                    "UPDATE file_hashes SET verified_ms = ?3 WHERE snapshot_id = ?1 AND path = ?2",
                )
                .map_err(e)?;
            for (id, path) in files {
                st.execute(params![id, path, at_ms]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// Whether snapshot `id` is still published (not being deleted, not forgotten).
    pub fn is_published(&self, snapshot_id: i64) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT state FROM snapshots WHERE id = ?1",
                [snapshot_id],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(self.err("reading snapshots"))?
            .as_deref()
            == Some("published"))
    }

    pub fn begin_verify(&self, scope: &str, sample: Option<&str>, started_ms: i64) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO verify_runs(started_ms, scope, sample) VALUES (?1, ?2, ?3)",
                params![started_ms, scope, sample],
            )
            .map_err(self.err("recording verify start"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// End a verify run with its counters and damaged files, in one transaction.
    pub fn finish_verify(&mut self, run: &VerifyRun, damage: &[(Vec<u8>, Damage)]) -> Result<()> {
        let e = err_at(&self.path, "recording verify end");
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "UPDATE verify_runs SET finished_ms = ?2, checked = ?3, bytes = ?4, damaged = ?5, not_hashed = ?6, \
             skipped = ?7, message = ?8 WHERE id = ?1",
            params![
                run.id,
                run.finished_ms,
                run.checked as i64,
                run.bytes as i64,
                run.damaged as i64,
                run.not_hashed as i64,
                run.skipped as i64,
                run.message
            ],
        )
        .map_err(e)?;
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO verify_damage(run_id, host, snapshot, path, problem, expected, found) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(e)?;
            for (path, d) in damage {
                st.execute(params![
                    run.id, d.host, d.snapshot, path, d.problem, d.expected, d.found
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// The newest finished verify run, with its damaged files.
    pub fn last_verify(&self) -> Result<Option<(VerifyRun, Vec<Damage>)>> {
        let run = self
            .conn
            .query_row(
                "SELECT id, started_ms, finished_ms, scope, sample, checked, bytes, damaged, not_hashed, skipped, message \
                 FROM verify_runs WHERE finished_ms IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(VerifyRun {
                        id: r.get(0)?,
                        started_ms: r.get(1)?,
                        finished_ms: r.get(2)?,
                        scope: r.get(3)?,
                        sample: r.get(4)?,
                        checked: r.get::<_, i64>(5)? as u64,
                        bytes: r.get::<_, i64>(6)? as u64,
                        damaged: r.get::<_, i64>(7)? as u64,
                        not_hashed: r.get::<_, i64>(8)? as u64,
                        skipped: r.get::<_, i64>(9)? as u64,
                        message: r.get(10)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("reading verify runs"))?;
        let Some(run) = run else { return Ok(None) };
        let mut st = self
            .conn
            .prepare(
                "SELECT host, snapshot, path, problem, expected, found FROM verify_damage WHERE run_id = ?1 \
                 ORDER BY rowid LIMIT 1000",
            )
            .map_err(self.err("reading verify runs"))?;
        let rows = st
            .query_map([run.id], |r| {
                Ok(Damage {
                    host: r.get(0)?,
                    snapshot: r.get(1)?,
                    path: format!("/{}", String::from_utf8_lossy(&r.get::<_, Vec<u8>>(2)?)),
                    problem: r.get(3)?,
                    expected: r.get(4)?,
                    found: r.get(5)?,
                })
            })
            .map_err(self.err("reading verify runs"))?;
        let damage = rows
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err("reading verify runs"))?;
        Ok(Some((run, damage)))
    }
}
