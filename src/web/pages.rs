//! The dashboard and the host page: the daemon's status file for what is happening now, the
//! catalog for what happened.

use askama::Template;

use super::auth::Who;
use super::http::{percent_encode, Response};
use super::view::{self, Chrome, Progress};
use crate::catalog::Catalog;
use crate::config::{Config, Host};
use crate::daemon::state::{self, DaemonStatus, Disk, HostState, HostStatus};
use crate::storage::Storage;

/// Where the dashboard and API read from: the status file and, when the disk is there,
/// the catalog.
pub struct Sources {
    pub status: Option<DaemonStatus>,
    pub catalog: Option<Catalog>,
}

impl Sources {
    pub fn read(config: &Config) -> Sources {
        Sources {
            status: state::read(&config.daemon.state_dir).ok().flatten(),
            catalog: Storage::open(&config.storage)
                .and_then(|s| s.catalog())
                .ok(),
        }
    }

    pub fn host(&self, name: &str) -> Option<&HostStatus> {
        self.status
            .as_ref()
            .and_then(|s| s.hosts.iter().find(|h| h.name == name))
    }
}

/// The six words: ok / late / failing / running / waiting for disk / never, plus
/// the daemon's own finer state as detail.
pub fn overall(hs: Option<&HostStatus>, last_good: Option<i64>) -> (&'static str, String) {
    let Some(hs) = hs else {
        return match last_good {
            Some(_) => ("ok", "daemon state unknown".into()),
            None => ("never", "daemon state unknown".into()),
        };
    };
    let detail = match &hs.state {
        HostState::Scheduled => "scheduled".to_string(),
        HostState::Manual => "backed up on request only".into(),
        HostState::Queued {
            requested: true, ..
        } => "requested, starting".into(),
        HostState::Queued { .. } => "due, starting".into(),
        HostState::Running(r) => format!("since {}", view::date(r.started_ms)),
        HostState::Away { why, .. } => format!("away: {why}"),
        HostState::Blackout { until_ms } => format!("blackout until {}", view::date(*until_ms)),
        HostState::Backoff { until_ms } => format!(
            "{} failure(s); next try {}",
            hs.failures,
            view::until(*until_ms)
        ),
        HostState::WaitingForDisk => "due, but the backup disk is missing".into(),
        HostState::WaitingForStorage { holder } => format!("waiting: storage in use by {holder}"),
        HostState::CatalogUnreadable { why } => format!("held: the catalog can't be read: {why}"),
    };
    let word = match &hs.state {
        HostState::Running(_) => "running",
        HostState::WaitingForDisk => "waiting for disk",
        HostState::CatalogUnreadable { .. } => "failing",
        _ if hs.failures > 0 || hs.last_result.as_deref() == Some("failed") => "failing",
        _ if last_good.is_none() => "never",
        _ if hs.late => "late",
        _ => "ok",
    };
    (word, detail)
}

fn class(word: &str) -> &'static str {
    match word {
        "ok" => "ok",
        "late" => "late",
        "running" => "running",
        "waiting for disk" => "disk",
        "never" => "never",
        _ => "failing",
    }
}

pub fn host_url(name: &str) -> String {
    format!("/host/{}", percent_encode(name.as_bytes(), false))
}

struct HostRow {
    name: String,
    url: String,
    word: &'static str,
    class: &'static str,
    detail: String,
    last_good: String,
    last_good_date: String,
    next_due: String,
    last_result: String,
    counters: String,
    progress: Option<Progress>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    c: Chrome,
    message: Option<String>,
    hosts: Vec<HostRow>,
    disk: String,
    storage: String,
    strategy: String,
    deleting: usize,
    note: Option<String>,
    errors: Vec<(String, String, String)>,
    verify: String,
    verify_damage: Vec<String>,
}

pub fn disk_line(status: Option<&DaemonStatus>) -> String {
    match status.map(|s| &s.disk) {
        Some(Disk::Ready { total, free }) => format!(
            "{} free of {} ({}% used)",
            view::bytes(*free),
            view::bytes(*total),
            if *total > 0 {
                (total - free.min(total)) * 100 / total
            } else {
                0
            }
        ),
        Some(Disk::Missing { why }) => format!("MISSING: backups wait for it ({why})"),
        _ => "unknown".into(),
    }
}

pub fn dashboard(config: &Config, who: &Who, message: Option<String>) -> Response {
    let src = Sources::read(config);
    let mut any_running = false;
    let mut errors = Vec::new();
    let hosts = config
        .hosts
        .iter()
        .map(|h| {
            let hs = src.host(&h.name);
            // The newest finished run: a running one has no counters yet.
            let last_run = src
                .catalog
                .as_ref()
                .and_then(|c| c.runs(&h.name, 2).ok())
                .and_then(|r| r.into_iter().find(|r| r.state != "running"));
            let last_good = hs.and_then(|s| s.last_good_ms).or_else(|| {
                src.catalog
                    .as_ref()
                    .and_then(|c| c.host_history(&h.name).ok())
                    .and_then(|hh| hh.last_good_started_ms)
            });
            let (word, detail) = overall(hs, last_good);
            let progress = match hs.map(|s| &s.state) {
                Some(HostState::Running(r)) => {
                    any_running = true;
                    Some(Progress::from(r))
                }
                Some(HostState::Queued { .. }) => {
                    any_running = true;
                    None
                }
                _ => None,
            };
            if let (Some(r), Some(c)) = (&last_run, &src.catalog) {
                if r.state == "failed" {
                    errors.push((
                        h.name.clone(),
                        view::date(r.started_ms),
                        r.message.clone().unwrap_or_default(),
                    ));
                }
                if r.errors > 0 {
                    for p in c.problems(r.id).unwrap_or_default().iter().take(3) {
                        errors.push((h.name.clone(), view::date(r.started_ms), p.to_string()));
                    }
                }
            }
            HostRow {
                name: h.name.clone(),
                url: host_url(&h.name),
                word,
                class: class(word),
                detail,
                last_good: last_good.map(view::ago).unwrap_or_else(|| "never".into()),
                last_good_date: last_good.map(view::date).unwrap_or_default(),
                next_due: match hs.map(|s| s.next_due_ms) {
                    Some(Some(ms)) => view::until(ms),
                    Some(None) => "on request".into(),
                    None => "–".into(),
                },
                last_result: last_run
                    .as_ref()
                    .map(|r| format!("{} {}", r.state, view::ago(r.started_ms)))
                    .unwrap_or_else(|| "–".into()),
                counters: last_run
                    .as_ref()
                    .map(|r| {
                        format!(
                            "{} files, {} ({} new), {} warnings, {} errors",
                            r.files,
                            view::bytes(r.bytes),
                            view::bytes(r.new_bytes),
                            r.warnings,
                            r.errors
                        )
                    })
                    .unwrap_or_default(),
                progress,
            }
        })
        .collect();
    let verify = crate::verify::status::VerifyStatus::read(
        src.catalog.as_ref(),
        src.status.as_ref().and_then(|s| s.verifying.as_ref()),
    );
    let mut c = Chrome::new("machines", who);
    if any_running {
        c.refresh = 3;
    }
    let page = Dashboard {
        c,
        message,
        hosts,
        disk: disk_line(src.status.as_ref()),
        storage: config.storage.display().to_string(),
        strategy: strategy_name(src.catalog.as_ref()),
        deleting: src.status.as_ref().map_or(0, |s| s.deleting),
        note: src.status.as_ref().and_then(|s| s.note.clone()),
        errors,
        verify: verify.line(view::date),
        verify_damage: verify.damage_lines(),
    };
    render(&page)
}

/// The destination strategy recorded by `init` (or the last re-probe), with the filesystem
/// it was chosen for: "btrfs (btrfs)", "history (exfat)".
fn strategy_name(catalog: Option<&Catalog>) -> String {
    match catalog.map(|c| c.strategy_info()) {
        Some(Ok(Some(i))) if !i.filesystem.is_empty() => {
            format!("{} ({})", i.strategy, i.filesystem)
        }
        Some(Ok(Some(i))) => i.strategy,
        Some(Ok(None)) => "not probed yet (hard links)".into(),
        Some(Err(e)) => format!("unknown ({e})"),
        None => "unknown (disk not available)".into(),
    }
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage {
    c: Chrome,
    message: Option<String>,
    name: String,
    word: &'static str,
    class: &'static str,
    detail: String,
    progress: Option<Progress>,
    backup_url: String,
    cancel_url: String,
    latest_url: Option<String>,
    chart: Chart,
    runs: Vec<RunLine>,
    problems: Vec<(String, String)>,
    schedule: String,
    keep: String,
    folders: Vec<String>,
}

struct RunLine {
    date: String,
    url: Option<String>,
    duration: String,
    files: u64,
    bytes: String,
    new_bytes: String,
    state: String,
    note: String,
}

/// Bars of new bytes and a line of durations, oldest run on the left.
#[derive(Default)]
struct Chart {
    width: u32,
    height: u32,
    bars: Vec<(u32, u32, u32, u32, String)>,
    line: String,
    dots: Vec<(u32, u32)>,
    max_bytes: String,
    max_duration: String,
}

fn chart(runs: &[crate::catalog::RunDetail]) -> Chart {
    let runs: Vec<_> = runs.iter().rev().collect();
    if runs.is_empty() {
        return Chart::default();
    }
    // At most 40 units a run, so a new host's first run is a bar, not a wall.
    let (h, step) = (100u32, (600 / runs.len().max(1) as u32).min(40));
    let w = step * runs.len() as u32;
    let dur = |r: &crate::catalog::RunDetail| {
        r.finished_ms.map_or(0, |f| (f - r.started_ms).max(0)) as u64
    };
    let max_b = runs.iter().map(|r| r.new_bytes).max().unwrap_or(0).max(1);
    let max_d = runs.iter().map(|r| dur(r)).max().unwrap_or(0).max(1);
    let mut c = Chart {
        width: w,
        height: h,
        max_bytes: view::bytes(max_b),
        max_duration: view::ms_span(max_d as i64),
        ..Chart::default()
    };
    for (i, r) in runs.iter().enumerate() {
        let x = i as u32 * step;
        let bh = ((r.new_bytes as f64 / max_b as f64) * (h - 4) as f64) as u32;
        c.bars.push((
            x + 1,
            h - bh,
            step.saturating_sub(2).max(1),
            bh,
            format!(
                "{}: {} new, {}",
                view::date(r.started_ms),
                view::bytes(r.new_bytes),
                view::ms_span(dur(r) as i64)
            ),
        ));
        let y = h - 2 - ((dur(r) as f64 / max_d as f64) * (h - 4) as f64) as u32;
        c.line.push_str(&format!("{},{} ", x + step / 2, y));
        c.dots.push((x + step / 2, y));
    }
    c
}

pub fn schedule_text(host: &Host) -> String {
    let s = &host.automation.schedule;
    let mut parts = Vec::new();
    if let Some(c) = &s.cron {
        parts.push(format!("cron \"{}\"", c.text()));
    }
    if let Some(e) = s.every {
        parts.push(format!("at least every {}", view::span(e)));
    }
    if parts.is_empty() {
        parts.push("on request only".into());
    }
    if !s.blackout.is_empty() {
        parts.push(format!("{} blackout window(s)", s.blackout.len()));
    }
    if let Some(st) = host.automation.stale_after {
        parts.push(format!("late after {}", view::span(st)));
    }
    parts.join("; ")
}

pub fn host(config: &Config, host: &Host, who: &Who, message: Option<String>) -> Response {
    let src = Sources::read(config);
    let hs = src.host(&host.name);
    let runs = src
        .catalog
        .as_ref()
        .and_then(|c| c.runs(&host.name, 30).ok())
        .unwrap_or_default();
    let last_good = hs.and_then(|s| s.last_good_ms).or_else(|| {
        runs.iter()
            .find(|r| r.state == "good" || r.state == "partial")
            .map(|r| r.started_ms)
    });
    let (word, detail) = overall(hs, last_good);
    let progress = match hs.map(|s| &s.state) {
        Some(HostState::Running(r)) => Some(Progress::from(r)),
        _ => None,
    };
    let finished = runs.iter().find(|r| r.state != "running");
    let problems = match (finished, &src.catalog) {
        (Some(r), Some(c)) => c
            .problems(r.id)
            .unwrap_or_default()
            .iter()
            .take(200)
            .map(|p| {
                (
                    p.path.clone(),
                    format!("{} {}: {}", p.severity.as_str(), p.action, p.message),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    let latest_url = src
        .catalog
        .as_ref()
        .and_then(|c| c.latest_snapshot(&host.name).ok().flatten())
        .map(|s| super::browse::browse_url(&host.name, &s.name, b""));
    let lines = runs
        .iter()
        .map(|r| RunLine {
            date: view::date(r.started_ms),
            url: r
                .snapshot
                .as_ref()
                .map(|s| super::browse::browse_url(&host.name, s, b"")),
            duration: r
                .finished_ms
                .map(|f| view::ms_span(f - r.started_ms))
                .unwrap_or_else(|| "–".into()),
            files: r.files,
            bytes: view::bytes(r.bytes),
            new_bytes: view::bytes(r.new_bytes),
            state: r.state.clone(),
            note: match (&r.message, r.warnings, r.errors) {
                (Some(m), _, _) if r.state != "good" => m.clone(),
                (_, 0, 0) => String::new(),
                (_, w, e) => format!("{w} warnings, {e} errors"),
            },
        })
        .collect();
    let mut c = Chrome::new(host.name.clone(), who);
    if progress.is_some() {
        c.refresh = 3;
    }
    let base = host_url(&host.name);
    render(&HostPage {
        c,
        message,
        name: host.name.clone(),
        word,
        class: class(word),
        detail,
        progress,
        backup_url: format!("{base}/backup"),
        cancel_url: format!("{base}/cancel"),
        latest_url,
        chart: chart(&runs),
        runs: lines,
        problems,
        schedule: schedule_text(host),
        keep: host.automation.keep.describe(),
        folders: host.folders.clone(),
    })
}

pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Response::html(200, html).with("Cache-Control", "no-store"),
        Err(e) => Response::text(500, format!("rendering the page failed: {e}\n")),
    }
}
