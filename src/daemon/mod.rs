//! `snapnest daemon`: keeps every configured machine backed up. A one-second loop decides
//! (schedule, presence, disk, capacity) and hands work to threads: one per running backup,
//! short-lived presence checks, and one background deleter. Everything it knows is written
//! to `<state_dir>/status.json` for `snapnest status`.

pub mod deleter;
pub mod lock;
pub mod presence;
pub mod queue;
pub mod state;
mod tick;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::logging;

/// Flags set by signal handlers (or by a test driving the daemon in-process).
#[derive(Clone, Default)]
pub struct Signals {
    /// SIGTERM / SIGINT: stop scheduling, let runs checkpoint, exit.
    pub stop: Arc<AtomicBool>,
    /// SIGHUP: reload the config.
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Route SIGTERM, SIGINT and SIGHUP to these flags.
    pub fn from_process() -> Result<Signals> {
        let s = Signals::default();
        let reg = |sig, flag: &Arc<AtomicBool>| {
            signal_hook::flag::register(sig, flag.clone())
                .map_err(|e| Error::Other(format!("installing signal handler: {e}")))
        };
        reg(signal_hook::consts::SIGTERM, &s.stop)?;
        reg(signal_hook::consts::SIGINT, &s.stop)?;
        reg(signal_hook::consts::SIGHUP, &s.reload)?;
        Ok(s)
    }
}

/// Run the daemon until `signals.stop` is set. Returns after running backups reached a
/// checkpoint or the config's `shutdown_grace` passed (their staging folders stay for resume).
pub fn run(config_path: &Path, signals: Signals) -> Result<()> {
    let config = Config::load(config_path)?;
    logging::init(&config.daemon.log).map_err(Error::Other)?;
    let _lock = lock::acquire(&config.daemon.state_dir)?;
    logging::info(format!(
        "daemon started: pid={} config={} storage={} hosts={}",
        std::process::id(),
        config_path.display(),
        config.storage.display(),
        config.hosts.len()
    ));
    let again = queue::recover(&config.daemon.state_dir);
    if again > 0 {
        logging::info(format!(
            "{again} run-now request(s) taken by an earlier daemon but not answered: queued again"
        ));
    }
    // The web page reads the status file and catalog like `snapnest status` does; it
    // only needs the config. Backups matter more than the page: if it can't listen (port
    // taken), that is logged and the daemon runs on without it.
    let web = match &config.web {
        Some(_) => crate::web::start(config.clone())
            .map_err(|e| logging::error(format!("{e}; running without the web page")))
            .ok(),
        None => None,
    };
    let mut d = tick::Daemon::new(config, config_path.to_path_buf());
    loop {
        if signals.stop.load(Ordering::SeqCst) {
            break;
        }
        if signals.reload.swap(false, Ordering::SeqCst) {
            reload(&mut d, config_path);
            if let Some(w) = &web {
                w.set_config(d.config.clone());
            }
        }
        d.tick();
        d.wait(Duration::from_millis(500));
    }
    let image = d.config.image.clone();
    let stopped = shutdown(d);
    drop(web);
    // The image was kept mounted while running; unmounted at a clean stop so the share can
    // be unplugged.
    if let Some(spec) = image {
        match crate::dest::image::unmount(&spec.mount_point) {
            Ok(()) => logging::info(format!(
                "image unmounted from {}",
                spec.mount_point.display()
            )),
            Err(e) => logging::warn(e.to_string()),
        }
    }
    stopped
}

fn reload(d: &mut tick::Daemon, path: &Path) {
    match Config::load(path) {
        Ok(c) => {
            if c.daemon.state_dir != d.config.daemon.state_dir {
                logging::warn(
                    "config reloaded, but a new state_dir only takes effect after a restart",
                );
            }
            if let Err(e) = logging::init(&c.daemon.log) {
                logging::warn(format!("config reloaded, keeping the old log target: {e}"));
            }
            logging::info(format!("config reloaded: {} hosts", c.hosts.len()));
            d.set_config(c);
        }
        Err(e) => logging::error(format!(
            "config reload failed, still running on the previous config: {e}"
        )),
    }
}

fn shutdown(mut d: tick::Daemon) -> Result<()> {
    let grace = d.config.daemon.shutdown_grace;
    let running = d.running_hosts();
    logging::info(format!(
        "stopping: {} running backup(s) asked to checkpoint{}",
        running.len(),
        if running.is_empty() {
            String::new()
        } else {
            format!(" ({})", running.join(", "))
        }
    ));
    d.cancel_all();
    let deadline = Instant::now() + grace;
    while !d.running_hosts().is_empty() && Instant::now() < deadline {
        d.wait(Duration::from_millis(200));
        d.collect();
    }
    let left = d.running_hosts();
    if !left.is_empty() {
        logging::warn(format!(
            "exiting with backups still stopping ({}); their staging folders resume next time",
            left.join(", ")
        ));
    }
    d.write_status(Some("stopped".into()));
    logging::info("daemon stopped");
    Ok(())
}

/// Where the daemon keeps its state for this config (for `status` and `backup`).
pub fn state_dir(config: &Config) -> PathBuf {
    config.daemon.state_dir.clone()
}
