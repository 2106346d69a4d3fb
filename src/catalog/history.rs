//! What the daemon and the prune command ask of the catalog: a host's recent history
//! (for scheduling and backoff) and the two-step forgetting of pruned snapshots.

use rusqlite::{params, OptionalExtension};

use super::{err_at, Catalog, RunRow};
use crate::error::Result;

/// The part of a host's history that decides when it runs next.
#[derive(Clone, Debug, Default)]
pub struct HostHistory {
    /// Start of the newest run that published a snapshot (good or partial).
    pub last_good_started_ms: Option<i64>,
    /// End of that run.
    pub last_good_finished_ms: Option<i64>,
    /// The newest run of any kind.
    pub last_run: Option<RunRow>,
    /// Failed runs since the last good one; interrupted runs are not failures.
    pub failures: u32,
}

impl Catalog {
    pub fn host_history(&self, host: &str) -> Result<HostHistory> {
        let e = self.err("reading runs");
        let good: Option<(i64, Option<i64>, i64)> = self
            .conn
            .query_row(
                "SELECT started_ms, finished_ms, id FROM runs WHERE host = ?1 AND state IN ('good', 'partial') \
                 ORDER BY id DESC LIMIT 1",
                [host],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(e)?;
        let failures: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM runs WHERE host = ?1 AND state = 'failed' AND id > ?2",
                params![host, good.map_or(0, |g| g.2)],
                |r| r.get(0),
            )
            .map_err(e)?;
        Ok(HostHistory {
            last_good_started_ms: good.map(|g| g.0),
            last_good_finished_ms: good.and_then(|g| g.1),
            last_run: self.last_run(host)?,
            failures: failures.min(u32::MAX as i64) as u32,
        })
    }

    /// Step one of forgetting a snapshot: from now on it is neither listed nor linked from.
    /// Its folder may still exist until `forget_snapshot`. False: it was not published (any
    /// more), so nobody may delete it on the strength of this call.
    pub fn mark_deleting(&self, snapshot_id: i64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE snapshots SET state = 'deleting' WHERE id = ?1 AND state = 'published'",
                [snapshot_id],
            )
            .map_err(self.err("marking snapshot for deletion"))?;
        Ok(n == 1)
    }

    /// Whether snapshot `id` is `host`/`name` and marked `deleting`: the deleter's last check
    /// before it removes a folder, so a swapped disk or a stale queue never costs a snapshot.
    pub fn is_deleting(&self, snapshot_id: i64, host: &str, name: &str) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM snapshots WHERE id = ?1 AND host = ?2 AND name = ?3 \
                 AND state = 'deleting'",
                rusqlite::params![snapshot_id, host, name],
                |r| r.get(0),
            )
            .map_err(self.err("reading snapshots"))?;
        Ok(n == 1)
    }

    /// Snapshots marked for deletion whose removal has not finished: (id, host, name).
    pub fn deleting(&self) -> Result<Vec<(i64, String, String)>> {
        let e = self.err("reading snapshots");
        let mut st = self
            .conn
            .prepare("SELECT id, host, name FROM snapshots WHERE state = 'deleting' ORDER BY id")
            .map_err(e)?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(e)
    }

    /// Step two, once the folder is gone: drop the manifest in small transactions, so a
    /// backup waiting for the catalog is never held up for long.
    pub fn forget_snapshot(&mut self, snapshot_id: i64) -> Result<()> {
        let e = err_at(&self.path, "forgetting snapshot");
        loop {
            let n = self
                .conn
                .execute(
                    "DELETE FROM entries WHERE snapshot_id = ?1 AND path IN \
                     (SELECT path FROM entries WHERE snapshot_id = ?1 LIMIT 5000)",
                    [snapshot_id],
                )
                .map_err(e)?;
            if n == 0 {
                break;
            }
        }
        self.conn
            .execute("DELETE FROM snapshots WHERE id = ?1", [snapshot_id])
            .map_err(e)?;
        Ok(())
    }
}
