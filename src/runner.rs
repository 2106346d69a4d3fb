//! One backup as users configured it: the `before` hook, the job, then `after` or
//! `on_error`, then a desktop notification on the backed-up machine. Used by the daemon
//! and by `snapnest backup` alike, so hooks never depend on who started the run.

use std::time::{Duration, Instant};

use crate::config::Host;
use crate::hooks::{self, Event, HookEnv, Notify};
use crate::job::{self, Progress, Report};
use crate::logging;
use crate::model::Outcome;
use crate::storage::Storage;

pub fn run_host(storage: &Storage, host: &Host, progress: &Progress) -> Report {
    // A bug must cost one run, not the daemon's knowledge that the host is idle again.
    let run = std::panic::AssertUnwindSafe(|| run_host_inner(storage, host, progress));
    std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown");
        record_failure(
            storage,
            host,
            format!("internal error (a bug in snapnest): {what}"),
        )
    })
}

fn run_host_inner(storage: &Storage, host: &Host, progress: &Progress) -> Report {
    let hooks = &host.automation.hooks;
    if let Some(before) = &hooks.before {
        progress.set_phase("before hook");
        if let Err(e) = hooks::run_hook(before, host, &HookEnv::before(&host.name, None)) {
            // The "dump the database first" case: no dump, no backup; snapshots untouched.
            let report = record_failure(storage, host, e.to_string());
            after(host, &report);
            return report;
        }
    }
    let report = job::backup_host(storage, host, progress);
    after(host, &report);
    report
}

/// `after` for a published snapshot, `on_error` for a failure; then tell the desktop.
fn after(host: &Host, report: &Report) {
    if report.interrupted {
        return;
    }
    let run = report
        .run_id
        .map(|r| r.to_string())
        .unwrap_or_else(|| "-".into());
    let event = if report.outcome == Outcome::Failed {
        Event::OnError
    } else {
        Event::After
    };
    if let Some(hook) = host.automation.hooks.get(event) {
        let env = HookEnv::from_report(event, report, report.run_id);
        match hooks::run_hook(hook, host, &env) {
            Ok(_) => logging::info(format!(
                "host={} run={run} {} hook done",
                host.name,
                event.as_str()
            )),
            Err(e) => logging::warn(format!("host={} run={run} {e}", host.name)),
        }
    }
    if host.automation.notify != Notify::Off {
        let (title, body) = hooks::report_message(report);
        if let Err(e) = hooks::notify(host, &host.automation.notify, &title, &body) {
            logging::warn(format!(
                "host={} run={run} notification not shown: {e}",
                host.name
            ));
        }
    }
}

/// A run that ended before the job started (its `before` hook failed), in the catalog
/// like any other failed run, so status, backoff and history see it.
fn record_failure(storage: &Storage, host: &Host, message: String) -> Report {
    let started = Instant::now();
    let mut report = Report::failed(&host.name, Some(message));
    let recorded = storage.catalog().and_then(|mut c| {
        let now = job::now_ms();
        let id = c.begin_run(&host.name, now)?;
        c.finish_run(
            id,
            Outcome::Failed,
            &report.stats,
            report.message.as_deref(),
            &[],
            now,
        )?;
        Ok(id)
    });
    match recorded {
        Ok(id) => report.run_id = Some(id),
        Err(e) => logging::error(format!("host={} recording the failed run: {e}", host.name)),
    }
    report.duration = started.elapsed();
    report
}

/// Tell the host's owner that backups stopped happening.
pub fn notify_stale(host: &Host, last_good_ms: Option<i64>) {
    let age = last_good_ms
        .map(|ms| Duration::from_millis(job::now_ms().saturating_sub(ms).max(0) as u64));
    let (title, body) = hooks::stale_message(&host.name, age);
    match hooks::notify(host, &host.automation.notify, &title, &body) {
        Ok(()) => logging::info(format!("host={} late: owner notified", host.name)),
        Err(e) => logging::warn(format!(
            "host={} late, notification not shown: {e}",
            host.name
        )),
    }
}
