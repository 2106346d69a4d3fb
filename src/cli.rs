//! The command line: parse, dispatch to the library, print for humans, map to exit codes
//! (0 good, 1 partial, 2 failed or bad usage).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::config::{Config, SourceSpec};
use crate::job::{self, Progress};
use crate::model::Outcome;
use crate::source::ssh::Connection;
use crate::storage::{InitOutcome, Storage};

#[derive(Parser, Debug)]
#[command(
    name = "snapnest",
    version,
    about = "Pull machines over SSH into dated, hard-linked snapshots on a backup disk",
    after_help = "Config: --config FILE, else $SNAPNEST_CONFIG, else /etc/snapnest/snapnest.toml.\n\
                  Exit codes: 0 good, 1 partial (some files could not be read), 2 failed or bad usage.\n\
                  First time? `snapnest quickstart` backs up a sample folder into ./snapnest-data."
)]
pub struct Args {
    /// Config file to use.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Prepare the storage folder (which must exist): a marker with a unique id and the catalog.
    Init,
    /// Connect to a host, print its key fingerprint and the config line that pins it.
    Hostkey {
        /// Host name from the config.
        host: String,
    },
    /// Back up hosts now.
    Backup {
        /// Host names from the config.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        hosts: Vec<String>,
        /// Back up every configured host.
        #[arg(long)]
        all: bool,
    },
    /// List snapshots: date, files, bytes, new bytes, duration, result.
    List {
        /// Only this host.
        host: Option<String>,
    },
    /// Copy a file or folder out of a snapshot, with its metadata.
    Restore {
        host: String,
        /// Snapshot name (or unique prefix, e.g. 2026-11-23), or `latest`.
        snapshot: String,
        /// The path as it was on the machine, e.g. /home/alice/report.odt.
        path: String,
        /// Folder to restore into; the path's last part is created inside it.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Try snapnest without SSH: back up a sample folder into ./snapnest-data.
    Quickstart {
        /// Where to put the sample folder, config and storage.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

/// Run the command line; returns the process exit code.
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("snapnest: error: {e:#}");
            2
        }
    }
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let path = Config::locate(args.config.as_deref());
    Ok(Config::load(&path)?)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    match &args.command {
        Command::Init => {
            let config = load_config(&args)?;
            init(&config.storage)
        }
        Command::Hostkey { host } => {
            let config = load_config(&args)?;
            let host = config.host(host)?;
            let SourceSpec::Ssh(spec) = &host.source else {
                bail!("host {} is a local source; it has no host key", host.name);
            };
            let conn = Connection::connect(&host.name, spec, host.timeout, false)?;
            let fp = conn.fingerprint()?;
            println!(
                "{} ({}:{}) presents {} key {fp}",
                host.name,
                spec.address,
                spec.port,
                conn.key_type()
            );
            match &spec.host_key {
                Some(pinned) if *pinned == fp => println!("This matches the pinned key."),
                Some(pinned) => {
                    eprintln!(
                        "snapnest: error: host {}: HOST KEY CHANGED: config pins {pinned}, server presents {fp}",
                        host.name
                    );
                    return Ok(2);
                }
                None => {
                    println!("Check it against the machine (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there),");
                    println!("then add this line to the [[host]] table of {}:", host.name);
                }
            }
            println!("host_key = \"{fp}\"");
            Ok(0)
        }
        Command::Backup { hosts, all } => {
            let config = load_config(&args)?;
            let storage = Storage::open(&config.storage)?;
            let selected: Vec<&crate::config::Host> = if *all {
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
            let mut worst = Outcome::Good;
            for host in selected {
                let report = backup_with_progress(&storage, host);
                for p in report.problems.iter().take(20) {
                    eprintln!(
                        "  {} {}: {} ({})",
                        p.severity.as_str(),
                        p.path,
                        p.message,
                        p.action
                    );
                }
                if report.problems.len() > 20 {
                    eprintln!(
                        "  … and {} more (see the catalog)",
                        report.problems.len() - 20
                    );
                }
                println!("{}", report.summary());
                worst = worst.worst(report.outcome);
            }
            Ok(worst.exit_code())
        }
        Command::List { host } => {
            let config = load_config(&args)?;
            if let Some(h) = host {
                config.host(h)?;
            }
            let storage = Storage::open(&config.storage)?;
            list(&storage, host.as_deref())
        }
        Command::Restore {
            host,
            snapshot,
            path,
            to,
        } => {
            let config = load_config(&args)?;
            config.host(host)?;
            let storage = Storage::open(&config.storage)?;
            let r = crate::restore::restore(&storage, host, snapshot, path, to)?;
            println!(
                "restored {path} from {host} {} to {}: {} files ({}), {} folders, {} symlinks",
                r.snapshot,
                r.destination.display(),
                r.files,
                bytesize::ByteSize(r.bytes),
                r.folders,
                r.symlinks
            );
            Ok(0)
        }
        Command::Quickstart { dir } => crate::quickstart::run(dir),
    }
}

pub fn init(root: &Path) -> anyhow::Result<i32> {
    match Storage::init(root)? {
        InitOutcome::Created { id } => println!("initialised {} (storage id {id})", root.display()),
        InitOutcome::AlreadyInitialised { id } => {
            println!(
                "{} is already initialised (storage id {id}); nothing changed",
                root.display()
            )
        }
    }
    Ok(0)
}

pub fn list(storage: &Storage, host: Option<&str>) -> anyhow::Result<i32> {
    let catalog = storage.catalog()?;
    let snaps = catalog.snapshots(host).context("reading snapshots")?;
    println!(
        "{:<16} {:<20} {:>9} {:>10} {:>10} {:>9}  {}",
        "HOST", "SNAPSHOT", "FILES", "SIZE", "NEW", "DURATION", "RESULT"
    );
    for s in snaps.iter().filter(|s| s.published) {
        println!(
            "{:<16} {:<20} {:>9} {:>10} {:>10} {:>9}  {}",
            s.host,
            s.name,
            s.files,
            bytesize::ByteSize(s.bytes).to_string(),
            bytesize::ByteSize(s.new_bytes).to_string(),
            humantime::format_duration(Duration::from_secs((s.duration_ms as u64).div_ceil(1000)))
                .to_string(),
            s.result.as_str()
        );
    }
    let hosts: Vec<String> = match host {
        Some(h) => vec![h.to_string()],
        None => {
            let mut h: Vec<String> = snaps.iter().map(|s| s.host.clone()).collect();
            h.dedup();
            h
        }
    };
    for h in hosts {
        if let Some(run) = catalog.last_run(&h)? {
            if run.state == "failed" || run.state == "interrupted" {
                println!(
                    "last run of {h}: {}: {}",
                    run.state,
                    run.message.unwrap_or_default()
                );
            }
        }
    }
    if snaps.is_empty() {
        println!("(no snapshots yet)");
    }
    Ok(0)
}

/// Run one host's backup, drawing live progress on a terminal.
pub fn backup_with_progress(storage: &Storage, host: &crate::config::Host) -> job::Report {
    let progress = Arc::new(Progress::new());
    let done = Arc::new(AtomicBool::new(false));
    let drawer = std::io::stderr().is_terminal().then(|| {
        let (progress, done, name) = (progress.clone(), done.clone(), host.name.clone());
        std::thread::spawn(move || draw(&name, &progress, &done))
    });
    let report = job::backup_host(storage, host, &progress);
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
            "{name}: {} {}/{} files, {}/{} at {}/s {current}",
            v.phase,
            v.files_done,
            v.files_total,
            bytesize::ByteSize(v.bytes_done),
            bytesize::ByteSize(v.bytes_total),
            bytesize::ByteSize(rate as u64),
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
}
