//! When a host is due: crontab lines, "at least every", blackout windows, failure backoff.
//! Pure functions of (rules, history, now); the daemon acts on their answers.
//!
//! Wall-clock rules (cron lines, blackout windows) are evaluated on naive local time, then mapped
//! to real instants: a wall time that happens twice (autumn) counts once, at its first
//! occurrence; one that a spring gap skips maps to the first instant after the gap. So a daily
//! job runs exactly once on DST days, and each wall-clock slot of a frequent job fires at most
//! once (an `@hourly` job does not rerun the repeated hour; it has one two-hour gap instead).

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone};
use chrono::{Timelike, Utc};
use std::time::Duration;

const CRON_HELP: &str =
    "write the 5 crontab fields \"minute hour day-of-month month day-of-week\", \
    e.g. \"30 2 * * *\" (02:30 every day) or \"0 9 * * MON-FRI\", or one of @hourly @daily \
    @weekly @monthly @yearly";
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
#[rustfmt::skip]
const WEEK: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
/// (name, lowest, highest, names numbered from lowest) of the 5 crontab fields.
const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day-of-month", 1, 31, &[]),
    ("month", 1, 12, &MONTHS),
    ("day-of-week", 0, 7, &DAYS),
];

/// A crontab line; DST handling is described in the module docs.
#[derive(Clone, Debug)]
pub struct CronSpec {
    text: String,
    /// Run on naive wall time (Utc as stand-in). Two schedules when day-of-month and day-of-week
    /// are both restricted: vixie cron ORs them, the cron crate would AND them.
    scheds: Vec<cron::Schedule>,
}

impl CronSpec {
    /// The line as the user wrote it, for status pages.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Errors are whole sentences with an example, for "config FILE, line N, key K: …".
    pub fn parse(s: &str) -> Result<CronSpec, String> {
        let text = s.trim();
        let line = match text.to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            x if x.starts_with('@') => {
                return Err(format!("unknown shorthand {text:?}; {CRON_HELP}"))
            }
            _ => text,
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            let why = if matches!(f.len(), 6 | 7) {
                " (seconds and year fields are not supported)"
            } else {
                ""
            };
            return Err(format!("{text:?} has {} fields{why}; {CRON_HELP}", f.len()));
        }
        let mut m = [0u64; 5];
        for (i, (name, lo, hi, names)) in FIELDS.iter().enumerate() {
            m[i] = field_mask(f[i], *lo, *hi, names)
                .map_err(|e| format!("{text:?}: {name} field {:?}: {e}; {CRON_HELP}", f[i]))?;
        }
        // Vixie: a field starting with '*' does not count as restricted (then the two are ANDed).
        let both = !f[2].starts_with('*') && !f[4].starts_with('*');
        let month_days = |mo: usize| {
            (1u64 << ([31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1] + 1)) - 2
        };
        if !both && !(1..=12).any(|mo| m[3] >> mo & 1 == 1 && m[2] & month_days(mo) != 0) {
            return Err(format!(
                "{text:?} never matches a real date (day {} of month {}); {CRON_HELP}",
                f[2], f[3]
            ));
        }
        let list = |mask: u64, shift: u32| {
            let v: Vec<String> = (0..64)
                .filter(|b| mask >> b & 1 == 1)
                .map(|b| (b + shift).to_string())
                .collect();
            v.join(",")
        };
        let dow = (m[4] | m[4] >> 7) & 0x7f; // 7 is Sunday too
        let (dom, dow) = (list(m[2], 0), list(dow, 1)); // the cron crate numbers Sunday 1
        let days = if both {
            vec![(dom, "*".into()), ("*".into(), dow)]
        } else {
            vec![(dom, dow)]
        };
        let scheds = days
            .into_iter()
            .map(|(dom, dow)| {
                format!(
                    "0 {} {} {dom} {} {dow}",
                    list(m[0], 0),
                    list(m[1], 0),
                    list(m[3], 0)
                )
            })
            .map(|e| {
                e.parse::<cron::Schedule>()
                    .map_err(|err| format!("{text:?}: internal cron error {err} for {e:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(CronSpec {
            text: text.to_string(),
            scheds,
        })
    }

    /// The line as the user wrote it, so status shows their words.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// First slot strictly after `after`, so a run at a slot is not due again; None past 2100
    /// (the cron crate's last year).
    pub fn next_after<Tz: TimeZone>(&self, after: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        let mut wall = after.with_timezone(tz).naive_local().and_utc();
        // Bounded: only slots of a repeated (autumn) hour are ever skipped.
        for _ in 0..1000 {
            wall = self
                .scheds
                .iter()
                .filter_map(|s| s.after(&wall).next())
                .min()?;
            let (first, _) = instants(tz, wall.naive_utc())?;
            if first > after {
                return Some(first);
            }
        }
        None
    }
}

/// Bit mask of the values one crontab field allows; day-of-week ranges may wrap (FRI-MON).
fn field_mask(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let num = |t: &str| -> Result<u32, String> {
        let v = match names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            Some(i) => i as u32 + lo,
            None if names.is_empty() => t.parse().map_err(|_| format!("{t:?} is not a number"))?,
            None => t
                .parse()
                .map_err(|_| format!("{t:?} is not a number or name"))?,
        };
        if v < lo || v > hi {
            return Err(format!("{v} is out of range {lo}-{hi}"));
        }
        Ok(v)
    };
    let mut mask = 0;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or(format!("step {s:?} must be a positive number"))?,
            ),
            None => (item, 1),
        };
        let (a, mut b) = match (range, range.split_once('-')) {
            ("*", _) => (lo, hi),
            (_, Some((a, b))) => (num(a)?, num(b)?),
            (r, None) => (num(r)?, if item.contains('/') { hi } else { num(r)? }),
        };
        if a > b && hi == 7 {
            b += 7;
        } else if a > b {
            return Err(format!("range {range:?} goes backwards"));
        }
        for v in (a..=b).step_by(step) {
            mask |= 1 << if v > 7 && hi == 7 { v - 7 } else { v };
        }
    }
    Ok(mask)
}

/// (first, last) real instant showing wall time `wall`; a time inside a spring gap means the
/// first instant after the gap, as vixie cron runs jobs the jump skipped.
fn instants<Tz: TimeZone>(tz: &Tz, wall: NaiveDateTime) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut w = wall;
    for _ in 0..=2 * 24 * 60 {
        match tz.from_local_datetime(&w) {
            LocalResult::Single(t) => return Some((t.to_utc(), t.to_utc())),
            LocalResult::Ambiguous(a, b) => return Some((a.to_utc(), b.to_utc())),
            LocalResult::None => w += TimeDelta::minutes(1), // gaps start and end on whole minutes
        }
    }
    None
}

/// One blackout window in local wall time; `start > end` wraps past midnight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    days: u8, // bit 0 = Monday: the days the window starts on
    start: u32,
    end: u32, // minutes of the day, 1440 = 24:00
}

impl Window {
    /// Errors are whole sentences with an example, for "config FILE, line N, key K: …".
    pub fn parse(s: &str) -> Result<Window, String> {
        let err = |e: &str| {
            format!(
                "blackout {s:?}: {e}; write [DAYS] HH:MM-HH:MM, e.g. \"Mon-Fri 09:00-18:00\", \
                \"22:00-06:30\" (ends the next morning) or \"Sat,Sun 00:00-24:00\""
            )
        };
        let nospace = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let (day_txt, time_txt) =
            s.split_at(s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len()));
        let (day_txt, time_txt) = (nospace(day_txt), nospace(time_txt));
        let day = |t: &str| {
            let t = t.to_ascii_lowercase();
            WEEK.iter().position(|n| t.len() >= 3 && n.starts_with(&t)).ok_or_else(|| {
                err(&format!("unknown day {t:?} (use Mon Tue Wed Thu Fri Sat Sun, ranges like Fri-Mon, lists like Sat,Sun)"))
            })
        };
        let mut days = if day_txt.is_empty() { 0x7f } else { 0 };
        for item in day_txt.split(',').filter(|_| !day_txt.is_empty()) {
            let (a, b) = match item.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None => (day(item)?, day(item)?),
            };
            (0..=(b + 7 - a) % 7).for_each(|i| days |= 1 << ((a + i) % 7));
        }
        let hhmm = |t: &str| {
            let (h, m) = t
                .split_once(':')
                .ok_or_else(|| err(&format!("{t:?} is not HH:MM")))?;
            match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(h), Ok(m)) if m < 60 && (h < 24 || h == 24 && m == 0) => Ok(h * 60 + m),
                _ => Err(err(&format!("{t:?} is not a time of day 00:00-24:00"))),
            }
        };
        let (a, b) = time_txt
            .split_once('-')
            .ok_or_else(|| err("missing the time range HH:MM-HH:MM"))?;
        let (start, end) = (hhmm(a)?, hhmm(b)?);
        if start == 24 * 60 {
            return Err(err("24:00 can only end a window"));
        }
        if start == end {
            return Err(err("start equals end; for a whole day write 00:00-24:00"));
        }
        Ok(Window { days, start, end })
    }

    /// The wall time this window ends if `wall` is inside it (start inclusive, end exclusive).
    fn end_if_inside(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let (day, min) = (wall.date(), wall.hour() * 60 + wall.minute());
        let on = |d: NaiveDate| self.days >> d.weekday().num_days_from_monday() & 1 == 1;
        let at = |d: NaiveDate| {
            Some(d.and_time(chrono::NaiveTime::MIN) + TimeDelta::minutes(self.end.into()))
        };
        if self.start < self.end {
            if on(day) && (self.start..self.end).contains(&min) {
                at(day)
            } else {
                None
            }
        } else if on(day) && min >= self.start {
            at(day.succ_opt()?)
        } else if on(day.pred_opt()?) && min < self.end {
            at(day)
        } else {
            None
        }
    }
}

/// "at least this often"; shorter than a minute would just hammer the host.
pub fn parse_every(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{s:?} is not a duration ({e}); write e.g. \"6h\", \"1day\" or \"90min\"")
    })?;
    if d < Duration::from_secs(60) {
        return Err(format!(
            "{s:?} is shorter than the minimum of 1 minute; write e.g. \"6h\""
        ));
    }
    Ok(d)
}

/// A host's timing rules, as read from the config.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    pub cron: Option<CronSpec>,
    pub every: Option<Duration>,
    pub blackout: Vec<Window>,
}

/// When a host should next run, before blackout windows are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Never backed up: nothing to wait for.
    Now,
    /// Due at this instant; one in the past means overdue: run once, not once per missed slot.
    At(DateTime<Utc>),
    /// Neither `schedule` nor `every`: runs only when asked.
    Manual,
}

impl Schedule {
    /// The first cron slot after the last good run (catch-up for a machine that was away), or
    /// last good + every, whichever is earlier. A last run after `now` (the clock was set back)
    /// counts as `now`, so a wrong clock delays a host by one interval at most, never for days.
    pub fn due_at<Tz: TimeZone>(
        &self,
        last_good: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        tz: &Tz,
    ) -> Due {
        if self.cron.is_none() && self.every.is_none() {
            return Due::Manual;
        }
        let Some(last) = last_good else {
            return Due::Now;
        };
        let base = last.min(now);
        let by_cron = self.cron.as_ref().and_then(|c| c.next_after(base, tz));
        let by_every = self
            .every
            .and_then(|d| base.checked_add_signed(TimeDelta::from_std(d).ok()?));
        match (by_cron, by_every) {
            (Some(a), Some(b)) => Due::At(a.min(b)),
            (Some(t), None) | (None, Some(t)) => Due::At(t),
            (None, None) => Due::Manual,
        }
    }

    /// When the blackout around `t` ends, following overlapping and back-to-back windows, so the
    /// daemon sleeps once instead of waking at every window edge. None = `t` is not blacked out.
    pub fn blackout_until<Tz: TimeZone>(&self, t: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        let mut until = None;
        let mut cur = t;
        // Bounded: windows covering the whole week would chain forever; stop ~a year ahead.
        for _ in 0..400 {
            let wall = cur.with_timezone(tz).naive_local();
            let ends = self.blackout.iter().filter_map(|w| w.end_if_inside(wall));
            // A repeated end wall time: the occurrence still ahead of us.
            let end = ends
                .filter_map(|e| instants(tz, e))
                .map(|(a, b)| if a > cur { a } else { b })
                .max();
            match end {
                Some(e) if e > cur => (until, cur) = (Some(e), e),
                _ => break,
            }
        }
        until
    }

    /// Earliest instant >= `due` outside every blackout, so status can say when a run will happen.
    pub fn next_allowed<Tz: TimeZone>(&self, due: DateTime<Utc>, tz: &Tz) -> DateTime<Utc> {
        self.blackout_until(due, tz).unwrap_or(due)
    }
}

/// Wait after `failures` consecutive failures: 5 min doubling to 6 h, so a host that is off for
/// the weekend is retried often at first without being hammered all weekend.
pub fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => Duration::from_secs(300 << (n - 1).min(12)).min(Duration::from_secs(6 * 3600)),
    }
}

#[cfg(test)]
mod tests;
