//! The status file's content: each host's state, schedule and history as the loop sees them.

use chrono::{DateTime, Local, TimeZone, Utc};

use super::{is_late, Daemon, Presence};
use crate::daemon::state::{self, DaemonStatus, HostState, HostStatus};
use crate::logging;
use crate::schedule::Due;

impl Daemon {
    pub fn write_status(&mut self, note: Option<String>) {
        let now = Utc::now();
        let states = self.current_states(now);
        let hosts = self
            .config
            .hosts
            .iter()
            .zip(states)
            .map(|(h, state)| {
                let slot = self.slots.get(&h.name);
                let hist = slot.and_then(|s| s.history.clone()).unwrap_or_default();
                let last_good = hist
                    .last_good_started_ms
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
                let next_due_ms = match h.automation.schedule.due_at(last_good, now, &Local) {
                    Due::Now => Some(now.timestamp_millis()),
                    Due::At(t) => Some(
                        h.automation
                            .schedule
                            .next_allowed(t, &Local)
                            .timestamp_millis(),
                    ),
                    Due::Manual => None,
                };
                let last_seen_ms = match slot.and_then(|s| s.presence.as_ref()) {
                    Some(Presence::Here { at_ms, .. }) => Some(*at_ms),
                    _ => None,
                };
                HostStatus {
                    name: h.name.clone(),
                    late: is_late(h, Some(&hist), now, self.started_ms),
                    last_good_ms: hist.last_good_started_ms,
                    next_due_ms,
                    last_seen_ms,
                    failures: hist.failures,
                    last_result: hist.last_run.as_ref().map(|r| r.state.clone()),
                    last_message: hist.last_run.as_ref().and_then(|r| r.message.clone()),
                    state,
                }
            })
            .collect();
        let mut status = DaemonStatus {
            pid: std::process::id(),
            started_ms: self.started_ms,
            updated_ms: 0,
            config: self.config_path.clone(),
            storage: self.config.storage.clone(),
            disk: self.disk.clone(),
            hosts,
            deleting: self.deleter.pending(),
            note: note.or_else(|| self.note.clone()),
            verifying: self.verify.status(),
        };
        if self.last_written.as_ref() == Some(&status) {
            return;
        }
        self.last_written = Some(status.clone());
        status.updated_ms = now.timestamp_millis();
        if let Err(e) = state::write(&self.config.daemon.state_dir, &status) {
            logging::error(format!("writing status: {e}"));
        }
    }

    /// The states as `decide` sees them, without starting checks (for the status file).
    fn current_states(&mut self, now: DateTime<Utc>) -> Vec<HostState> {
        let saved_force = self.force_presence;
        // `decide` only starts a presence check for a stale answer; by now none is stale.
        let states = self.decide(now);
        self.force_presence = saved_force;
        let busy = self.storage_busy.clone();
        states
            .into_iter()
            .map(|(_, s)| match (s, &busy) {
                (HostState::Queued { .. }, Some(holder)) => HostState::WaitingForStorage {
                    holder: holder.clone(),
                },
                (s, _) => s,
            })
            .collect()
    }
}
