//! `snapnest status` and `snapnest prune`: reading what the daemon and the catalog know,
//! and carrying out retention by hand.

use std::time::Duration;

use chrono::{Local, TimeZone, Utc};

use crate::config::Config;
use crate::daemon::lock;
use crate::daemon::state::{self, Disk, HostState};
use crate::storage::Storage;

fn when(ms: i64) -> String {
    Local
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "?".into())
}

fn ago(ms: i64) -> String {
    let d = Utc::now().timestamp_millis() - ms;
    if d < 0 {
        return "in the future".into();
    }
    let secs = (d / 1000) as u64;
    let rounded = if secs >= 86400 {
        secs / 3600 * 3600
    } else if secs >= 3600 {
        secs / 60 * 60
    } else {
        secs
    };
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(rounded))
    )
}

pub fn status(config: &Config, json: bool) -> anyhow::Result<i32> {
    let state_dir = &config.daemon.state_dir;
    let pid = lock::daemon_pid(state_dir);
    let st = if pid.is_some() {
        state::read(state_dir)?
    } else {
        None
    };
    if json {
        match &st {
            Some(s) => println!("{}", serde_json::to_string_pretty(s)?),
            None => println!("{{\"daemon\": \"not running\"}}"),
        }
        return Ok(0);
    }
    match (&st, pid) {
        (Some(s), _) => println!(
            "daemon: running, pid {}, started {} ({})",
            s.pid,
            when(s.started_ms),
            state_dir.display()
        ),
        (None, Some(p)) => println!("daemon: starting, pid {p}"),
        (None, None) => println!(
            "daemon: not running (start it with `snapnest daemon`); showing the catalog only"
        ),
    }
    let disk_line = match st.as_ref().map(|s| &s.disk) {
        Some(Disk::Ready { total, free }) => format!(
            "{} free of {}",
            bytesize::ByteSize(*free),
            bytesize::ByteSize(*total)
        ),
        Some(Disk::Missing { why }) => format!("MISSING, backups wait for it: {why}"),
        _ => match Storage::open(&config.storage) {
            Ok(_) => "present".into(),
            Err(e) => format!("MISSING: {e}"),
        },
    };
    println!("storage: {}: {disk_line}", config.storage.display());
    if let Some(note) = st.as_ref().and_then(|s| s.note.as_ref()) {
        println!("note: {note}");
    }
    if let Some(n) = st.as_ref().map(|s| s.deleting).filter(|n| *n > 0) {
        println!("pruning: {n} snapshot(s) being deleted in the background");
    }
    let catalog = Storage::open(&config.storage)
        .and_then(|s| s.catalog())
        .ok();
    let verify = crate::verify::status::VerifyStatus::read(
        catalog.as_ref(),
        st.as_ref().and_then(|s| s.verifying.as_ref()),
    );
    println!(
        "verify: {}{}",
        if verify.damaged() {
            "DAMAGE FOUND: "
        } else {
            ""
        },
        verify.line(when)
    );
    for line in verify.damage_lines().iter().take(10) {
        println!("  damaged: {line}");
    }
    println!(
        "{:<16} {:<10} {:<26} {:<18} NOTE",
        "HOST", "STATE", "LAST GOOD", "NEXT DUE"
    );
    for host in &config.hosts {
        let hs = st
            .as_ref()
            .and_then(|s| s.hosts.iter().find(|h| h.name == host.name));
        let history = catalog
            .as_ref()
            .and_then(|c| c.host_history(&host.name).ok());
        let last_good = hs
            .and_then(|h| h.last_good_ms)
            .or(history.as_ref().and_then(|h| h.last_good_started_ms));
        let mut word = hs.map(|h| h.state.word()).unwrap_or("-").to_string();
        if hs.is_some_and(|h| h.late) {
            word = format!("LATE/{word}");
        }
        let last = last_good
            .map(|ms| format!("{} ({})", when(ms), ago(ms).replace(" ago", "")))
            .unwrap_or_else(|| "never".into());
        let next = match hs.and_then(|h| h.next_due_ms) {
            Some(ms) if ms <= Utc::now().timestamp_millis() => "now".to_string(),
            Some(ms) => when(ms),
            None if hs.is_some() => "on request".into(),
            None => "-".into(),
        };
        let note = match hs.map(|h| &h.state) {
            Some(HostState::Running(r)) => format!(
                "{} {}",
                crate::job::progress_line(
                    &r.phase,
                    (r.files_done, r.files_total),
                    (r.bytes_done, r.bytes_total),
                    r.rate
                ),
                r.current
            ),
            Some(HostState::Away { why, .. }) => format!("not reachable: {why}"),
            Some(HostState::Blackout { until_ms }) => format!("blackout until {}", when(*until_ms)),
            Some(HostState::Backoff { until_ms }) => format!(
                "{} failure(s) in a row, retry at {}",
                hs.map(|h| h.failures).unwrap_or(0),
                when(*until_ms)
            ),
            Some(HostState::WaitingForDisk) => "waiting for the backup disk".into(),
            Some(HostState::WaitingForStorage { holder }) => format!("storage in use by {holder}"),
            Some(HostState::CatalogUnreadable { why }) => format!("cannot read its history: {why}"),
            _ => {
                let run = history.as_ref().and_then(|h| h.last_run.clone());
                match run {
                    Some(r) if r.state == "failed" || r.state == "interrupted" => {
                        format!("last run {}: {}", r.state, r.message.unwrap_or_default())
                    }
                    Some(r) => format!("last run {} {}", r.state, ago(r.started_ms)),
                    None => String::new(),
                }
            }
        };
        println!(
            "{:<16} {:<10} {:<26} {:<18} {}",
            host.name, word, last, next, note
        );
    }
    Ok(0)
}

pub fn prune(config: &Config, only: Option<&str>, dry_run: bool) -> anyhow::Result<i32> {
    if let Some(h) = only {
        config.host(h)?;
    }
    let storage = Storage::open(&config.storage)?;
    let _writer = if dry_run {
        None
    } else {
        Some(storage.lock_writer(|busy| {
            eprintln!(
                "snapnest: storage is in use by {}; waiting for it to finish (Ctrl-C to give up)",
                busy.holder
            )
        })?)
    };
    if !dry_run {
        // A prune (or daemon) killed mid-deletion left these marked: finish them first.
        for (id, host, name) in storage.catalog()?.deleting()? {
            let d = crate::daemon::deleter::Doomed { id, host, name };
            crate::daemon::deleter::delete(&storage, &d)?;
            println!(
                "{}: finished deleting {} (left by an interrupted prune)",
                d.host, d.name
            );
        }
    }
    let now = Utc::now();
    let (mut gone, mut kept) = (0, 0);
    for host in config
        .hosts
        .iter()
        .filter(|h| only.is_none_or(|o| o == h.name))
    {
        if let Some(why) = crate::prune::hold_reason(&storage, host)? {
            println!("{}: not pruned: {why}", host.name);
            continue;
        }
        println!("{} (keep {}):", host.name, host.automation.keep.describe());
        for v in crate::prune::plan_host(&storage, host, now)? {
            let verb = match (v.keep, dry_run) {
                (true, _) => "keep ",
                (false, true) => "would prune",
                (false, false) => "prune",
            };
            println!("  {verb:<11} {}  {}", v.name, v.reasons.join(", "));
            if v.keep {
                kept += 1;
            } else {
                gone += 1;
                if !dry_run {
                    crate::prune::delete_now(&storage, &host.name, &v)?;
                }
            }
        }
    }
    println!(
        "{} {gone} snapshot(s), kept {kept}{}",
        if dry_run { "would prune" } else { "pruned" },
        if dry_run {
            " (dry run: nothing deleted)"
        } else {
            ""
        }
    );
    Ok(0)
}
