//! The daemon's state and its one-second decision step. Threads do the slow work (backups,
//! presence checks, deletion) and report back over a channel; only this loop changes state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, TimeZone, Utc};

mod report;
mod upkeep;

use super::deleter::{Deleter, Doomed};
use super::presence::{self, Watch};
use super::queue::{self, Done};
use super::state::{DaemonStatus, Disk, HostState, Running};
use crate::catalog::HostHistory;
use crate::config::{Config, Host};
use crate::job::{Progress, Report};
use crate::logging;
use crate::model::Outcome;
use crate::schedule::{backoff, Due};
use crate::storage::{Storage, WriterLock};

enum Msg {
    Finished {
        host: String,
        report: Box<Report>,
        /// The disk the run wrote to, which may not be the one mounted when it ends.
        storage: Storage,
    },
    Presence {
        host: String,
        result: Result<(), String>,
    },
}

/// What the daemon last learned about a host's reachability.
enum Presence {
    Checking,
    Here {
        at: Instant,
        at_ms: i64,
    },
    Away {
        at: Instant,
        at_ms: i64,
        why: String,
    },
}

enum Activity {
    Idle,
    Running {
        progress: Arc<Progress>,
        started_ms: i64,
        /// Run-now requests this run answers.
        waiters: Vec<String>,
        /// (when, bytes) a few seconds ago, for the rate.
        sample: (Instant, u64),
        rate: u64,
    },
}

#[derive(Default)]
struct Slot {
    activity: Option<Activity>,
    /// Run-now requests not yet served by a run that started after them.
    requests: Vec<String>,
    history: Option<HostHistory>,
    presence: Option<Presence>,
    /// Why `history` could not be read, while it cannot (logged once per new message).
    catalog_error: Option<String>,
    /// A cancelled run's host is not started by its schedule again before this.
    held_until: Option<Instant>,
}

/// What the free-space floor has deleted lately, to notice deletions that free nothing.
#[derive(Default)]
pub(super) struct SpaceDeletions {
    /// Free bytes just before the last deletion was submitted.
    pub free_before: Option<u64>,
    /// Deletions in a row that freed (almost) nothing.
    pub futile: u32,
    /// Stop deleting until then: something other than snapshots fills the disk.
    pub hold_until: Option<Instant>,
}

/// How long a cancel holds a host's scheduled runs back (else a due host restarts at once).
const CANCEL_HOLD: Duration = Duration::from_secs(3600);

pub struct Daemon {
    pub config: Config,
    config_path: PathBuf,
    started_ms: i64,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    slots: BTreeMap<String, Slot>,
    disk: Disk,
    storage: Option<Storage>,
    /// The storage's writer lock, held only while there is work.
    lease: Option<WriterLock>,
    deleter: Deleter,
    watch: Watch,
    force_presence: bool,
    last_space_check: Option<Instant>,
    space_deletions: SpaceDeletions,
    /// When each late host's owner was last told (wall-clock ms), kept in the state folder so
    /// a restarting daemon does not repeat the alert.
    alerts: super::state::Alerts,
    /// The disk (re)appeared: its unfinished deletions are still to be queued.
    resume_pending: bool,
    last_written: Option<DaemonStatus>,
    note: Option<String>,
    /// Who holds the storage's writer lock when we wanted it (a manual backup, another daemon).
    storage_busy: Option<String>,
    /// The scheduled `[verify]` slice.
    verify: crate::verify::schedule::Nightly,
}

impl Daemon {
    pub fn new(config: Config, config_path: PathBuf) -> Daemon {
        let (tx, rx) = channel();
        let watch = Watch::new(config.daemon.watch.clone());
        let alerts = super::state::Alerts::load(&config.daemon.state_dir);
        let mut d = Daemon {
            config,
            config_path,
            started_ms: Utc::now().timestamp_millis(),
            tx,
            rx,
            slots: BTreeMap::new(),
            disk: Disk::Unknown,
            storage: None,
            lease: None,
            deleter: Deleter::start(),
            watch,
            force_presence: false,
            last_space_check: None,
            space_deletions: SpaceDeletions::default(),
            resume_pending: false,
            alerts,
            last_written: None,
            note: None,
            storage_busy: None,
            verify: crate::verify::schedule::Nightly::new(Utc::now().timestamp_millis()),
        };
        d.sync_slots();
        d
    }

    /// A reloaded config: running backups finish on the old host settings. The state folder
    /// stays the one this daemon started with: its lock, queue and status live there.
    pub fn set_config(&mut self, mut config: Config) {
        if config.daemon.state_dir != self.config.daemon.state_dir {
            logging::warn(format!(
                "reload: state_dir changed to {}; it takes effect on restart, until then {} stays in use",
                config.daemon.state_dir.display(),
                self.config.daemon.state_dir.display()
            ));
            config.daemon.state_dir = self.config.daemon.state_dir.clone();
        }
        self.watch = Watch::new(config.daemon.watch.clone());
        self.config = config;
        self.sync_slots();
    }

    /// One slot per configured host; a removed host's queued requests are answered, and its
    /// slot goes once it has no run (see `finished`).
    fn sync_slots(&mut self) {
        let names: Vec<String> = self.config.hosts.iter().map(|h| h.name.clone()).collect();
        let mut dropped = Vec::new();
        for (n, s) in self.slots.iter_mut() {
            if !names.contains(n) {
                dropped.extend(s.requests.drain(..).map(|id| (n.clone(), id)));
            }
        }
        for (n, id) in dropped {
            self.answer(
                &id,
                &Done::failed(format!(
                    "{n} was removed from the config before its run started"
                )),
            );
        }
        self.slots.retain(|n, s| {
            names.contains(n) || matches!(s.activity, Some(Activity::Running { .. }))
        });
        for n in names {
            self.slots.entry(n).or_default();
        }
    }

    pub fn running_hosts(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| matches!(s.activity, Some(Activity::Running { .. })))
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn cancel_all(&mut self) {
        for s in self.slots.values() {
            if let Some(Activity::Running { progress, .. }) = &s.activity {
                progress.cancel();
            }
        }
    }

    /// Sleep until a worker reports or `d` passes.
    pub fn wait(&mut self, d: Duration) {
        match self.rx.recv_timeout(d) {
            Ok(m) => self.handle(m),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
    }

    /// Take in what workers reported, without waiting.
    pub fn collect(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.handle(m);
        }
    }

    pub fn tick(&mut self) {
        self.collect();
        self.take_requests();
        self.check_disk();
        self.resume_deletions();
        if self.watch.changed() {
            self.force_presence = true;
        }
        let now = Utc::now();
        let states = self.decide(now);
        self.start_due(&states);
        self.check_space();
        self.alert_stale(now);
        self.verify
            .tick(&self.config.verify, self.storage.as_ref(), now);
        if self.running_hosts().is_empty() && self.deleter.pending() == 0 {
            self.lease = None;
        }
        self.force_presence = false;
        self.write_status(None);
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Presence { host, result } => {
                let Some(slot) = self.slots.get_mut(&host) else {
                    return;
                };
                let (at, at_ms) = (Instant::now(), Utc::now().timestamp_millis());
                slot.presence = Some(match result {
                    Ok(()) => Presence::Here { at, at_ms },
                    Err(why) => Presence::Away { at, at_ms, why },
                });
            }
            Msg::Finished {
                host,
                report,
                storage,
            } => self.finished(&host, *report, &storage),
        }
    }

    fn take_requests(&mut self) {
        let dir = self.config.daemon.state_dir.clone();
        for host in queue::take_cancels(&dir) {
            if let Some(slot) = self.slots.get_mut(&host) {
                slot.held_until = Some(Instant::now() + CANCEL_HOLD);
                if let Some(Activity::Running { progress, .. }) = &slot.activity {
                    logging::info(format!("host={host} cancel requested"));
                    progress.cancel();
                }
            }
        }
        for r in queue::take_all(&dir) {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    logging::error(format!("run-now queue: {e}"));
                    continue;
                }
            };
            match self.slots.get_mut(&r.host) {
                Some(slot) if self.config.hosts.iter().any(|h| h.name == r.host) => {
                    logging::info(format!("host={} backup requested", r.host));
                    slot.requests.push(r.id);
                }
                _ => {
                    let msg = format!(
                        "no host named {:?} in {}",
                        r.host,
                        self.config_path.display()
                    );
                    self.answer(&r.id, &Done::failed(msg));
                }
            }
        }
    }

    /// Tell a waiting `snapnest backup` (or the web page) how its request ended.
    fn answer(&self, id: &str, done: &Done) {
        if let Err(e) = queue::answer(&self.config.daemon.state_dir, id, done) {
            logging::error(format!("run-now queue: answering {id}: {e}"));
        }
    }

    fn check_disk(&mut self) {
        let root = self.config.storage.clone();
        // strategy = "image": the storage is inside an image the daemon keeps mounted.
        let mounted = match &self.config.image {
            Some(spec) => crate::dest::image::attach(spec).map(|a| a.keep()),
            None => Ok(()),
        };
        let now = match mounted.and_then(|_| Storage::open(&root)) {
            Ok(s) => {
                let (total, free) = space(&root).unwrap_or((0, 0));
                let was_missing = !matches!(self.disk, Disk::Ready { .. });
                let changed_id = self.storage.as_ref().is_some_and(|old| old.id() != s.id());
                if was_missing || changed_id {
                    logging::info(format!(
                        "storage {} is ready (id {})",
                        root.display(),
                        s.id()
                    ));
                    for slot in self.slots.values_mut() {
                        slot.history = None;
                    }
                    self.resume_pending = true;
                }
                self.storage = Some(s);
                Disk::Ready { total, free }
            }
            Err(e) => {
                if !matches!(self.disk, Disk::Missing { .. }) {
                    logging::warn(format!("storage unavailable, runs wait for it: {e}"));
                }
                self.storage = None;
                Disk::Missing { why: e.to_string() }
            }
        };
        self.disk = now;
        if let Some(storage) = self.storage.clone() {
            for (name, slot) in self.slots.iter_mut() {
                if slot.history.is_none() {
                    match storage.catalog().and_then(|c| c.host_history(name)) {
                        Ok(h) => {
                            slot.history = Some(h);
                            slot.catalog_error = None;
                        }
                        Err(e) => {
                            let why = e.to_string();
                            if slot.catalog_error.as_ref() != Some(&why) {
                                logging::error(format!("host={name} reading catalog: {why}"));
                            }
                            slot.catalog_error = Some(why);
                        }
                    }
                }
            }
        }
    }

    /// Finish deletions an earlier process (or an earlier mount of this disk) left, under
    /// the writer lock so no other snapnest process works on the same snapshots meanwhile.
    fn resume_deletions(&mut self) {
        let Some(storage) = self.storage.clone().filter(|_| self.resume_pending) else {
            return;
        };
        let list = match storage.catalog().and_then(|c| c.deleting()) {
            Ok(list) => list,
            Err(e) => {
                logging::error(format!("reading unfinished deletions: {e}"));
                return;
            }
        };
        if !list.is_empty() && self.lease.is_none() {
            match storage.try_lock_writer() {
                Ok(Ok(l)) => self.lease = Some(l),
                // Another process writes now; try again on a later tick.
                _ => return,
            }
        }
        self.resume_pending = false;
        for (id, host, name) in list {
            self.deleter.submit(&storage, Doomed { id, host, name });
        }
    }

    /// Each host's state now, and whether it may start.
    fn decide(&mut self, now: DateTime<Utc>) -> Vec<(String, HostState)> {
        let interval = self.config.daemon.presence_interval;
        let disk_ready = self.storage.is_some();
        let mut out = Vec::new();
        for host in &self.config.hosts {
            let slot = self.slots.get_mut(&host.name).expect("slot per host");
            if let Some(Activity::Running {
                progress,
                started_ms,
                sample,
                rate,
                ..
            }) = &mut slot.activity
            {
                let v = progress.view();
                if sample.0.elapsed() >= Duration::from_secs(2) {
                    *rate = (v.bytes_done.saturating_sub(sample.1) as f64
                        / sample.0.elapsed().as_secs_f64()) as u64;
                    *sample = (Instant::now(), v.bytes_done);
                }
                out.push((
                    host.name.clone(),
                    HostState::Running(Running {
                        started_ms: *started_ms,
                        phase: v.phase.to_string(),
                        current: v.current,
                        files_done: v.files_done,
                        files_total: v.files_total,
                        bytes_done: v.bytes_done,
                        bytes_total: v.bytes_total,
                        rate: *rate,
                    }),
                ));
                continue;
            }
            let requested = !slot.requests.is_empty();
            let history = match (&slot.history, disk_ready) {
                (Some(h), _) => h.clone(),
                (None, false) => Default::default(),
                (None, true) => {
                    let why =
                        (slot.catalog_error.clone()).unwrap_or_else(|| "not read yet".to_string());
                    out.push((host.name.clone(), HostState::CatalogUnreadable { why }));
                    continue;
                }
            };
            let sched = &host.automation.schedule;
            let last_good = history
                .last_good_started_ms
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
            let (due, due_ms) = match sched.due_at(last_good, now, &Local) {
                Due::Now => (true, 0),
                Due::At(t) => (t <= now, t.timestamp_millis()),
                Due::Manual => (false, i64::MAX),
            };
            let held = slot.held_until.is_some_and(|t| t > Instant::now());
            if !requested && (!due || held) {
                let s = if matches!(sched.due_at(last_good, now, &Local), Due::Manual) {
                    HostState::Manual
                } else {
                    HostState::Scheduled
                };
                out.push((host.name.clone(), s));
                continue;
            }
            if !disk_ready {
                out.push((host.name.clone(), HostState::WaitingForDisk));
                continue;
            }
            let local = matches!(host.source, crate::config::SourceSpec::Local);
            if !requested {
                if let Some(until) = sched.blackout_until(now, &Local) {
                    out.push((
                        host.name.clone(),
                        HostState::Blackout {
                            until_ms: until.timestamp_millis(),
                        },
                    ));
                    continue;
                }
                if history.failures > 0 {
                    let last_end = history
                        .last_run
                        .as_ref()
                        .map(|r| r.finished_ms.unwrap_or(r.started_ms))
                        .unwrap_or(0);
                    let until = last_end + backoff(history.failures).as_millis() as i64;
                    if until > now.timestamp_millis() {
                        out.push((host.name.clone(), HostState::Backoff { until_ms: until }));
                        continue;
                    }
                }
                // Presence: only ask a machine that is due, and not more often than the interval.
                // A folder on this box is always here.
                let stale = !local
                    && match &slot.presence {
                        None => true,
                        Some(Presence::Checking) => false,
                        Some(Presence::Here { at, .. }) => at.elapsed() >= interval,
                        Some(Presence::Away { at, .. }) => {
                            at.elapsed() >= interval || self.force_presence
                        }
                    };
                if stale {
                    let prev = slot.presence.take();
                    slot.presence = Some(Presence::Checking);
                    spawn_check(self.tx.clone(), host.clone());
                    if let Some(Presence::Away { at_ms, why, .. }) = prev {
                        out.push((
                            host.name.clone(),
                            HostState::Away {
                                why,
                                checked_ms: at_ms,
                            },
                        ));
                        continue;
                    }
                }
                match &slot.presence {
                    _ if local => {}
                    Some(Presence::Here { .. }) => {}
                    Some(Presence::Away { at_ms, why, .. }) => {
                        out.push((
                            host.name.clone(),
                            HostState::Away {
                                why: why.clone(),
                                checked_ms: *at_ms,
                            },
                        ));
                        continue;
                    }
                    _ => {
                        out.push((
                            host.name.clone(),
                            HostState::Away {
                                why: "checking".into(),
                                checked_ms: 0,
                            },
                        ));
                        continue;
                    }
                }
            }
            out.push((host.name.clone(), HostState::Queued { requested, due_ms }));
        }
        out
    }

    fn start_due(&mut self, states: &[(String, HostState)]) {
        let cap = self.config.daemon.max_concurrent;
        let mut queued: Vec<(&String, (bool, i64))> = states
            .iter()
            .filter_map(|(n, s)| match s {
                HostState::Queued { requested, due_ms } => Some((n, (!*requested, *due_ms))),
                _ => None,
            })
            .collect();
        if queued.is_empty() {
            self.storage_busy = None;
        }
        // Run-now requests go ahead of scheduled work, then the most overdue, so a host that
        // is always due soon cannot starve the others when slots are few; ties in config order.
        queued.sort_by_key(|(_, order)| *order);
        for (name, _) in queued {
            if self.running_hosts().len() >= cap {
                break;
            }
            let Some(storage) = self.storage.clone() else {
                return;
            };
            if self.lease.is_none() {
                match storage.try_lock_writer() {
                    Ok(Ok(l)) => {
                        self.lease = Some(l);
                        self.note = None;
                        self.storage_busy = None;
                    }
                    Ok(Err(busy)) => {
                        self.note = Some(format!("storage is in use by {}", busy.holder));
                        self.storage_busy = Some(busy.holder);
                        return;
                    }
                    Err(e) => {
                        self.note = Some(e.to_string());
                        return;
                    }
                }
            }
            let Some(host) = self.config.hosts.iter().find(|h| &h.name == name).cloned() else {
                continue;
            };
            self.start(storage, host);
        }
    }

    fn start(&mut self, storage: Storage, host: Host) {
        let slot = self.slots.get_mut(&host.name).expect("slot per host");
        let waiters = std::mem::take(&mut slot.requests);
        let progress = Arc::new(Progress::new());
        logging::info(format!(
            "host={} backup starting ({})",
            host.name,
            if waiters.is_empty() {
                "scheduled"
            } else {
                "requested"
            }
        ));
        slot.activity = Some(Activity::Running {
            progress: progress.clone(),
            started_ms: Utc::now().timestamp_millis(),
            waiters,
            sample: (Instant::now(), 0),
            rate: 0,
        });
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name(format!("run-{}", host.name))
            .spawn(move || {
                let report = crate::runner::run_host(&storage, &host, &progress);
                let _ = tx.send(Msg::Finished {
                    host: host.name.clone(),
                    report: Box::new(report),
                    storage,
                });
            })
            .expect("spawning a backup thread");
    }

    fn finished(&mut self, name: &str, report: Report, ran_on: &Storage) {
        let run = report
            .run_id
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        let summary = report.summary();
        let line = format!(
            "host={name} run={run} {}",
            summary
                .strip_prefix(&format!("{name}: "))
                .unwrap_or(&summary)
        );
        match (report.interrupted, report.outcome) {
            (true, _) => logging::warn(line),
            (false, Outcome::Failed) => logging::error(line),
            (false, Outcome::Partial) => logging::warn(line),
            (false, Outcome::Good) => logging::info(line),
        }
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.history = None;
        // A run that just ended says nothing new about presence; keep asking on schedule.
        if let Some(Activity::Running { waiters, .. }) = slot.activity.take() {
            let done = Done {
                outcome: report.outcome.as_str().into(),
                exit_code: report.outcome.exit_code(),
                summary: report.summary(),
                problems: report
                    .problems
                    .iter()
                    .take(20)
                    .map(|p| p.to_string())
                    .collect(),
            };
            for id in waiters {
                self.answer(&id, &done);
            }
        }
        if !self.config.hosts.iter().any(|h| h.name == name) {
            // Removed from the config while it ran.
            self.slots.remove(name);
            return;
        }
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.activity = Some(Activity::Idle);
        // Never prune after a failed or interrupted run, nor on a disk swapped in meanwhile.
        let same_disk = self.storage.as_ref().is_some_and(|s| s.id() == ran_on.id());
        if report.outcome != Outcome::Failed && !report.interrupted && same_disk {
            if let Some(host) = self.config.hosts.iter().find(|h| h.name == name).cloned() {
                self.prune_host(ran_on, &host);
            }
        }
    }
}

/// Presence checks block for up to a few seconds: off the loop's thread.
fn spawn_check(tx: Sender<Msg>, host: Host) {
    std::thread::spawn(move || {
        let result = presence::check(&host);
        let _ = tx.send(Msg::Presence {
            host: host.name.clone(),
            result,
        });
    });
}

/// Late: no good backup for longer than `stale_after`; a host never backed up counts from
/// when this daemon started, so a newly added machine is not late at once.
fn is_late(host: &Host, history: Option<&HostHistory>, now: DateTime<Utc>, since_ms: i64) -> bool {
    let Some(threshold) = host.automation.stale_after else {
        return false;
    };
    if matches!(
        host.automation.schedule.due_at(None, now, &Local),
        Due::Manual
    ) {
        return false;
    }
    let at = |ms: i64| std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let alert = crate::hooks::StaleAlert {
        threshold,
        repeat: ALERT_REPEAT,
    };
    alert.due(
        at(now.timestamp_millis()),
        history.and_then(|h| h.last_good_started_ms).map(at),
        at(since_ms),
        None,
    )
}

/// A late machine's owner is told at most this often.
const ALERT_REPEAT: Duration = Duration::from_secs(24 * 3600);

/// (total, available to us) bytes of the filesystem holding `p`.
/// (total, available) bytes; Err when statvfs fails, which must never read as "disk full".
pub fn space(p: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(p)?;
    Ok((s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
}
