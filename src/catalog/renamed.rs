//! Where a snapshot stored a path under another name than its plain escape (case clashes on
//! case-insensitive disks, see `store::clash`): readers must open exactly that name, since
//! on such a disk the plain name may open the other file of the pair. One row per renamed
//! entry; a table of its own, created with its trigger when a catalog is opened (older
//! catalogs have none, and their snapshots renamed nothing).

use rusqlite::params;

use super::Catalog;
use crate::error::Result;
use crate::store::clash::Renamed;

pub(super) const TABLE: &str = "
CREATE TABLE IF NOT EXISTS snapshot_renamed (
    snapshot_id INTEGER NOT NULL,
    path BLOB NOT NULL,             -- the entry's path as the source has it
    stored BLOB NOT NULL,           -- its last component as stored on the disk
    PRIMARY KEY (snapshot_id, path)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS snapshot_renamed_forget AFTER DELETE ON snapshots
BEGIN DELETE FROM snapshot_renamed WHERE snapshot_id = OLD.id; END;
";

impl Catalog {
    /// Record the renamed entries of `snapshot_id` (replacing any rows a reused id left).
    pub fn set_snapshot_renamed(&self, snapshot_id: i64, renamed: &Renamed) -> Result<()> {
        let e = self.err("recording renamed entries");
        let tx = self.conn.unchecked_transaction().map_err(e)?;
        tx.execute(
            "DELETE FROM snapshot_renamed WHERE snapshot_id = ?1",
            [snapshot_id],
        )
        .map_err(e)?;
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO snapshot_renamed(snapshot_id, path, stored) VALUES (?1, ?2, ?3)",
                )
                .map_err(e)?;
            for (path, stored) in renamed.iter() {
                ins.execute(params![snapshot_id, path, stored]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// The entries `snapshot_id` stored under another name (empty for most snapshots).
    pub fn snapshot_renamed(&self, snapshot_id: i64) -> Result<Renamed> {
        let e = self.err("reading renamed entries");
        let mut q = self
            .conn
            .prepare_cached("SELECT path, stored FROM snapshot_renamed WHERE snapshot_id = ?1")
            .map_err(e)?;
        let rows = q
            .query_map([snapshot_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(e)?;
        let mut out = Renamed::default();
        for row in rows {
            let (path, stored): (Vec<u8>, Vec<u8>) = row.map_err(e)?;
            out.insert(path, stored);
        }
        Ok(out)
    }
}
