//! The daemon's state on disk: `<state_dir>/status.json`, rewritten atomically whenever it
//! changes. `snapnest status` (and the web page) read it; the catalog holds the history.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const FILE: &str = "status.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub config: PathBuf,
    pub storage: PathBuf,
    pub disk: Disk,
    pub hosts: Vec<HostStatus>,
    /// Snapshots waiting to be deleted in the background.
    pub deleting: usize,
    /// Why the daemon is not starting anything, when it says so itself.
    pub note: Option<String>,
    /// A scheduled verify in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying: Option<crate::verify::schedule::Verifying>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Disk {
    #[default]
    Unknown,
    Ready {
        total: u64,
        free: u64,
    },
    /// Runs wait; the reason is what Storage::open said.
    Missing {
        why: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub name: String,
    pub state: HostState,
    /// The host's last good backup is older than its `stale_after`.
    pub late: bool,
    pub last_good_ms: Option<i64>,
    /// When the next scheduled run is due (past = due now).
    pub next_due_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    pub failures: u32,
    /// The newest run's end state and message, from the catalog.
    pub last_result: Option<String>,
    pub last_message: Option<String>,
}

/// What a host is doing now, with what it is waiting for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HostState {
    /// Not due yet.
    Scheduled,
    /// Only backed up on request (`schedule = "manual"`).
    Manual,
    /// Due and reachable: starts as soon as a slot is free.
    Queued {
        requested: bool,
        /// When it became due (0 for a host never backed up): the most overdue goes first.
        #[serde(default)]
        due_ms: i64,
    },
    Running(Running),
    /// Due, but the machine did not answer on its SSH port.
    Away {
        why: String,
        checked_ms: i64,
    },
    /// Due, held back by a blackout window.
    Blackout {
        until_ms: i64,
    },
    /// Failed recently; retried after a pause that grows with each failure.
    Backoff {
        until_ms: i64,
    },
    /// Due, but the backup disk is not there.
    WaitingForDisk,
    /// Another snapnest process is writing to the storage.
    WaitingForStorage {
        holder: String,
    },
    /// The host's history cannot be read from the catalog: nothing starts until it can,
    /// because without it every tick would look like "never backed up" and start again.
    CatalogUnreadable {
        why: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub started_ms: i64,
    pub phase: String,
    pub current: String,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second over the last few seconds.
    pub rate: u64,
}

impl HostState {
    /// One word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            HostState::Scheduled => "scheduled",
            HostState::Manual => "manual",
            HostState::Queued { .. } => "queued",
            HostState::Running(_) => "running",
            HostState::Away { .. } => "away",
            HostState::Blackout { .. } => "blackout",
            HostState::Backoff { .. } => "backoff",
            HostState::WaitingForDisk => "no-disk",
            HostState::WaitingForStorage { .. } => "busy",
            HostState::CatalogUnreadable { .. } => "catalog-error",
        }
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

pub fn write(state_dir: &Path, status: &DaemonStatus) -> Result<()> {
    let p = path(state_dir);
    let tmp = state_dir.join(".status.json.tmp");
    let text = serde_json::to_vec_pretty(status).map_err(|e| Error::Other(e.to_string()))?;
    fs::write(&tmp, text).at(&tmp, "writing status")?;
    fs::rename(&tmp, &p).at(&p, "writing status")
}

pub fn read(state_dir: &Path) -> Result<Option<DaemonStatus>> {
    let p = path(state_dir);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Other(format!("reading {}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(p, "reading status", e)),
    }
}

/// `<state_dir>/alerts.json`: host → when its owner was last told it is late (ms).
#[derive(Debug)]
pub struct Alerts {
    path: PathBuf,
    last: std::collections::BTreeMap<String, i64>,
}

impl Alerts {
    /// A missing or unreadable file means "never alerted": at worst one alert too many.
    pub fn load(state_dir: &Path) -> Alerts {
        let path = state_dir.join("alerts.json");
        let last = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Alerts { path, last }
    }

    pub fn last(&self, host: &str) -> Option<i64> {
        self.last.get(host).copied()
    }

    /// Remember an alert; it is on disk when this returns Ok.
    pub fn record(&mut self, host: &str, at_ms: i64) -> Result<()> {
        self.last.insert(host.to_string(), at_ms);
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec(&self.last).map_err(|e| Error::Other(e.to_string()))?;
        fs::write(&tmp, text).at(&tmp, "writing alert times")?;
        fs::rename(&tmp, &self.path).at(&self.path, "writing alert times")
    }
}
