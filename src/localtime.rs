//! Which local time the process uses. Schedules, blackout windows, retention periods and
//! snapshot names are all local wall-clock time, so a box that silently runs on UTC would
//! back up at the wrong hour and bucket "daily" by the wrong midnight.
//!
//! OpenWrt has no /etc/localtime; it keeps a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3")
//! in /etc/TZ, which only its shell profile exports. A daemon started by procd never sees it.

use std::path::Path;

/// The TZ value to export, if the environment and the usual zone file say nothing.
pub fn tz_to_set(
    env_tz: Option<&str>,
    localtime_exists: bool,
    etc_tz: Option<&str>,
) -> Option<String> {
    if env_tz.is_some_and(|t| !t.is_empty()) || localtime_exists {
        return None;
    }
    let tz = etc_tz?.lines().next()?.trim();
    (!tz.is_empty()).then(|| tz.to_string())
}

/// Call first thing in `main`, before any thread starts (setting the environment is only
/// sound while the process has one thread).
pub fn adopt_openwrt_tz() {
    let env = std::env::var("TZ").ok();
    let etc = std::fs::read_to_string("/etc/TZ").ok();
    if let Some(tz) = tz_to_set(
        env.as_deref(),
        Path::new("/etc/localtime").exists(),
        etc.as_deref(),
    ) {
        std::env::set_var("TZ", tz);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openwrt_tz_is_used_only_when_nothing_else_says_which_zone() {
        let cet = Some("CET-1CEST,M3.5.0,M10.5.0/3\n");
        assert_eq!(
            tz_to_set(None, false, cet).as_deref(),
            Some("CET-1CEST,M3.5.0,M10.5.0/3")
        );
        assert_eq!(
            tz_to_set(Some(""), false, cet).as_deref(),
            Some("CET-1CEST,M3.5.0,M10.5.0/3")
        );
        assert_eq!(
            tz_to_set(Some("UTC"), false, cet),
            None,
            "the environment wins"
        );
        assert_eq!(tz_to_set(None, true, cet), None, "a zone file wins");
        assert_eq!(tz_to_set(None, false, Some("  \n")), None);
        assert_eq!(tz_to_set(None, false, None), None);
    }

    #[test]
    fn chrono_reads_a_posix_tz_string_like_openwrts() {
        // The rule string itself, evaluated the way `Local` does for TZ=<rule>.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "localtime::tests::child_prints_offsets",
                "--nocapture",
            ])
            .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
            .env("SNAPNEST_TZ_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("offsets 3600 7200"), "{text}");
    }

    #[test]
    fn child_prints_offsets() {
        if std::env::var_os("SNAPNEST_TZ_CHILD").is_none() {
            return;
        }
        use chrono::{Local, Offset, TimeZone};
        let jan = Local.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
        let jul = Local.with_ymd_and_hms(2026, 7, 15, 12, 0, 0).unwrap();
        println!(
            "offsets {} {}",
            jan.offset().fix().local_minus_utc(),
            jul.offset().fix().local_minus_utc()
        );
    }
}
