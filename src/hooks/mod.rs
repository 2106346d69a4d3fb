//! Hooks (`before`, `after`, `on_error`) run on the box or on the backed-up host, and
//! desktop notifications on the backed-up host.
//!
//! ```toml
//! before = "pg_dump -f /var/backups/db.sql mydb"      # runs on this box: sh -c
//! before = { run = "pg_dump -f /var/backups/db.sql", where = "remote", timeout = "10m" }
//! notify = "linux"                                    # off | linux | macos | windows
//! ```
//!
//! A hook gets the run's result and counters as `SNAPNEST_*` environment variables (on a
//! remote host as `export` lines, since sshd drops client variables). Remote hooks and the
//! Linux/macOS notifications need a POSIX `sh` on the host; the hook text and the values
//! are never logged, because they may hold passwords (`PGPASSWORD=… pg_dump`).
//!
//! The config module parses with [`Hook::from_toml`], [`Hook::check_source`] and
//! [`Notify::parse`]; the daemon calls [`run_hook`], [`notify`] and the message helpers.

mod exec;
mod notify;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::config::SourceSpec;
use crate::job::Report;
use crate::model::Stats;

pub use exec::{run_hook, HookOutcome};
pub use notify::{
    failed_message, notify, report_message, stale_message, Notify, StaleAlert, NOTIFY_LIMIT,
};

/// Longest a hook may run unless `timeout` says otherwise: a database dump can be slow.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

const EXAMPLE: &str = r#"e.g. "pg_dump -f /var/backups/db.sql mydb" or { run = "pg_dump -f /var/backups/db.sql mydb", where = "remote", timeout = "10m" }"#;

/// Where a hook runs: on this box, or on the backed-up host over the same SSH connection setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Local,
    Remote,
}

/// One configured hook. `Debug` leaves out the command, which may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Hook {
    /// Shell text, run with `sh -c`.
    pub run: String,
    pub place: Where,
    pub timeout: Duration,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("run", &format_args!("<{} chars>", self.run.len()))
            .field("place", &self.place)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Hook {
    /// From a string (local, default timeout) or a `{ run, where, timeout }` table; the
    /// error is self-contained (with an example) so the config can prefix file, line and key.
    pub fn from_toml(v: &toml::Value) -> Result<Hook, String> {
        let (run, place, timeout) = match v {
            toml::Value::String(s) => (s.clone(), Where::Local, DEFAULT_TIMEOUT),
            toml::Value::Table(t) => {
                if let Some(k) = t
                    .keys()
                    .find(|k| !["run", "where", "timeout"].contains(&k.as_str()))
                {
                    return Err(format!(
                        "unknown key {k:?} in a hook: use run, where and timeout, {EXAMPLE}"
                    ));
                }
                let run = match t.get("run") {
                    Some(toml::Value::String(s)) => s.clone(),
                    Some(_) => return Err(format!("`run` must be a string, {EXAMPLE}")),
                    None => return Err(format!("a hook table needs `run`, {EXAMPLE}")),
                };
                let place = match t.get("where") {
                    None => Where::Local,
                    Some(toml::Value::String(s)) if s == "local" => Where::Local,
                    Some(toml::Value::String(s)) if s == "remote" => Where::Remote,
                    Some(other) => {
                        return Err(format!(
                            "where = {other}: expected \"local\" (this box) or \"remote\" (the backed-up host), e.g. {{ run = \"…\", where = \"remote\" }}"
                        ))
                    }
                };
                let timeout = match t.get("timeout") {
                    None => DEFAULT_TIMEOUT,
                    Some(toml::Value::String(s)) => parse_timeout(s)?,
                    Some(other) => {
                        return Err(format!(
                            "timeout = {other}: expected a duration string, e.g. timeout = \"10m\" or \"90s\""
                        ))
                    }
                };
                (run, place, timeout)
            }
            other => {
                return Err(format!(
                    "a hook is a command string or a table (got {other}), {EXAMPLE}"
                ))
            }
        };
        if run.trim().is_empty() {
            return Err(format!("the hook command is empty, {EXAMPLE}"));
        }
        if run.contains('\0') {
            return Err("the hook command contains a NUL character".to_string());
        }
        Ok(Hook {
            run,
            place,
            timeout,
        })
    }

    /// Config-time check: `where = "remote"` means nothing for a host backed up from this box.
    pub fn check_source(&self, source: &SourceSpec) -> Result<(), String> {
        match (self.place, source) {
            (Where::Remote, SourceSpec::Local) => Err(
                "where = \"remote\" needs an SSH host; this host has source = \"local\", so use where = \"local\" (or leave `where` out)"
                    .to_string(),
            ),
            _ => Ok(()),
        }
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let t = humantime::parse_duration(s)
        .map_err(|e| format!("timeout = {s:?}: {e}, e.g. timeout = \"10m\" or \"90s\""))?;
    if t < Duration::from_secs(1) {
        return Err(format!(
            "timeout = {s:?} is too short: at least \"1s\", e.g. \"10m\""
        ));
    }
    Ok(t)
}

/// When a hook runs, and what `SNAPNEST_EVENT` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Before anything is fetched; a failure aborts the run.
    Before,
    /// After every run that got past `before`, whatever its result.
    After,
    /// After a failed run, including one whose `before` hook failed.
    OnError,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Before => "before",
            Event::After => "after",
            Event::OnError => "on_error",
        }
    }
}

/// A host's hooks, as the config holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub before: Option<Hook>,
    pub after: Option<Hook>,
    pub on_error: Option<Hook>,
}

impl Hooks {
    pub fn get(&self, event: Event) -> Option<&Hook> {
        match event {
            Event::Before => self.before.as_ref(),
            Event::After => self.after.as_ref(),
            Event::OnError => self.on_error.as_ref(),
        }
    }
}

/// Values passed to hooks as `SNAPNEST_*` environment variables.
#[derive(Clone, Debug)]
pub struct HookEnv {
    pub event: Event,
    pub host: String,
    pub run_id: Option<i64>,
    /// "good" / "partial" / "failed"; empty for `before`.
    pub result: String,
    pub snapshot: Option<String>,
    pub stats: Stats,
    pub duration: Duration,
    /// Why the run failed (or was partial), for `on_error` hooks that mail it on.
    pub message: Option<String>,
}

impl HookEnv {
    /// For a `before` hook: nothing has happened yet.
    pub fn before(host: &str, run_id: Option<i64>) -> HookEnv {
        HookEnv {
            event: Event::Before,
            host: host.to_string(),
            run_id,
            result: String::new(),
            snapshot: None,
            stats: Stats::default(),
            duration: Duration::ZERO,
            message: None,
        }
    }

    /// For an `after` or `on_error` hook, from the finished run's report.
    pub fn from_report(event: Event, report: &Report, run_id: Option<i64>) -> HookEnv {
        HookEnv {
            event,
            host: report.host.clone(),
            run_id,
            result: report.outcome.as_str().to_string(),
            snapshot: report.snapshot.clone(),
            stats: report.stats.clone(),
            duration: report.duration,
            message: report.message.clone(),
        }
    }

    /// Name/value pairs, every name `SNAPNEST_…`, always the same set (empty when unknown)
    /// so a hook can use `set -u`. NULs are dropped: no environment can carry them.
    pub fn vars(&self) -> Vec<(String, String)> {
        let s = &self.stats;
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        [
            ("EVENT", self.event.as_str().to_string()),
            ("HOST", self.host.clone()),
            (
                "RUN_ID",
                self.run_id.map(|i| i.to_string()).unwrap_or_default(),
            ),
            ("RESULT", self.result.clone()),
            ("SNAPSHOT", opt(&self.snapshot)),
            ("FILES", s.files.to_string()),
            ("BYTES", s.bytes.to_string()),
            ("NEW_FILES", s.new_files.to_string()),
            ("NEW_BYTES", s.new_bytes.to_string()),
            ("LINKED", s.linked.to_string()),
            ("WARNINGS", s.warnings.to_string()),
            ("ERRORS", s.errors.to_string()),
            ("DURATION", self.duration.as_secs().to_string()),
            ("MESSAGE", opt(&self.message)),
        ]
        .into_iter()
        .map(|(k, v)| (format!("SNAPNEST_{k}"), v.replace('\0', "")))
        .collect()
    }
}
