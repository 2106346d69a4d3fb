//! The name rules each snapshot was stored under. A re-probe may measure the disk
//! differently (another driver for the same exFAT or NTFS disk); a snapshot's files stay
//! where its own run put them, so reading one uses its own rules, never the current ones.
//! A table of its own, created when a catalog is opened: older catalogs need no migration.

use rusqlite::{params, OptionalExtension};

use super::Catalog;
use crate::error::Result;
use crate::store::names::NameRules;

pub(super) const TABLE: &str = "CREATE TABLE IF NOT EXISTS snapshot_names (
    snapshot_id INTEGER PRIMARY KEY,
    rules TEXT NOT NULL
);";

/// Rows go with their snapshot (ids are reused after the newest row is deleted, and a
/// stale row would give a new snapshot old rules). Catalogs made before the trigger drop
/// their leftover rows once, when it is added: every open writing would make readers wait
/// for a running backup's transaction.
pub(super) fn add_trigger(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'snapshot_names_forget'",
        [],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch(
            "BEGIN;
             CREATE TRIGGER IF NOT EXISTS snapshot_names_forget AFTER DELETE ON snapshots
             BEGIN DELETE FROM snapshot_names WHERE snapshot_id = OLD.id; END;
             DELETE FROM snapshot_names WHERE snapshot_id NOT IN (SELECT id FROM snapshots);
             COMMIT;",
        )?;
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog from before the trigger, with a row its pruned snapshot left: opened
    /// again, the row is gone and deleting a snapshot takes its row with it.
    #[test]
    fn rows_go_with_their_snapshot_also_in_older_catalogs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let count = |c: &Catalog| -> i64 {
            c.conn
                .query_row("SELECT count(*) FROM snapshot_names", [], |r| r.get(0))
                .unwrap()
        };
        {
            let c = Catalog::open(&path).unwrap();
            c.conn
                .execute_batch(
                    "DROP TRIGGER snapshot_names_forget;
                     INSERT INTO snapshots(id, host, name, run_id, state, result, created_ms,
                         duration_ms, entries, files, bytes, new_files, new_bytes)
                     VALUES (7, 'h', 's', 1, 'published', 'good', 0, 0, 0, 0, 0, 0, 0);",
                )
                .unwrap();
            c.set_snapshot_names(7, &NameRules::none()).unwrap();
            c.set_snapshot_names(3, &NameRules::none()).unwrap(); // pruned before
            assert_eq!(count(&c), 2);
        }
        let c = Catalog::open(&path).unwrap();
        assert_eq!(count(&c), 1, "the leftover row is dropped once");
        c.conn
            .execute("DELETE FROM snapshots WHERE id = 7", [])
            .unwrap();
        assert_eq!(
            count(&c),
            0,
            "the trigger deletes the row with its snapshot"
        );
    }
}
