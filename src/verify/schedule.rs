//! The daemon's scheduled verify: a sampled run in a thread of its own, at idle I/O
//! priority, started when the `[verify] schedule` line comes round.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use chrono::{DateTime, Local, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{Progress, Report, Scope};
use crate::config::verify::Verify;
use crate::logging;
use crate::storage::Storage;

/// What the status file says about a verify in progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verifying {
    pub started_ms: i64,
    pub done: u64,
    pub total: u64,
    pub bytes: u64,
}

pub struct Nightly {
    /// When the daemon started: the first slot is the first one after it.
    since_ms: i64,
    last_start_ms: Option<i64>,
    running: Option<Running>,
}

struct Running {
    started_ms: i64,
    progress: Arc<Progress>,
    thread: JoinHandle<()>,
}

impl Nightly {
    pub fn new(since_ms: i64) -> Nightly {
        Nightly {
            since_ms,
            last_start_ms: None,
            running: None,
        }
    }

    /// Start a run when one is due; collect a finished one.
    pub fn tick(&mut self, config: &Verify, storage: Option<&Storage>, now: DateTime<Utc>) {
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.thread.is_finished())
        {
            if let Some(r) = self.running.take() {
                let _ = r.thread.join();
            }
        }
        let (Some(cron), Some(storage), None) = (&config.schedule, storage, &self.running) else {
            return;
        };
        // The last start this daemon or an earlier one made (the catalog remembers it), so
        // a slot missed while the box was off is caught up once.
        let last = self.last_start_ms.or_else(|| {
            storage
                .catalog()
                .ok()
                .and_then(|c| c.last_verify().ok().flatten())
                .map(|(run, _)| run.started_ms)
        });
        let after = last.unwrap_or(self.since_ms).max(0);
        let Some(after) = Utc.timestamp_millis_opt(after).single() else {
            return;
        };
        match cron.next_after(after, &Local) {
            Some(due) if due <= now => {}
            _ => return,
        }
        let started_ms = now.timestamp_millis();
        self.last_start_ms = Some(started_ms);
        let progress = Arc::new(Progress::default());
        let (p, storage, sample) = (progress.clone(), storage.clone(), config.sample);
        logging::info(format!(
            "verify: reading a {} slice of the stored files",
            sample.describe()
        ));
        let thread = std::thread::spawn(move || {
            let _idle = crate::daemon::deleter::IdlePriority::enter();
            match super::verify(&storage, &Scope::default(), Some(sample), &p) {
                Ok(report) => log_report(&report),
                Err(e) => logging::error(format!("verify: {e}")),
            }
        });
        self.running = Some(Running {
            started_ms,
            progress,
            thread,
        });
    }

    pub fn status(&self) -> Option<Verifying> {
        self.running.as_ref().map(|r| Verifying {
            started_ms: r.started_ms,
            done: r.progress.done.load(Ordering::Relaxed),
            total: r.progress.total.load(Ordering::Relaxed),
            bytes: r.progress.bytes.load(Ordering::Relaxed),
        })
    }
}

impl Drop for Nightly {
    /// A stopping daemon does not wait for the slice: what was read is already recorded.
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.progress.cancel.store(true, Ordering::Relaxed);
        }
    }
}

fn log_report(r: &Report) {
    let line = format!(
        "verify: {} files read ({}), {} damaged, {} not hashed",
        r.run.checked,
        bytesize::ByteSize(r.run.bytes),
        r.run.damaged,
        r.run.not_hashed
    );
    if r.damaged() {
        logging::error(line);
        for d in r.damage.iter().take(20) {
            logging::error(format!(
                "verify: host={} {} {}: {} (expected {}, found {})",
                d.host, d.snapshot, d.path, d.problem, d.expected, d.found
            ));
        }
    } else {
        logging::info(line);
    }
}
