//! Desktop notifications on the backed-up machine, so its user learns that backups stopped
//! without reading the box's log; plus the texts the daemon sends.
//!
//! Built-in commands: Linux `notify-send` on the user's session bus, macOS `osascript`,
//! Windows `msg` (OpenSSH's default shell there is cmd.exe). A host with source = "local"
//! is this box, so its notification runs here.

use std::time::{Duration, SystemTime};

use super::exec::{run_local, run_remote};
use crate::config::{Host, SourceSpec};
use crate::job::Report;
use crate::model::Outcome;
use crate::source::ssh::sh_quote;

/// Longest wait for a notification command; it only shows a message.
pub const NOTIFY_LIMIT: Duration = Duration::from_secs(30);
const TITLE_CHARS: usize = 60;
const BODY_CHARS: usize = 200;

/// How to show a notification on the host; off unless the config says `notify = "…"`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Notify {
    #[default]
    Off,
    /// `user`: whose desktop session, when it is not the SSH user's.
    Linux {
        user: Option<String>,
    },
    Macos,
    Windows,
}

impl Notify {
    /// From `notify = "…"` and the optional `notify_user = "…"`; errors carry an example.
    pub fn parse(kind: &str, user: Option<&str>) -> Result<Notify, String> {
        let notify = match kind {
            "off" => Notify::Off,
            "linux" => Notify::Linux { user: None },
            "macos" => Notify::Macos,
            "windows" => Notify::Windows,
            other => {
                return Err(format!(
                    "notify = {other:?}: expected \"off\", \"linux\", \"macos\" or \"windows\", e.g. notify = \"linux\""
                ))
            }
        };
        let Some(user) = user else {
            return Ok(notify);
        };
        let valid = !user.is_empty()
            && user.len() <= 64
            && !user.starts_with('-')
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(format!(
                "notify_user = {user:?} is not a login name: use letters, digits, . _ -, e.g. notify_user = \"alice\""
            ));
        }
        match notify {
            Notify::Linux { .. } => Ok(Notify::Linux {
                user: Some(user.to_string()),
            }),
            // Kept so that notify can be switched off without deleting notify_user.
            Notify::Off => Ok(Notify::Off),
            _ => Err(format!(
                "notify_user only applies to notify = \"linux\" (macOS and Windows notify the logged-in user); remove it or use notify = \"linux\", notify_user = {user:?}"
            )),
        }
    }
}

/// Show a desktop notification on the backed-up host; best effort, Err says why. Title and
/// body become one short line each; they must not hold secrets (they reach another machine).
pub fn notify(host: &Host, how: &Notify, title: &str, body: &str) -> Result<(), String> {
    let title = one_line(title, TITLE_CHARS);
    let body = one_line(body, BODY_CHARS);
    let ssh_user = match &host.source {
        SourceSpec::Ssh(spec) => Some(spec.user.as_str()),
        SourceSpec::Local => None,
    };
    let (tool, command) = match how {
        Notify::Off => return Ok(()),
        Notify::Linux { user } => (
            "notify-send",
            linux_command(&title, &body, user.as_deref(), ssh_user),
        ),
        Notify::Macos => ("osascript", macos_command(&title, &body)),
        Notify::Windows => ("msg", windows_command(&title, &body)),
    };
    let ran = match &host.source {
        SourceSpec::Ssh(spec) => run_remote(host, spec, &command, NOTIFY_LIMIT, "notification")
            .map_err(|e| e.to_string())?,
        SourceSpec::Local => run_local(&command, &[], NOTIFY_LIMIT)
            .map_err(|e| format!("notification: could not start `sh`: {e}"))?,
    };
    if ran.timed_out {
        return Err(format!(
            "notification: {tool} did not finish within {}s",
            NOTIFY_LIMIT.as_secs()
        ));
    }
    if ran.status != 0 || ran.signal.is_some() {
        return Err(format!(
            "notification: {tool} failed ({}){}",
            ran.exit(),
            ran.tail_suffix()
        ));
    }
    Ok(())
}

/// `notify-send` needs the desktop user's session bus; as another user, switch with
/// `runuser` (as root) or `sudo -n` (no password prompt can be answered here).
pub(super) fn linux_command(
    title: &str,
    body: &str,
    user: Option<&str>,
    ssh_user: Option<&str>,
) -> String {
    let send = format!(
        "notify-send -a snapnest {} {}",
        sh_quote(title),
        sh_quote(body)
    );
    let script = match user.filter(|u| Some(*u) != ssh_user) {
        None => {
            format!("exec env DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$(id -u)/bus {send}")
        }
        Some(user) => {
            let u = sh_quote(user);
            format!(
                "uid=$(id -u {u}) || exit 1; \
                 if [ \"$(id -u)\" = 0 ] && command -v runuser >/dev/null 2>&1; then set -- runuser -u {u} --; else set -- sudo -n -u {u}; fi; \
                 exec \"$@\" env DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus {send}"
            )
        }
    };
    format!("sh -c {}", sh_quote(&script))
}

/// AppleScript string literals escape `\` and `"`; the whole script is one shell word.
pub(super) fn macos_command(title: &str, body: &str) -> String {
    let lit = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let script = format!(
        "display notification {} with title {}",
        lit(body),
        lit(title)
    );
    format!("osascript -e {}", sh_quote(&script))
}

/// cmd.exe has no quoting that stops `%` expansion, so what it would interpret is dropped
/// (and `$`, `` ` `` too, in case the host's shell is POSIX after all); `\` becomes `/` so
/// it cannot escape the closing quote.
pub(super) fn windows_command(title: &str, body: &str) -> String {
    let text: String = format!("{title}: {body}")
        .chars()
        .filter(|c| !"\"%^&|<>`$".contains(*c))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    format!("msg * /TIME:60 \"{}\"", text.trim())
}

/// Control characters become spaces; longer text is cut at `max` characters with "…".
pub(super) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_string();
    }
    let cut: String = flat.chars().take(max - 1).collect();
    format!("{}…", cut.trim_end())
}

/// Title and body for a finished run: counters when it stored something, the reason when not.
pub fn report_message(report: &Report) -> (String, String) {
    let s = &report.stats;
    let counts = format!(
        "{}: {} files, {} new",
        report.host,
        thousands(s.files),
        bytesize::ByteSize(s.new_bytes)
    );
    match report.outcome {
        Outcome::Good => ("Backup finished".to_string(), counts),
        Outcome::Partial => (
            "Backup finished with problems".to_string(),
            format!("{counts}; {} could not be read", thousands(s.errors)),
        ),
        Outcome::Failed => failed_message(
            &report.host,
            report.message.as_deref().unwrap_or("see the snapnest log"),
        ),
    }
}

/// Title and body for a run that stored nothing.
pub fn failed_message(host: &str, reason: &str) -> (String, String) {
    ("Backup failed".to_string(), format!("{host}: {reason}"))
}

/// Title and body for a host whose last good backup is `age` old (`None`: it never had one).
pub fn stale_message(host: &str, age: Option<Duration>) -> (String, String) {
    let body = match age {
        Some(age) => format!("{host}: no good backup for {}", rough_age(age)),
        None => format!("{host}: no good backup yet"),
    };
    ("Backup overdue".to_string(), body)
}

/// When to warn that a host's backups stopped: after `threshold` without a good backup, then
/// at most once per `repeat`, so a machine that is away for a week is not nagged every hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleAlert {
    pub threshold: Duration,
    pub repeat: Duration,
}

impl StaleAlert {
    /// Whether to alert now. A host without a good backup counts from `since` (e.g. when the
    /// daemon first saw it), so a newly added host is not flagged at once.
    pub fn due(
        &self,
        now: SystemTime,
        last_good: Option<SystemTime>,
        since: SystemTime,
        last_alert: Option<SystemTime>,
    ) -> bool {
        let age = |t: SystemTime| now.duration_since(t).unwrap_or(Duration::ZERO);
        age(last_good.unwrap_or(since)) > self.threshold
            && !matches!(last_alert, Some(t) if age(t) < self.repeat)
    }
}

/// "3 days", "1 day", "5 hours", "20 minutes": enough for a notification.
fn rough_age(age: Duration) -> String {
    let secs = age.as_secs();
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3_600 {
        (secs / 3_600, "hour")
    } else {
        (secs / 60, "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rough_age(Duration::from_secs(3 * 86_400 + 5)), "3 days");
        assert_eq!(rough_age(Duration::from_secs(86_400)), "1 day");
        assert_eq!(rough_age(Duration::from_secs(7_200)), "2 hours");
        assert_eq!(
            stale_message("laptop", Some(Duration::from_secs(3 * 86_400))).1,
            "laptop: no good backup for 3 days"
        );
        assert_eq!(one_line("a\nb\tc ", 10), "a b c");
        let long = one_line(&"x".repeat(500), BODY_CHARS);
        assert_eq!(long.chars().count(), BODY_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn stale_alert_is_rate_limited() {
        let day = Duration::from_secs(86_400);
        let t0 = SystemTime::UNIX_EPOCH + 1000 * day;
        let a = StaleAlert {
            threshold: 2 * day,
            repeat: day,
        };
        let good = Some(t0 - 3 * day);
        assert!(a.due(t0, good, t0 - 9 * day, None));
        assert!(!a.due(t0, Some(t0 - day), t0 - 9 * day, None));
        assert!(!a.due(t0, good, t0, Some(t0 - day / 2)));
        assert!(a.due(t0, good, t0, Some(t0 - day)));
        // Never backed up: counted from `since`.
        assert!(!a.due(t0, None, t0 - day, None));
        assert!(a.due(t0, None, t0 - 3 * day, None));
    }

    #[test]
    fn windows_text_loses_what_cmd_would_interpret() {
        assert_eq!(
            windows_command("T", r#"50% "done" & a|b <c> ^d $e `f` C:\x"#),
            r#"msg * /TIME:60 "T: 50 done  ab c d e f C:/x""#
        );
    }

    #[test]
    fn applescript_escapes() {
        assert_eq!(
            macos_command("T", r#"say "hi" \ it's"#),
            r#"osascript -e 'display notification "say \"hi\" \\ it'\''s" with title "T"'"#
        );
    }
}
