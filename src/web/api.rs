//! For machines: `/api/status` (the daemon's status plus each host's last run, as JSON),
//! `/metrics` (Prometheus text) and `/healthz`.

use std::fmt::Write as _;

use serde::Serialize;

use super::http::Response;
use super::pages::{overall, Sources};
use crate::catalog::RunDetail;
use crate::config::Config;
use crate::daemon::state::{DaemonStatus, Disk, HostState};

#[derive(Serialize)]
struct HostJson<'a> {
    name: &'a str,
    /// ok, late, failing, running, waiting for disk, never
    summary: &'static str,
    detail: String,
    last_run: Option<RunJson>,
}

#[derive(Serialize)]
struct RunJson {
    id: i64,
    state: String,
    started_ms: i64,
    finished_ms: Option<i64>,
    files: u64,
    bytes: u64,
    new_bytes: u64,
    warnings: u64,
    errors: u64,
    snapshot: Option<String>,
    message: Option<String>,
}

impl From<RunDetail> for RunJson {
    fn from(r: RunDetail) -> Self {
        RunJson {
            id: r.id,
            state: r.state,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            files: r.files,
            bytes: r.bytes,
            new_bytes: r.new_bytes,
            warnings: r.warnings,
            errors: r.errors,
            snapshot: r.snapshot,
            message: r.message,
        }
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    daemon: Option<&'a DaemonStatus>,
    hosts: Vec<HostJson<'a>>,
    verify: crate::verify::status::VerifyStatus,
}

fn last_run(src: &Sources, host: &str) -> Option<RunDetail> {
    src.catalog
        .as_ref()
        .and_then(|c| c.runs(host, 1).ok())
        .and_then(|mut r| r.pop())
}

pub fn status(config: &Config) -> Response {
    let src = Sources::read(config);
    let hosts = config
        .hosts
        .iter()
        .map(|h| {
            let hs = src.host(&h.name);
            let run = last_run(&src, &h.name);
            let last_good = hs.and_then(|s| s.last_good_ms).or_else(|| {
                src.catalog
                    .as_ref()
                    .and_then(|c| c.host_history(&h.name).ok())
                    .and_then(|x| x.last_good_started_ms)
            });
            let (summary, detail) = overall(hs, last_good);
            HostJson {
                name: &h.name,
                summary,
                detail,
                last_run: run.map(RunJson::from),
            }
        })
        .collect();
    let body = StatusJson {
        daemon: src.status.as_ref(),
        hosts,
        verify: verify_status(&src),
    };
    match serde_json::to_string_pretty(&body) {
        Ok(s) => Response::new(200, "application/json", s).with("Cache-Control", "no-store"),
        Err(e) => Response::text(500, format!("{e}\n")),
    }
}

fn verify_status(src: &Sources) -> crate::verify::status::VerifyStatus {
    crate::verify::status::VerifyStatus::read(
        src.catalog.as_ref(),
        src.status.as_ref().and_then(|s| s.verifying.as_ref()),
    )
}

pub fn metrics(config: &Config) -> Response {
    let src = Sources::read(config);
    let mut m = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, rows: &[(String, f64)]| {
        let _ = writeln!(
            m,
            "# HELP snapnest_{name} {help}\n# TYPE snapnest_{name} {kind}"
        );
        for (labels, v) in rows {
            let _ = writeln!(m, "snapnest_{name}{labels} {v}");
        }
    };
    let label = |h: &str| {
        format!(
            "{{host=\"{}\"}}",
            h.replace('\\', "\\\\").replace('"', "\\\"")
        )
    };
    let mut success = Vec::new();
    let mut duration = Vec::new();
    let mut bytes = Vec::new();
    let mut new_bytes = Vec::new();
    let mut errors = Vec::new();
    let mut running = Vec::new();
    let mut late = Vec::new();
    for h in &config.hosts {
        let l = label(&h.name);
        let runs = src
            .catalog
            .as_ref()
            .and_then(|c| c.runs(&h.name, 20).ok())
            .unwrap_or_default();
        if let Some(good) = runs
            .iter()
            .find(|r| r.state == "good" || r.state == "partial")
        {
            let end = good.finished_ms.unwrap_or(good.started_ms);
            success.push((l.clone(), end as f64 / 1000.0));
            duration.push((l.clone(), (end - good.started_ms) as f64 / 1000.0));
            bytes.push((l.clone(), good.bytes as f64));
            new_bytes.push((l.clone(), good.new_bytes as f64));
        }
        if let Some(last) = runs.iter().find(|r| r.state != "running") {
            let failed = if last.state == "failed" { 1 } else { 0 };
            errors.push((l.clone(), (last.errors + failed) as f64));
        }
        let hs = src.host(&h.name);
        running.push((
            l.clone(),
            hs.is_some_and(|s| matches!(s.state, HostState::Running(_))) as u8 as f64,
        ));
        late.push((l, hs.is_some_and(|s| s.late) as u8 as f64));
    }
    metric(
        "last_success_timestamp_seconds",
        "End of the newest run that published a snapshot.",
        "gauge",
        &success,
    );
    metric(
        "last_success_duration_seconds",
        "Duration of that run.",
        "gauge",
        &duration,
    );
    metric(
        "last_success_bytes",
        "Bytes in that snapshot.",
        "gauge",
        &bytes,
    );
    metric(
        "last_success_new_bytes",
        "Bytes fetched by that run.",
        "gauge",
        &new_bytes,
    );
    metric(
        "last_run_errors",
        "Per-file errors of the newest finished run, plus 1 if it failed.",
        "gauge",
        &errors,
    );
    metric(
        "running",
        "1 while a backup of the host runs.",
        "gauge",
        &running,
    );
    metric(
        "late",
        "1 when the host has no good backup within its stale_after.",
        "gauge",
        &late,
    );
    let v = verify_status(&src);
    if let Some(r) = &v.last {
        let one = |x: f64| [(String::new(), x)];
        let end = r.finished_ms.unwrap_or(r.started_ms) as f64 / 1000.0;
        metric(
            "verify_last_run_timestamp_seconds",
            "End of the newest verify run.",
            "gauge",
            &one(end),
        );
        metric(
            "verify_files_checked",
            "Files read by that run.",
            "gauge",
            &one(r.checked as f64),
        );
        metric(
            "verify_files_damaged",
            "Files that run found missing, different or unreadable.",
            "gauge",
            &one(r.damaged as f64),
        );
        metric(
            "verify_files_not_hashed",
            "Files in its scope without a recorded hash (older snapshots).",
            "gauge",
            &one(r.not_hashed as f64),
        );
    }
    metric(
        "verify_running",
        "1 while a scheduled verify runs.",
        "gauge",
        &[(String::new(), v.running.is_some() as u8 as f64)],
    );
    match src.status.as_ref().map(|s| &s.disk) {
        Some(Disk::Ready { total, free }) => {
            metric(
                "disk_free_bytes",
                "Space available on the backup disk.",
                "gauge",
                &[(String::new(), *free as f64)],
            );
            metric(
                "disk_total_bytes",
                "Size of the backup disk.",
                "gauge",
                &[(String::new(), *total as f64)],
            );
            metric(
                "disk_present",
                "1 when the backup disk is mounted and marked.",
                "gauge",
                &[(String::new(), 1.0)],
            );
        }
        _ => metric(
            "disk_present",
            "1 when the backup disk is mounted and marked.",
            "gauge",
            &[(String::new(), 0.0)],
        ),
    }
    Response::new(200, "text/plain; version=0.0.4; charset=utf-8", m)
}

/// 200 while the daemon is writing its status and the disk is there; 503 says which not.
pub fn healthz(config: &Config) -> Response {
    let src = Sources::read(config);
    match src.status.as_ref().map(|s| &s.disk) {
        None => Response::text(503, "daemon status not available\n"),
        Some(Disk::Missing { why }) => Response::text(503, format!("backup disk missing: {why}\n")),
        Some(_) => Response::text(200, "ok\n"),
    }
}
