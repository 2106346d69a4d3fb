//! `snapnest backup`: run here with live progress, or hand the request to the running daemon
//! and wait for its answer (two processes never write to one storage folder).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::config::{Config, Host};
use crate::daemon::{lock, queue, state};
use crate::job::{self, Progress};
use crate::model::Outcome;
use crate::storage::Storage;

pub fn backup(config: &Config, hosts: &[String], all: bool) -> anyhow::Result<i32> {
    let selected: Vec<&Host> = if all {
        config.hosts.iter().collect()
    } else {
        hosts
            .iter()
            .map(|h| config.host(h))
            .collect::<Result<_, _>>()?
    };
    if selected.is_empty() {
        bail!("no hosts configured in {}", config.file.display());
    }
    let state_dir = &config.daemon.state_dir;
    if let Some(pid) = lock::daemon_pid(state_dir) {
        return via_daemon(config, pid, &selected);
    }
    let storage = Storage::open(&config.storage)?;
    let _writer = storage.lock_writer(|busy| {
        eprintln!(
            "snapnest: storage {} is in use by {}; waiting for it to finish (Ctrl-C to give up)",
            config.storage.display(),
            busy.holder
        )
    })?;
    let mut worst = Outcome::Good;
    for host in selected {
        let report = backup_with_progress(&storage, host);
        for a in &report.advice {
            eprintln!("{}: {a}", host.name);
        }
        print_problems(report.problems.iter().map(|p| p.to_string()));
        println!("{}", report.summary());
        worst = worst.worst(report.outcome);
    }
    Ok(worst.exit_code())
}

fn print_problems(lines: impl ExactSizeIterator<Item = String>) {
    let total = lines.len();
    for l in lines.take(20) {
        eprintln!("  {l}");
    }
    if total > 20 {
        eprintln!("  … and {} more (see the catalog)", total - 20);
    }
}

/// The daemon owns the storage: queue the hosts ahead of its scheduled work and wait.
fn via_daemon(config: &Config, pid: u32, hosts: &[&Host]) -> anyhow::Result<i32> {
    let state_dir = &config.daemon.state_dir;
    eprintln!("snapnest: the daemon (pid {pid}) is running; asking it to back up now");
    let ids: Vec<(String, String)> = hosts
        .iter()
        .map(|h| Ok((h.name.clone(), queue::submit(state_dir, &h.name)?)))
        .collect::<crate::Result<_>>()?;
    let mut worst = Outcome::Good;
    let on_terminal = std::io::stderr().is_terminal();
    for (name, id) in ids {
        let mut last_line = String::new();
        let done = queue::wait(state_dir, &id, || {
            if !on_terminal {
                return;
            }
            let line = daemon_progress(state_dir, &name);
            if line != last_line {
                eprint!("\r\x1b[2K{line}");
                last_line = line;
            }
        })?;
        if on_terminal {
            eprint!("\r\x1b[2K");
        }
        print_problems(done.problems.clone().into_iter());
        println!("{}", done.summary);
        worst = worst.worst(Outcome::parse(&done.outcome).unwrap_or(Outcome::Failed));
    }
    Ok(worst.exit_code())
}

fn daemon_progress(state_dir: &std::path::Path, host: &str) -> String {
    let Ok(Some(st)) = state::read(state_dir) else {
        return format!("{host}: waiting for the daemon");
    };
    match st.hosts.iter().find(|h| h.name == host).map(|h| &h.state) {
        Some(state::HostState::Running(r)) => format!(
            "{host}: {}",
            job::progress_line(
                &r.phase,
                (r.files_done, r.files_total),
                (r.bytes_done, r.bytes_total),
                r.rate
            )
        ),
        Some(s) => format!("{host}: {} (waiting for the daemon)", s.word()),
        None => format!("{host}: waiting for the daemon"),
    }
}

/// Run one host's backup, drawing live progress on a terminal.
pub fn backup_with_progress(storage: &Storage, host: &Host) -> job::Report {
    let progress = Arc::new(Progress::new());
    let done = Arc::new(AtomicBool::new(false));
    let drawer = std::io::stderr().is_terminal().then(|| {
        let (progress, done, name) = (progress.clone(), done.clone(), host.name.clone());
        std::thread::spawn(move || draw(&name, &progress, &done))
    });
    let report = crate::runner::run_host(storage, host, &progress);
    done.store(true, Ordering::Relaxed);
    if let Some(t) = drawer {
        let _ = t.join();
    }
    report
}

fn draw(name: &str, progress: &Progress, done: &AtomicBool) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("valid template"),
    );
    let mut last = (Instant::now(), 0u64);
    let mut rate = 0.0;
    while !done.load(Ordering::Relaxed) {
        let v = progress.view();
        let elapsed = last.0.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            rate = v.bytes_done.saturating_sub(last.1) as f64 / elapsed;
            last = (Instant::now(), v.bytes_done);
        }
        let mut current = v.current.clone();
        if current.chars().count() > 50 {
            current = format!(
                "…{}",
                current
                    .chars()
                    .rev()
                    .take(49)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            );
        }
        bar.set_message(format!(
            "{name}: {} {current}",
            job::progress_line(
                v.phase,
                (v.files_done, v.files_total),
                (v.bytes_done, v.bytes_total),
                rate as u64
            )
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
}
