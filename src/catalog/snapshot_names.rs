//! The name rules each snapshot was stored under. A re-probe may measure the disk
//! differently (another driver for the same exFAT or NTFS disk); a snapshot's files stay
//! where its own run put them, so reading one uses its own rules, never the current ones.
//! A table of its own, created when a catalog is opened: older catalogs need no migration.

use rusqlite::{params, OptionalExtension};

use super::Catalog;
use crate::error::Result;
use crate::store::names::NameRules;

/// Rows go with their snapshot (ids are reused after the newest row is deleted, and a
/// stale row would give a new snapshot old rules); rows left by catalogs made before the
/// trigger are dropped when the catalog opens.
pub(super) const TABLE: &str = "CREATE TABLE IF NOT EXISTS snapshot_names (
    snapshot_id INTEGER PRIMARY KEY,
    rules TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS snapshot_names_forget AFTER DELETE ON snapshots
BEGIN DELETE FROM snapshot_names WHERE snapshot_id = OLD.id; END;
DELETE FROM snapshot_names WHERE snapshot_id NOT IN (SELECT id FROM snapshots);";

impl Catalog {
    pub fn set_snapshot_names(&self, snapshot_id: i64, rules: &NameRules) -> Result<()> {
        let e = self.err("recording snapshot name rules");
        let json = serde_json::to_string(rules).expect("name rules serialise");
        self.conn
            .execute(
                "INSERT OR REPLACE INTO snapshot_names(snapshot_id, rules) VALUES (?1, ?2)",
                params![snapshot_id, json],
            )
            .map_err(e)?;
        Ok(())
    }

    /// The rules snapshot `snapshot_id` was stored under; for snapshots made before they
    /// were recorded, the disk's current ones (the only guess there is).
    pub fn snapshot_names(&self, snapshot_id: i64) -> Result<NameRules> {
        let e = self.err("reading snapshot name rules");
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT rules FROM snapshot_names WHERE snapshot_id = ?1",
                [snapshot_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        match json.and_then(|j| serde_json::from_str(&j).ok()) {
            Some(rules) => Ok(rules),
            None => self.name_rules(),
        }
    }
}
