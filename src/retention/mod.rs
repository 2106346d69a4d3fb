//! Which snapshots to keep: borg/restic-style `keep` rules and the free-space floor.
//! Pure functions of (snapshots, rules, now); the prune command and the daemon act on them.
//!
//! The rules follow `borg prune` (1.2+) exactly, so borg users get the kept set they expect:
//! `within` first, then `last` (borg's `--keep-last`, an alias of `--keep-secondly`), hourly,
//! daily, weekly (ISO year + ISO week), monthly, yearly. Each rule walks the snapshots newest
//! first and keeps the first snapshot of every new period (local wall-clock time), skipping
//! snapshots an earlier rule already kept (they do not count, but the period still advances),
//! until it has kept n; a rule that ran out of periods also keeps the oldest snapshot.
//! Safety keeps come on top and never consume a rule's slots: the newest snapshot and the
//! newest good snapshot, by creation time and also by publication order (highest id), so a
//! clock that jumped backwards can never make the snapshot just published, which `latest`
//! points to, look old enough to delete.

use std::collections::HashSet;
use std::time::Duration;

use bytesize::ByteSize;
use chrono::{DateTime, Datelike, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};

#[cfg(test)]
mod tests;

/// The keep rules of one host, as written in `keep = { … }`; `None` means the rule is not used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<Duration>,
}

/// The keys `keep` accepts, listed in error messages so a typo is easy to fix.
const KEYS: [&str; 7] = [
    "last", "hourly", "daily", "weekly", "monthly", "yearly", "within",
];

impl Keep {
    /// From the TOML inline table as written; the config module turns Err into "config FILE, line N, key `keep`: <msg>".
    pub fn from_toml(v: &toml::Value) -> Result<Keep, String> {
        let table = v.as_table().ok_or_else(|| {
            format!(
                "expected an inline table like {{ daily = 7, weekly = 4 }}, got {}",
                v.type_str()
            )
        })?;
        let mut keep = Keep::default();
        for (key, value) in table {
            let slot = match key.as_str() {
                "last" => &mut keep.last,
                "hourly" => &mut keep.hourly,
                "daily" => &mut keep.daily,
                "weekly" => &mut keep.weekly,
                "monthly" => &mut keep.monthly,
                "yearly" => &mut keep.yearly,
                "within" => {
                    let s = value.as_str().ok_or_else(|| {
                        format!("`within` must be a duration string like \"2d\", got {value}")
                    })?;
                    keep.within = Some(parse_within(s)?);
                    continue;
                }
                _ => {
                    return Err(format!(
                        "unknown key `{key}` (allowed: {})",
                        KEYS.join(", ")
                    ))
                }
            };
            *slot = Some(parse_count(key, value)?);
        }
        Ok(keep)
    }

    /// No rule set (or only zeros): the caller keeps everything, because a backup tool must not delete by default.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| n.unwrap_or(0) == 0)
            && self.within.unwrap_or_default().is_zero()
    }

    /// "last 3, daily 7, within 2d" for status pages and prune --dry-run.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "no rules (keep everything)".to_string();
        }
        let mut parts: Vec<String> = (self.counts().iter())
            .filter_map(|(name, n)| n.filter(|&n| n > 0).map(|n| format!("{name} {n}")))
            .collect();
        if let Some(w) = self.within.filter(|w| !w.is_zero()) {
            parts.push(format!("within {}", describe_duration(w)));
        }
        parts.join(", ")
    }

    /// The count rules in borg's application order, so `plan` and `describe` cannot disagree.
    fn counts(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
    }
}

/// A count of at least 1: zero would silently turn a rule off, so the user leaves the key out instead.
fn parse_count(key: &str, value: &toml::Value) -> Result<u32, String> {
    let n = (value.as_integer())
        .ok_or_else(|| format!("`{key}` must be a whole number like 7, got {value}"))?;
    if n < 1 {
        return Err(format!(
            "`{key}` must be at least 1, got {n} (leave the key out instead)"
        ));
    }
    u32::try_from(n).map_err(|_| format!("`{key}` = {n} is too large"))
}

/// Borg's `<int><H|d|w|m|y>` (m = 31 days, y = 365 days, as borg counts) wins over humantime, so borg configs mean the same here; anything else is humantime ("36h", "90min").
fn parse_within(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let borg_hours = match t.chars().last() {
        Some('H') => Some(1),
        Some('d') => Some(24),
        Some('w') => Some(24 * 7),
        Some('m') => Some(24 * 31),
        Some('y') => Some(24 * 365),
        _ => None,
    };
    let number = &t[..t.len().saturating_sub(1)];
    let d = match borg_hours {
        Some(h) if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            let secs = number.parse::<u64>().ok().and_then(|n| n.checked_mul(h * 3600));
            Duration::from_secs(secs.ok_or_else(|| format!("`within` = \"{s}\" is too large"))?)
        }
        _ => humantime::parse_duration(t).map_err(|e| {
            format!("`within` = \"{s}\" is not a duration ({e}); write e.g. \"2d\", \"36h\", \"1w\", \"1m\" (31 days) or \"1y\" (365 days)")
        })?,
    };
    if d.is_zero() {
        return Err(format!("`within` = \"{s}\" must be longer than zero"));
    }
    Ok(d)
}

/// Shortest exact form that `parse_within` reads back to the same duration ("2d", "1w", "36h").
fn describe_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() == 0 && s > 0 {
        for (unit, secs) in [
            ("y", 365 * 86400),
            ("w", 7 * 86400),
            ("d", 86400),
            ("h", 3600),
        ] {
            if s % secs == 0 {
                return format!("{}{unit}", s / secs);
            }
        }
    }
    humantime::format_duration(d).to_string()
}

/// One published snapshot as retention sees it; `good` is false for partial runs.
#[derive(Clone, Debug)]
pub struct Snap {
    pub id: i64,
    pub name: String,
    pub created: DateTime<Utc>,
    pub good: bool,
}

/// The decision for one snapshot, with reasons a human can check ("daily #3", "not kept by any rule").
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub id: i64,
    pub name: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Newest first by creation time, ties by id, so every caller agrees on "newest" and "oldest".
fn newer_first(a: &Snap, b: &Snap) -> std::cmp::Ordering {
    b.created.cmp(&a.created).then(b.id.cmp(&a.id))
}

/// Wall-clock time in `tz`, as borg buckets by; falls back to UTC at the edge of chrono's range instead of panicking.
fn local_time<Tz: TimeZone>(t: &DateTime<Utc>, tz: &Tz) -> NaiveDateTime {
    let utc = t.naive_utc();
    utc.checked_add_offset(tz.offset_from_utc_datetime(&utc).fix())
        .unwrap_or(utc)
}

/// A period key; only compared within one rule, so unused fields are zero.
type Period = (i32, u32, u32, u32, u32, u32);

/// borg's strftime patterns as keys: last = secondly "%Y-%m-%d %H:%M:%S" … yearly "%Y", weekly "%G-%V".
fn period(rule: &str, t: &NaiveDateTime) -> Period {
    let (y, m, d, h) = (t.year(), t.month(), t.day(), t.hour());
    match rule {
        "last" => (y, m, d, h, t.minute(), t.second()),
        "hourly" => (y, m, d, h, 0, 0),
        "daily" => (y, m, d, 0, 0, 0),
        "weekly" => (t.iso_week().year(), t.iso_week().week(), 0, 0, 0, 0),
        "monthly" => (y, m, 0, 0, 0, 0),
        _ => (y, 0, 0, 0, 0, 0),
    }
}

/// borg's `prune_split`: first snapshot of each new period, skipping already-kept ones, plus "[oldest]" when short.
fn prune_split(local: &[NaiveDateTime], kept: &mut [Option<String>], rule: &str, n: u32) {
    let (mut last, mut count) = (None, 0);
    for (i, t) in local.iter().enumerate() {
        let p = period(rule, t);
        if last != Some(p) {
            last = Some(p);
            if kept[i].is_none() {
                count += 1;
                kept[i] = Some(format!("{rule} #{count}"));
                if count == n {
                    return;
                }
            }
        }
    }
    if let Some(oldest @ None) = kept.last_mut() {
        *oldest = Some(format!("{rule} #{} (oldest)", count + 1));
    }
}

/// One host's snapshots (any order) → a verdict per snapshot, newest first.
pub fn plan<Tz: TimeZone>(
    snaps: &[Snap],
    keep: &Keep,
    now: DateTime<Utc>,
    tz: &Tz,
) -> Vec<Verdict> {
    let mut order: Vec<&Snap> = snaps.iter().collect();
    order.sort_by(|a, b| newer_first(a, b));
    let mut kept: Vec<Option<String>> = vec![None; order.len()];
    if keep.is_empty() {
        kept.fill(Some("no keep rules set: keeping everything".to_string()));
    } else {
        if let Some(w) = keep.within.filter(|w| !w.is_zero()) {
            let label = format!("within {}", describe_duration(w));
            // A window reaching past chrono's range covers everything.
            let since = TimeDelta::from_std(w)
                .ok()
                .and_then(|w| now.checked_sub_signed(w));
            for (slot, s) in kept.iter_mut().zip(&order) {
                let inside = match since {
                    Some(since) => s.created > since,
                    None => true,
                };
                if inside {
                    *slot = Some(label.clone());
                }
            }
        }
        let local: Vec<NaiveDateTime> = order.iter().map(|s| local_time(&s.created, tz)).collect();
        for (rule, n) in keep.counts() {
            if let Some(n) = n.filter(|&n| n > 0) {
                prune_split(&local, &mut kept, rule, n);
            }
        }
    }
    let newest_good = order.iter().position(|s| s.good);
    let last_published = snaps.iter().map(|s| s.id).max();
    let last_good = snaps.iter().filter(|s| s.good).map(|s| s.id).max();
    let verdicts = order.iter().zip(kept).enumerate().map(|(i, (s, rule))| {
        let mut reasons: Vec<String> = rule.into_iter().collect();
        if i == 0 {
            reasons.push("newest snapshot".to_string());
        } else if last_published == Some(s.id) {
            reasons.push("most recently published (the clock may have jumped)".to_string());
        }
        if newest_good == Some(i) {
            reasons.push("newest good snapshot".to_string());
        } else if last_good == Some(s.id) {
            reasons.push("most recently published good snapshot".to_string());
        }
        let keep = !reasons.is_empty();
        if !keep {
            reasons.push("not kept by any rule".to_string());
        }
        Verdict {
            id: s.id,
            name: s.name.clone(),
            keep,
            reasons,
        }
    });
    verdicts.collect()
}

/// The free-space floor: `[storage] min_free = "10%"` or a size like "20GiB"/"500MB" (bytesize parsing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MinFree {
    Percent(f64),
    Bytes(u64),
}

impl MinFree {
    /// "10%" (0–90, more would leave no room for backups) or a bytesize size; Err is the message for the config error.
    pub fn parse(s: &str) -> Result<MinFree, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = (p.trim().parse())
                .map_err(|_| format!("\"{s}\" is not a percentage like \"10%\""))?;
            if !(0.0..=90.0).contains(&p) {
                return Err(format!(
                    "\"{s}\": a percentage floor must be between 0% and 90%"
                ));
            }
            return Ok(MinFree::Percent(p));
        }
        t.parse::<ByteSize>().map(|b| MinFree::Bytes(b.0)).map_err(|e| {
            format!("\"{s}\" is neither a percentage like \"10%\" nor a size like \"20GiB\" or \"500MB\" ({e})")
        })
    }

    /// How many bytes below the floor the disk is (0 if fine), so the caller knows whether to delete more.
    pub fn bytes_short(&self, total: u64, available: u64) -> u64 {
        let floor = match *self {
            MinFree::Percent(p) => (total as f64 * p / 100.0).ceil() as u64,
            MinFree::Bytes(b) => b,
        };
        floor.saturating_sub(available)
    }

    /// "10%" or "20GiB", in the unit the user most likely wrote, for status pages and log lines.
    pub fn describe(&self) -> String {
        match *self {
            MinFree::Percent(p) => format!("{p}%"),
            MinFree::Bytes(b) => {
                let units = [
                    ("TiB", 1u64 << 40),
                    ("TB", 1_000_000_000_000),
                    ("GiB", 1 << 30),
                    ("GB", 1_000_000_000),
                    ("MiB", 1 << 20),
                    ("MB", 1_000_000),
                    ("KiB", 1 << 10),
                    ("kB", 1_000),
                ];
                match units.iter().find(|(_, f)| b > 0 && b % f == 0) {
                    Some((unit, f)) => format!("{}{unit}", b / f),
                    None => format!("{b} bytes"),
                }
            }
        }
    }
}

/// Order in which snapshots of all hosts may go to make room when the disk is below the floor: oldest first, never a host's newest or newest good snapshot (by time or by publication order, as in `plan`). Deleting hard-linked snapshots frees an unknown amount, so the caller deletes one at a time and re-checks free space.
pub fn space_victims(all: &[(String, Snap)]) -> Vec<(String, Snap)> {
    let mut protected: HashSet<i64> = HashSet::new();
    let mut by_id: std::collections::HashMap<(&str, bool), i64> = Default::default();
    for (host, s) in all {
        for good in [false, true] {
            if !good || s.good {
                let e = by_id.entry((host.as_str(), good)).or_insert(s.id);
                *e = (*e).max(s.id);
            }
        }
    }
    protected.extend(by_id.values());
    let mut order: Vec<&(String, Snap)> = all.iter().collect();
    order.sort_by(|(ha, a), (hb, b)| newer_first(a, b).then(hb.cmp(ha)));
    let (mut seen, mut seen_good) = (HashSet::new(), HashSet::new());
    let mut victims: Vec<(String, Snap)> = Vec::new();
    for (host, snap) in order {
        let newest = seen.insert(host.as_str());
        let newest_good = snap.good && seen_good.insert(host.as_str());
        if !newest && !newest_good && !protected.contains(&snap.id) {
            victims.push((host.clone(), snap.clone()));
        }
    }
    victims.reverse();
    victims
}
