//! What the catalog keeps about the destination: the probe's findings, the chosen strategy
//! with its reasons, and the strategy each snapshot was made with. In tables of their own
//! (created on first use), so older catalogs need no migration.

use rusqlite::{params, OptionalExtension};

use super::Catalog;
use crate::dest::probe::Findings;
use crate::error::Result;
use crate::strategy::Choice;

const TABLES: &str = "CREATE TABLE IF NOT EXISTS snapshot_strategy (
    snapshot_id INTEGER PRIMARY KEY,
    strategy TEXT NOT NULL
);";

/// The recorded strategy of the storage: its name and the probe's reasons.
#[derive(Clone, Debug)]
pub struct StrategyInfo {
    pub strategy: String,
    pub reasons: Vec<String>,
    pub filesystem: String,
}

/// A connection in `journal` mode ("WAL" where the disk allows: a crash loses at most the
/// last commits, never consistency), checked with a first read.
pub(super) fn open_connection(
    path: &std::path::Path,
    journal: &str,
) -> Result<rusqlite::Connection> {
    let err = |action| super::err_at(path, action);
    let conn = rusqlite::Connection::open(path).map_err(err("opening"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(err("configuring"))?;
    conn.pragma_update(None, "journal_mode", journal)
        .map_err(err("setting journal mode"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err("configuring"))?;
    // Manifests are read and written in path order, so a page cache larger than 512 KiB buys
    // little; SQLite's default (2 MB) was 6 % of a 100,000-file run's heap (massif).
    conn.pragma_update(None, "cache_size", -512)
        .map_err(err("configuring"))?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(err("reading"))?;
    Ok(conn)
}

pub(super) fn is_shm_error(e: &rusqlite::Error) -> bool {
    const SHMOPEN: i32 = 10 | (18 << 8);
    const SHMSIZE: i32 = 10 | (19 << 8);
    const SHMMAP: i32 = 10 | (21 << 8);
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.extended_code, SHMOPEN | SHMSIZE | SHMMAP))
}

/// Switch a WAL catalog to a rollback journal without shared memory (exclusive locking
/// reads a WAL database without it).
pub(super) fn leave_wal(path: &std::path::Path) -> Result<()> {
    let err = |action| super::err_at(path, action);
    let conn = rusqlite::Connection::open(path).map_err(err("opening"))?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(err("configuring"))?;
    conn.pragma_update(None, "journal_mode", "DELETE")
        .map_err(err("leaving WAL mode"))?;
    Ok(())
}

impl Catalog {
    fn meta_get(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err("reading destination facts"))
    }

    /// The findings of the last probe of this storage's disk.
    pub fn probe(&self) -> Result<Option<Findings>> {
        // A probe written by another version of snapnest may not parse: then there is no
        // usable probe, and the next run probes again and records its own.
        Ok(self
            .meta_get("probe")?
            .and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Record a probe and the strategy chosen from it, in one transaction.
    pub fn record_probe(&self, findings: &Findings, choice: &Choice) -> Result<()> {
        let json = serde_json::to_string(findings).expect("findings serialise");
        let reasons = choice.reasons.join("\n");
        let e = self.err("recording the probe");
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(e)?;
        let r = (|| {
            for (k, v) in [
                ("probe", json.as_str()),
                ("strategy", choice.strategy.name()),
                ("strategy_reasons", reasons.as_str()),
            ] {
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                    params![k, v],
                )?;
            }
            self.conn.execute_batch("COMMIT")
        })();
        if r.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        r.map_err(e)
    }

    /// How names are stored on this storage's disk (see `store::names::stored_path`): what
    /// the web page and restore need to find a manifest path on the disk.
    pub fn name_rules(&self) -> Result<crate::store::names::NameRules> {
        Ok(crate::store::names::NameRules::from_refused(
            &self.probe()?.map(|f| f.refused_bytes).unwrap_or_default(),
        ))
    }

    pub fn strategy_info(&self) -> Result<Option<StrategyInfo>> {
        let Some(strategy) = self.meta_get("strategy")? else {
            return Ok(None);
        };
        let reasons = self
            .meta_get("strategy_reasons")?
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let filesystem = self.probe()?.map(|f| f.filesystem).unwrap_or_default();
        Ok(Some(StrategyInfo {
            strategy,
            reasons,
            filesystem,
        }))
    }

    pub fn set_snapshot_strategy(&self, snapshot_id: i64, strategy: &str) -> Result<()> {
        let e = self.err("recording snapshot strategy");
        self.conn.execute_batch(TABLES).map_err(e)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO snapshot_strategy(snapshot_id, strategy) VALUES (?1, ?2)",
                params![snapshot_id, strategy],
            )
            .map_err(e)?;
        Ok(())
    }

    /// How a snapshot was made; None for snapshots older than strategies (hard links).
    pub fn snapshot_strategy(&self, snapshot_id: i64) -> Result<Option<String>> {
        let e = self.err("reading snapshot strategy");
        self.conn.execute_batch(TABLES).map_err(e)?;
        self.conn
            .query_row(
                "SELECT strategy FROM snapshot_strategy WHERE snapshot_id = ?1",
                [snapshot_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)
    }
}
