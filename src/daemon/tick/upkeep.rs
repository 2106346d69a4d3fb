//! Housekeeping between runs: retention after a good run, the free-space floor, and
//! telling the owner of a machine whose backups stopped.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{is_late, space, spawn_check, Daemon, Presence, ALERT_REPEAT};

/// Deletions in a row that free (almost) nothing before the floor pauses, and for how long.
const FUTILE_DELETIONS: u32 = 3;
const FUTILE_HOLD: Duration = Duration::from_secs(6 * 3600);
/// statvfs is cheap; the wait is for the filesystem to show what a deletion freed.
const SPACE_CHECK_EVERY: Duration = Duration::from_secs(3);
use crate::config::Host;
use crate::daemon::deleter::Doomed;
use crate::logging;
use crate::storage::Storage;

impl Daemon {
    pub(super) fn prune_host(&mut self, storage: &Storage, host: &Host) {
        match crate::prune::plan_host(storage, host, Utc::now()) {
            Ok(verdicts) => {
                for v in verdicts.into_iter().filter(|v| !v.keep) {
                    match storage.catalog().and_then(|c| c.mark_deleting(v.id)) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            logging::error(format!("host={} prune {}: {e}", host.name, v.name));
                            continue;
                        }
                    }
                    logging::info(format!(
                        "host={} pruning {} ({})",
                        host.name,
                        v.name,
                        v.reasons.join(", ")
                    ));
                    self.deleter.submit(
                        storage,
                        Doomed {
                            id: v.id,
                            host: host.name.clone(),
                            name: v.name,
                        },
                    );
                }
            }
            Err(e) => logging::error(format!("host={} prune: {e}", host.name)),
        }
    }

    /// Below `min_free`: delete the oldest snapshot that no rule protects, one at a time.
    pub(super) fn check_space(&mut self) {
        let Some(min_free) = self.config.min_free else {
            return;
        };
        let Some(storage) = self.storage.clone() else {
            return;
        };
        if self
            .last_space_check
            .is_some_and(|t| t.elapsed() < SPACE_CHECK_EVERY)
            || self.deleter.pending() > 0
        {
            return;
        }
        self.last_space_check = Some(Instant::now());
        let (total, free) = match space(storage.root()) {
            Ok(s) => s,
            Err(e) => {
                // Unknown free space must not read as "full": that would delete history.
                logging::warn(format!("free-space floor: cannot read free space: {e}"));
                return;
            }
        };
        let short = min_free.bytes_short(total, free);
        let sd = &mut self.space_deletions;
        if short == 0 {
            *sd = Default::default();
            return;
        }
        if let Some(before) = sd.free_before.take() {
            // Hard-linked snapshots share most data, so one deletion may free little; a
            // few in a row freeing nothing means the disk fills with something else.
            let freed = free.saturating_sub(before);
            if freed < (short / 100).max(1 << 20) {
                sd.futile += 1;
            } else {
                sd.futile = 0;
            }
            if sd.futile >= FUTILE_DELETIONS {
                sd.futile = 0;
                sd.hold_until = Some(Instant::now() + FUTILE_HOLD);
                logging::warn(format!(
                    "free-space floor: the last {FUTILE_DELETIONS} deletions freed almost nothing; \
                     not deleting more for {} (something other than older snapshots fills the disk)",
                    humantime::format_duration(FUTILE_HOLD)
                ));
            }
        }
        if sd.hold_until.is_some_and(|t| Instant::now() < t) {
            self.note = Some(format!(
                "disk below the free-space floor ({}); deleting snapshots freed almost nothing, so snapnest paused it",
                min_free.describe()
            ));
            return;
        }
        match crate::prune::space_victim(&storage) {
            Ok(Some((host, snap))) => {
                if self.lease.is_none() {
                    match storage.try_lock_writer() {
                        Ok(Ok(l)) => self.lease = Some(l),
                        _ => return,
                    }
                }
                let marked = storage.catalog().and_then(|c| c.mark_deleting(snap.id));
                if let Err(e) = &marked {
                    logging::error(format!(
                        "host={host} pruning {} to make room: {e}",
                        snap.name
                    ));
                }
                if let Ok(true) = marked {
                    self.space_deletions.free_before = Some(free);
                    logging::warn(format!(
                        "host={host} pruning {} to make room: {} below the free-space floor ({})",
                        snap.name,
                        bytesize::ByteSize(short),
                        min_free.describe()
                    ));
                    self.deleter.submit(
                        &storage,
                        Doomed {
                            id: snap.id,
                            host,
                            name: snap.name,
                        },
                    );
                }
            }
            Ok(None) => {
                self.note = Some(format!(
                    "disk below the free-space floor ({}) and nothing left that may be pruned",
                    min_free.describe()
                ))
            }
            Err(e) => logging::error(format!("free-space prune: {e}")),
        }
    }

    /// A host without a good backup for too long: mark it late, tell its owner (once a day).
    pub(super) fn alert_stale(&mut self, now: DateTime<Utc>) {
        for host in &self.config.hosts {
            let Some(slot) = self.slots.get_mut(&host.name) else {
                continue;
            };
            if !is_late(host, slot.history.as_ref(), now, self.started_ms) {
                continue;
            }
            let recently = (self.alerts.last(&host.name))
                .is_some_and(|ms| now.timestamp_millis() - ms < ALERT_REPEAT.as_millis() as i64);
            if host.automation.notify == crate::hooks::Notify::Off || recently {
                continue;
            }
            // The owner can only be told while the machine is on: look for it like a due host.
            let stale_check = match &slot.presence {
                None => true,
                Some(Presence::Checking) => false,
                Some(Presence::Here { at, .. }) | Some(Presence::Away { at, .. }) => {
                    at.elapsed() >= self.config.daemon.presence_interval || self.force_presence
                }
            };
            if stale_check {
                slot.presence = Some(Presence::Checking);
                spawn_check(self.tx.clone(), host.clone());
                continue;
            }
            if !matches!(slot.presence, Some(Presence::Here { .. })) {
                continue;
            }
            if let Err(e) = self.alerts.record(&host.name, now.timestamp_millis()) {
                logging::warn(format!(
                    "host={} remembering the late alert: {e}",
                    host.name
                ));
            }
            let h = host.clone();
            let last = slot.history.as_ref().and_then(|x| x.last_good_started_ms);
            std::thread::spawn(move || crate::runner::notify_stale(&h, last));
        }
    }
}
