//! Event log of the daemon: one line per event, `host=` and `run=` first, to stderr (journald,
//! procd and terminals pick it up) or to syslog (busybox syslogd, OpenWrt logd).
//! Lines never carry secrets: callers log names, counters and messages, never commands' env.

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stderr,
    /// The system's syslog socket (`/dev/log`), or this one.
    Syslog(Option<PathBuf>),
}

impl Target {
    /// `stderr`, `syslog`, or `syslog:/path/to/socket`.
    pub fn parse(s: &str) -> Result<Target, String> {
        match s {
            "stderr" => Ok(Target::Stderr),
            "syslog" => Ok(Target::Syslog(None)),
            _ => match s.strip_prefix("syslog:") {
                Some(p) if p.starts_with('/') => Ok(Target::Syslog(Some(PathBuf::from(p)))),
                _ => Err(format!(
                    "{s:?}: expected \"stderr\", \"syslog\" or \"syslog:/path/to/socket\""
                )),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

enum Sink {
    Stderr,
    Syslog(SyslogLogger),
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

/// Choose where events go; before this (and in tests of the library) they go to stderr.
pub fn init(target: &Target) -> Result<(), String> {
    let sink = match target {
        Target::Stderr => Sink::Stderr,
        Target::Syslog(path) => {
            let f = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: "snapnest".into(),
                pid: std::process::id(),
            };
            let logger = match path {
                None => syslog::unix(f),
                Some(p) => syslog::unix_custom(f, p),
            }
            .map_err(|e| format!("connecting to syslog: {e}"))?;
            Sink::Syslog(logger)
        }
    };
    match SINK.get() {
        Some(m) => *m.lock().unwrap_or_else(|p| p.into_inner()) = sink,
        None => {
            let _ = SINK.set(Mutex::new(sink));
        }
    }
    Ok(())
}

pub fn event(level: Level, line: impl Display) {
    let line = line.to_string();
    let Some(m) = SINK.get() else {
        return stderr(level, &line);
    };
    let mut sink = m.lock().unwrap_or_else(|p| p.into_inner());
    match &mut *sink {
        Sink::Stderr => stderr(level, &line),
        Sink::Syslog(l) => {
            let r = match level {
                Level::Info => l.info(&line),
                Level::Warn => l.warning(&line),
                Level::Error => l.err(&line),
            };
            // syslogd restarted or gone: say it where someone may still read it.
            if r.is_err() {
                stderr(level, &line);
            }
        }
    }
}

fn stderr(level: Level, line: &str) {
    let tag = match level {
        Level::Info => "info",
        Level::Warn => "warning",
        Level::Error => "error",
    };
    let _ = writeln!(std::io::stderr().lock(), "snapnest: {tag}: {line}");
}

pub fn info(line: impl Display) {
    event(Level::Info, line)
}

pub fn warn(line: impl Display) {
    event(Level::Warn, line)
}

pub fn error(line: impl Display) {
    event(Level::Error, line)
}
