//! The command line: parse, dispatch to the library, print for humans, map to exit codes
//! (0 good, 1 partial, 2 failed or bad usage).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::config::{Config, SourceSpec};
use crate::source::ssh::Connection;
use crate::storage::Storage;

mod authorize;
mod backup;
mod image;
mod passwd;
mod probe;
mod status;
mod verify;
pub use backup::backup_with_progress;

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
    /// Print (or --install) the authorized_keys line that lets this box's key read a host's
    /// folders and nothing else (restrict, from=, a read-only forced command).
    Authorize(authorize::AuthorizeArgs),
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
    /// Run in the foreground and keep every host backed up (for procd, systemd, rc scripts).
    #[command(
        long_about = "Run in the foreground and keep every host backed up: schedules, presence checks, \
        retention, hooks and notifications. Logs one line per event to stderr or syslog ([daemon] log). \
        SIGHUP reloads the config (a broken one keeps the old running); SIGTERM/SIGINT stop scheduling, let \
        running transfers checkpoint and exit within [daemon] shutdown_grace."
    )]
    Daemon,
    /// What is running, due, late or waiting, from the catalog and the daemon's state.
    Status {
        /// Print the daemon's status file as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete snapshots the `keep` rules no longer keep; shows what goes and why.
    Prune {
        /// Only this host.
        host: Option<String>,
        /// Show the decisions, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read a password from the terminal (or stdin) and print the `password_hash = …` line
    /// for the config's [web] table.
    Passwd,
    /// Grow, mount or unmount the storage's image (strategy = "image").
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Find out by experiment what a backup disk can do, and the strategy snapnest would use.
    Probe {
        /// An existing folder on the disk (a scratch folder inside it is removed afterwards).
        dir: PathBuf,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read stored files again and compare them with the content hashes (BLAKE3) recorded
    /// at backup time. Exit code 1 when anything is damaged (missing, differs, unreadable).
    Verify {
        /// Only this host.
        host: Option<String>,
        /// Only this snapshot of the host (name, unique prefix, or `latest`).
        snapshot: Option<String>,
        /// Read only this share of the files, those checked longest ago first (e.g. 5%):
        /// repeated runs go round the whole store.
        #[arg(long, value_name = "N%")]
        sample: Option<String>,
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
            match &config.image {
                Some(spec) => image::init(spec),
                None => probe::init(&config.storage, &config.strategy),
            }
        }
        Command::Probe { dir, json } => {
            // The config is optional here: it only says which strategy is wanted.
            let (wanted, image_size) = match args.config.as_ref() {
                Some(_) => {
                    let c = load_config(&args)?;
                    (c.strategy, c.image.map(|i| i.size))
                }
                None => (crate::strategy::Wanted::Auto, None),
            };
            probe::probe_command(dir, &wanted, image_size, *json)
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
                Some(pinned) if *pinned == fp => {
                    println!("This matches the pinned key.");
                    if let Err(e) = authorize::print_access(host, spec) {
                        println!("Could not check the folders: {e}");
                    }
                }
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
        Command::Authorize(a) => {
            let config = load_config(&args)?;
            authorize::run(&config, a)
        }
        Command::Image(cmd) => image::command(&load_config(&args)?, cmd),
        Command::Backup { hosts, all } => {
            let config = load_config(&args)?;
            // A running daemon holds the image mounted; backup hands the run to it.
            let _image = match crate::daemon::lock::daemon_pid(&config.daemon.state_dir) {
                Some(_) => None,
                None => image::attach(&config)?,
            };
            backup::backup(&config, hosts, *all)
        }
        Command::Daemon => {
            let path = Config::locate(args.config.as_deref());
            let signals = crate::daemon::Signals::from_process()?;
            crate::daemon::run(&path, signals)?;
            Ok(0)
        }
        Command::Status { json } => {
            let config = load_config(&args)?;
            // Status tells a missing disk or image itself: no error here.
            let _image = image::attach(&config).ok().flatten();
            status::status(&config, *json)
        }
        Command::Prune { host, dry_run } => {
            let config = load_config(&args)?;
            let _image = image::attach(&config)?;
            status::prune(&config, host.as_deref(), *dry_run)
        }
        Command::List { host } => {
            let config = load_config(&args)?;
            if let Some(h) = host {
                config.host(h)?;
            }
            let _image = image::attach(&config)?;
            if let Some(spec) = &config.image {
                println!("{}", spec.describe());
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
            let _image = image::attach(&config)?;
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
        Command::Verify {
            host,
            snapshot,
            sample,
        } => {
            let config = load_config(&args)?;
            verify::verify(
                &config,
                host.as_deref(),
                snapshot.as_deref(),
                sample.as_deref(),
            )
        }
        Command::Quickstart { dir } => crate::quickstart::run(dir),
        Command::Passwd => passwd::passwd(),
    }
}

pub fn init(root: &Path) -> anyhow::Result<i32> {
    probe::init(root, &crate::strategy::Wanted::Auto)
}

pub fn list(storage: &Storage, host: Option<&str>) -> anyhow::Result<i32> {
    let catalog = storage.catalog()?;
    let snaps = catalog.snapshots(host).context("reading snapshots")?;
    if let Some(line) = probe::describe(storage)? {
        println!("{line}");
    }
    println!(
        "{:<16} {:<20} {:>9} {:>10} {:>10} {:>9}  {:<8}  {}",
        "HOST", "SNAPSHOT", "FILES", "SIZE", "NEW", "DURATION", "STRATEGY", "RESULT"
    );
    for s in snaps.iter().filter(|s| s.published) {
        let strategy = catalog
            .snapshot_strategy(s.id)?
            .unwrap_or_else(|| "hardlink".into());
        println!(
            "{:<16} {:<20} {:>9} {:>10} {:>10} {:>9}  {:<8}  {}",
            s.host,
            s.name,
            s.files,
            bytesize::ByteSize(s.bytes).to_string(),
            bytesize::ByteSize(s.new_bytes).to_string(),
            humantime::format_duration(Duration::from_secs((s.duration_ms as u64).div_ceil(1000)))
                .to_string(),
            strategy,
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
