//! Applying retention to the storage: which snapshots go (and why), for `snapnest prune` and
//! for the daemon after each good run. Decisions come from `retention`; this file only
//! gathers the inputs from the catalog and carries deletions out.

use chrono::{DateTime, Local, TimeZone, Utc};

use crate::config::Host;
use crate::daemon::deleter::{self, Doomed};
use crate::error::Result;
use crate::model::Outcome;
use crate::retention::{self, Snap, Verdict};
use crate::storage::Storage;

fn snaps(storage: &Storage, host: Option<&str>) -> Result<Vec<(String, Snap)>> {
    Ok(storage
        .catalog()?
        .snapshots(host)?
        .into_iter()
        .filter(|s| s.published)
        .map(|s| {
            let created = Utc
                .timestamp_millis_opt(s.created_ms)
                .single()
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            (
                s.host,
                Snap {
                    id: s.id,
                    name: s.name,
                    created,
                    good: s.result == Outcome::Good,
                },
            )
        })
        .collect())
}

/// Verdicts for one host's published snapshots, newest first.
pub fn plan_host(storage: &Storage, host: &Host, now: DateTime<Utc>) -> Result<Vec<Verdict>> {
    let list: Vec<Snap> = snaps(storage, Some(&host.name))?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    Ok(retention::plan(&list, &host.automation.keep, now, &Local))
}

/// The oldest snapshot that may go to make room, if any.
pub fn space_victim(storage: &Storage) -> Result<Option<(String, Snap)>> {
    let all = snaps(storage, None)?;
    Ok(retention::space_victims(&all).into_iter().next())
}

/// Why a host is not pruned now, if it is not.
pub fn hold_reason(storage: &Storage, host: &Host) -> Result<Option<String>> {
    if let Some(run) = storage.catalog()?.last_run(&host.name)? {
        if run.state == "failed" {
            return Ok(Some(format!(
                "its last run failed ({}); snapnest prunes only after a good run",
                run.message.unwrap_or_default()
            )));
        }
    }
    if host.automation.keep.is_empty() {
        return Ok(Some("no `keep` rules: every snapshot is kept".into()));
    }
    Ok(None)
}

/// Mark and delete now, in the foreground (`snapnest prune`).
pub fn delete_now(storage: &Storage, host: &str, v: &Verdict) -> Result<()> {
    if !storage.catalog()?.mark_deleting(v.id)? {
        return Err(crate::Error::Other(format!(
            "{host}/{}: no longer a published snapshot (deleted meanwhile?)",
            v.name
        )));
    }
    deleter::delete(
        storage,
        &Doomed {
            id: v.id,
            host: host.to_string(),
            name: v.name.clone(),
        },
    )
}
