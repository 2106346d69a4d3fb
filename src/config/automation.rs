//! What the daemon does on its own: the `[daemon]` table, the storage's free-space floor, and
//! per host the schedule, retention, hooks and notifications. Same two steps as the rest of
//! the config: raw values with spans in, checked values out, errors naming line and key.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawDaemon, RawHost};
use super::Validator;
use crate::error::Result;
use crate::hooks::{Hook, Hooks, Notify};
use crate::logging;
use crate::retention::{Keep, MinFree};
use crate::schedule::{parse_every, CronSpec, Schedule, Window};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/snapnest";

/// The `[daemon]` table.
#[derive(Clone, Debug)]
pub struct Daemon {
    /// Status file, run-now queue and the daemon's own lock live here, off the backup disk,
    /// so `snapnest status` can say the disk is missing.
    pub state_dir: PathBuf,
    /// Runs at once; 1 suits a router's single USB disk and CPU.
    pub max_concurrent: usize,
    /// How often a due host that is away is looked for.
    pub presence_interval: Duration,
    /// Files whose change means "a machine may have arrived" (dnsmasq leases, /proc/net/arp).
    pub watch: Vec<PathBuf>,
    pub log: logging::Target,
    /// How long SIGTERM waits for running transfers to reach a checkpoint before exiting.
    pub shutdown_grace: Duration,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            max_concurrent: 1,
            presence_interval: Duration::from_secs(30),
            watch: Vec::new(),
            log: logging::Target::Stderr,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// A host's automation: when, what to keep, what to run and whom to tell.
#[derive(Clone, Debug, Default)]
pub struct Automation {
    pub schedule: Schedule,
    pub keep: Keep,
    pub hooks: Hooks,
    pub notify: Notify,
    /// A host without a good backup for this long is "late" and its owner is told.
    pub stale_after: Option<Duration>,
}

impl Validator<'_> {
    pub(super) fn daemon(&self, raw: Option<Spanned<RawDaemon>>) -> Result<Daemon> {
        let mut d = Daemon::default();
        let Some(raw) = raw else { return Ok(d) };
        let raw = raw.into_inner();
        if let Some(s) = raw.state_dir {
            d.state_dir = self.resolve(s.get_ref());
        }
        if let Some(n) = raw.max_concurrent {
            d.max_concurrent = match usize::try_from(*n.get_ref()) {
                Ok(v @ 1..=64) => v,
                _ => return self.err(n.span(), "daemon.max_concurrent", "must be 1 to 64"),
            };
        }
        if let Some(s) = raw.presence_interval {
            d.presence_interval =
                self.duration(&s, "daemon.presence_interval", Duration::from_secs(5))?;
        }
        if let Some(s) = raw.shutdown_grace {
            d.shutdown_grace = self.duration(&s, "daemon.shutdown_grace", Duration::ZERO)?;
        }
        if let Some(w) = raw.watch {
            d.watch = w
                .get_ref()
                .iter()
                .map(|p| self.resolve(p.get_ref()))
                .collect();
        }
        if let Some(s) = raw.log {
            d.log = logging::Target::parse(s.get_ref())
                .or_else(|m| self.err(s.span(), "daemon.log", m))?;
        }
        Ok(d)
    }

    pub(super) fn min_free(&self, raw: Option<Spanned<String>>) -> Result<Option<MinFree>> {
        raw.map(|s| {
            MinFree::parse(s.get_ref()).or_else(|m| self.err(s.span(), "storage.min_free", m))
        })
        .transpose()
    }

    /// Host values override defaults, key by key.
    pub(super) fn automation(
        &self,
        h: &RawHost,
        d: &RawHost,
        key: &dyn Fn(&str) -> String,
        is_local: bool,
    ) -> Result<Automation> {
        let mut schedule = Schedule::default();
        // "When" is one setting: a host that says anything about it replaces the defaults'
        // schedule and every together, so `schedule = "manual"` is not undone by a default `every`.
        let when = if h.schedule.is_some() || h.every.is_some() {
            h
        } else {
            d
        };
        let (cron, every) = (when.schedule.as_ref(), when.every.as_ref());
        let manual = cron.is_some_and(|s| s.get_ref().trim() == "manual");
        if let (true, Some(e)) = (manual, every) {
            return self.err(
                e.span(),
                &key("every"),
                "cannot be combined with schedule = \"manual\" (manual means: only when asked)"
                    .to_string(),
            );
        }
        if let Some(s) = cron {
            if s.get_ref().trim() != "manual" {
                schedule.cron = Some(
                    CronSpec::parse(s.get_ref())
                        .or_else(|m| self.err(s.span(), &key("schedule"), m))?,
                );
            }
        }
        if let Some(s) = every {
            schedule.every =
                Some(parse_every(s.get_ref()).or_else(|m| self.err(s.span(), &key("every"), m))?);
        }
        if cron.is_none() && every.is_none() {
            // Nobody has to remember anything: a host with no schedule is kept a day fresh.
            schedule.every = Some(Duration::from_secs(24 * 3600));
        }
        if let Some(list) = h.blackout.as_ref().or(d.blackout.as_ref()) {
            for w in list.get_ref() {
                schedule.blackout.push(
                    Window::parse(w.get_ref())
                        .or_else(|m| self.err(w.span(), &key("blackout"), m))?,
                );
            }
        }

        let keep = match h.keep.as_ref().or(d.keep.as_ref()) {
            None => Keep::default(),
            Some(v) => {
                Keep::from_toml(v.get_ref()).or_else(|m| self.err(v.span(), &key("keep"), m))?
            }
        };

        let hook =
            |v: &Option<Spanned<toml::Value>>, dv: &Option<Spanned<toml::Value>>, name: &str| {
                v.as_ref()
                    .or(dv.as_ref())
                    .map(|v| -> Result<Hook> {
                        let hook = Hook::from_toml(v.get_ref())
                            .or_else(|m| self.err(v.span(), &key(name), m))?;
                        if is_local && hook.place == crate::hooks::Where::Remote {
                            return self.err(
                            v.span(),
                            &key(name),
                            "where = \"remote\" needs an SSH host; this host is source = \"local\"",
                        );
                        }
                        Ok(hook)
                    })
                    .transpose()
            };
        let hooks = Hooks {
            before: hook(&h.before, &d.before, "before")?,
            after: hook(&h.after, &d.after, "after")?,
            on_error: hook(&h.on_error, &d.on_error, "on_error")?,
        };

        let notify = match h.notify.as_ref().or(d.notify.as_ref()) {
            None => Notify::Off,
            Some(s) => {
                let user = h.notify_user.as_ref().or(d.notify_user.as_ref());
                let n = Notify::parse(s.get_ref(), user.map(|u| u.get_ref().as_str()))
                    .or_else(|m| self.err(s.span(), &key("notify"), m))?;
                if is_local && n != Notify::Off {
                    return self.err(s.span(), &key("notify"), "notifications go to an SSH host's desktop; this host is source = \"local\"");
                }
                n
            }
        };

        let stale_after = match h.stale_after.as_ref().or(d.stale_after.as_ref()) {
            None => Some(Duration::from_secs(3 * 24 * 3600)),
            Some(s) if s.get_ref() == "off" => None,
            Some(s) => Some(self.duration(s, &key("stale_after"), Duration::from_secs(60))?),
        };

        Ok(Automation {
            schedule,
            keep,
            hooks,
            notify,
            stale_after,
        })
    }

    fn duration(&self, s: &Spanned<String>, key: &str, min: Duration) -> Result<Duration> {
        let t = humantime::parse_duration(s.get_ref()).or_else(|e| {
            self.err(
                s.span(),
                key,
                format!(
                    "{:?}: {e} (examples: \"30s\", \"6h\", \"3days\")",
                    s.get_ref()
                ),
            )
        })?;
        if t < min {
            return self.err(
                s.span(),
                key,
                format!("must be at least {}", humantime::format_duration(min)),
            );
        }
        Ok(t)
    }
}
