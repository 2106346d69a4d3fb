//! What `status`, the web page and `/metrics` say about verification: one summary, so the
//! three never disagree.

use serde::Serialize;

use super::schedule::Verifying;
use crate::catalog::{Catalog, Damage, VerifyRun};

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyStatus {
    /// The newest finished verify run.
    pub last: Option<VerifyRun>,
    /// Its damaged files (at most 1000).
    pub damage: Vec<Damage>,
    /// A scheduled verify in progress.
    pub running: Option<Verifying>,
}

impl VerifyStatus {
    pub fn read(catalog: Option<&Catalog>, running: Option<&Verifying>) -> VerifyStatus {
        let (last, damage) = match catalog.and_then(|c| c.last_verify().ok().flatten()) {
            Some((run, damage)) => (Some(run), damage),
            None => (None, Vec::new()),
        };
        VerifyStatus {
            last,
            damage,
            running: running.cloned(),
        }
    }

    pub fn damaged(&self) -> bool {
        self.last.as_ref().is_some_and(|r| r.damaged > 0)
    }

    /// One line for people, `when` formatting a time in ms.
    pub fn line(&self, when: impl Fn(i64) -> String) -> String {
        let mut s = match &self.last {
            None => "never run".to_string(),
            Some(r) => format!(
                "last {} ({}{}): {} files read, {} damaged{}",
                when(r.started_ms),
                r.scope,
                r.sample
                    .as_ref()
                    .map(|s| format!(", {s} sample"))
                    .unwrap_or_default(),
                r.checked,
                r.damaged,
                if r.not_hashed > 0 {
                    format!(", {} not hashed (older snapshots)", r.not_hashed)
                } else {
                    String::new()
                }
            ),
        };
        if let Some(v) = &self.running {
            s.push_str(&format!("; verifying now: {}/{} files", v.done, v.total));
        }
        s
    }

    /// One line per damaged file.
    pub fn damage_lines(&self) -> Vec<String> {
        self.damage
            .iter()
            .map(|d| format!("{} {} {}: {}", d.host, d.snapshot, d.path, d.problem))
            .collect()
    }
}
