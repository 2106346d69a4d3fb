//! Formatting shared by the pages: sizes, dates, ages, and the page frame. Everything here
//! returns plain text; the templates escape it.

use std::time::Duration;

use chrono::{Local, TimeZone, Utc};

use super::auth::Who;

/// What every page's frame needs.
pub struct Chrome {
    pub title: String,
    /// Seconds until the browser reloads the page (0: never). Used while a backup runs:
    /// live progress without any script.
    pub refresh: u32,
    pub logged_in: bool,
    pub csrf: String,
}

impl Chrome {
    pub fn new(title: impl Into<String>, who: &Who) -> Chrome {
        Chrome {
            title: title.into(),
            refresh: 0,
            logged_in: matches!(who, Who::Session { .. }),
            csrf: who.csrf().to_string(),
        }
    }
}

pub fn bytes(n: u64) -> String {
    bytesize::ByteSize(n).to_string()
}

pub fn date(ms: i64) -> String {
    Local
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "?".into())
}

pub fn date_ns(ns: i64) -> String {
    if ns == 0 {
        return String::new();
    }
    date(ns.div_euclid(1_000_000))
}

/// "3h 12m": two units at most, for a phone's width.
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    let (d_, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    match () {
        _ if d_ > 0 => format!("{d_}d {h}h"),
        _ if h > 0 => format!("{h}h {m}m"),
        _ if m > 0 => format!("{m}m {}s", s % 60),
        _ => format!("{s}s"),
    }
}

pub fn ago(ms: i64) -> String {
    let d = Utc::now().timestamp_millis() - ms;
    if d < 0 {
        "just now".into()
    } else {
        format!("{} ago", span(Duration::from_millis(d as u64)))
    }
}

pub fn until(ms: i64) -> String {
    let d = ms - Utc::now().timestamp_millis();
    if d <= 0 {
        "now".into()
    } else {
        format!("in {}", span(Duration::from_millis(d as u64)))
    }
}

pub fn ms_span(ms: i64) -> String {
    span(Duration::from_millis(ms.max(0) as u64))
}

/// Live numbers of a running backup, ready to show.
pub struct Progress {
    pub phase: String,
    pub percent: u64,
    pub files: String,
    pub bytes: String,
    pub rate: String,
    pub eta: String,
    pub current: String,
    pub elapsed: String,
}

impl Progress {
    pub fn from(r: &crate::daemon::state::Running) -> Progress {
        let percent = if r.bytes_total > 0 {
            (r.bytes_done.min(r.bytes_total) * 100 / r.bytes_total).min(100)
        } else if r.files_total > 0 {
            r.files_done.min(r.files_total) * 100 / r.files_total
        } else {
            0
        };
        let left = r.bytes_total.saturating_sub(r.bytes_done);
        let eta = if r.rate > 0 && left > 0 {
            span(Duration::from_secs(left / r.rate))
        } else {
            "–".into()
        };
        Progress {
            phase: r.phase.clone(),
            percent,
            files: format!("{} / {}", r.files_done, r.files_total),
            bytes: format!("{} / {}", bytes(r.bytes_done), bytes(r.bytes_total)),
            rate: format!("{}/s", bytes(r.rate)),
            eta,
            current: r.current.clone(),
            elapsed: ago(r.started_ms).replace(" ago", ""),
        }
    }
}
