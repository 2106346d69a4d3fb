//! What the catalog keeps about the destination: the probe's findings, the chosen strategy
//! with its reasons, and the strategy each snapshot was made with. In tables of their own
//! (created on first use), so older catalogs need no migration.

use rusqlite::{params, OptionalExtension};

use super::Catalog;
use crate::dest::probe::Findings;
use crate::error::{Error, Result};
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

impl Catalog {
    fn meta_get(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err("reading destination facts"))
    }

    /// The findings of the last probe of this storage's disk.
    pub fn probe(&self) -> Result<Option<Findings>> {
        match self.meta_get("probe")? {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| {
                Error::Other(format!(
                    "catalog {}: recorded probe is unreadable: {e}",
                    self.path.display()
                ))
            }),
        }
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
